/**
 * Values scenario files spell by name: sizes ("8GiB"), memfd flags and seals, and data specs that
 * describe file contents reproducibly (text, a seeded pseudo-random pattern, a fill byte).
 */
import {
  F_SEAL_EXEC, F_SEAL_FUTURE_WRITE, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, MFD_CLOEXEC, MFD_EXEC, MFD_HUGETLB,
  MFD_NOEXEC_SEAL,
} from '../handlers/memfd-file.ts';

export { parseSize, SIZE_UNITS } from '../schema/values.ts';

export const SEAL_NAMES: Readonly<Record<string, number>> = {
  seal: F_SEAL_SEAL, shrink: F_SEAL_SHRINK, grow: F_SEAL_GROW, write: F_SEAL_WRITE, 'future-write': F_SEAL_FUTURE_WRITE, exec: F_SEAL_EXEC,
};

export const MEMFD_FLAG_NAMES: Readonly<Record<string, number>> = {
  cloexec: MFD_CLOEXEC, 'allow-sealing': MFD_ALLOW_SEALING, hugetlb: MFD_HUGETLB, 'noexec-seal': MFD_NOEXEC_SEAL, exec: MFD_EXEC,
};

export function sealNames(seals: number): string[] {
  return Object.entries(SEAL_NAMES).filter(([, v]) => seals & v).map(([k]) => k);
}

/** One piece of file content at an offset. */
export type DataSpec =
  | { readonly text: string; readonly at: number }
  | { readonly pattern: string; readonly length: number; readonly at: number }
  | { readonly fill: number; readonly length: number; readonly at: number };

/** A seeded byte stream (FNV-1a of the seed, then an LCG): the same seed always gives the same bytes. */
export class PatternStream {
  private x = 2166136261;
  constructor(seed: string) {
    for (const c of seed) this.x = Math.imul(this.x ^ c.charCodeAt(0), 16777619) >>> 0;
  }
  /** The next `n` bytes of the stream. */
  next(n: number): Uint8Array {
    const b = new Uint8Array(n);
    let x = this.x;
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      b[i] = x >>> 24;
    }
    this.x = x;
    return b;
  }
}

export function patternBytes(seed: string, n: number): Uint8Array {
  return new PatternStream(seed).next(n);
}

/** Bytes of a data spec (small ones: a manifest, a text). Large specs go through specChunks. */
export function specBytes(d: DataSpec): Uint8Array {
  if ('text' in d) return new TextEncoder().encode(d.text);
  if ('pattern' in d) return patternBytes(d.pattern, d.length);
  return new Uint8Array(d.length).fill(d.fill);
}

/** Chunk size for writing and comparing data specs: memory stays bounded whatever the length. */
export const SPEC_CHUNK = 1 << 20;

/** The bytes of a data spec as consecutive chunks of at most `chunk` bytes, each with its file offset. */
export function* specChunks(d: DataSpec, chunk = SPEC_CHUNK): Generator<{ readonly at: number; readonly data: Uint8Array }> {
  if ('text' in d) {
    yield { at: d.at, data: new TextEncoder().encode(d.text) };
    return;
  }
  const pattern = 'pattern' in d ? new PatternStream(d.pattern) : undefined;
  for (let done = 0; done < d.length; done += chunk) {
    const n = Math.min(chunk, d.length - done);
    yield { at: d.at + done, data: pattern ? pattern.next(n) : new Uint8Array(n).fill((d as { fill: number }).fill) };
  }
}

/** Bytes a data spec covers. */
export function specLength(d: DataSpec): number {
  return 'text' in d ? new TextEncoder().encode(d.text).length : d.length;
}

export function describeSpec(d: DataSpec): string {
  if ('text' in d) return `text ${JSON.stringify(d.text.length > 24 ? `${d.text.slice(0, 24)}...` : d.text)} at ${d.at}`;
  if ('pattern' in d) return `pattern "${d.pattern}" (${d.length} bytes) at ${d.at}`;
  return `fill 0x${d.fill.toString(16)} (${d.length} bytes) at ${d.at}`;
}
