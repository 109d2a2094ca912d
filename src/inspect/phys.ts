/**
 * A read-only view of physical memory assembled from segments (ELF PT_LOADs, captured pages, image
 * runs, one blob): read(pa, len) copies bytes or throws a PhysError naming the address that is
 * missing. Segments are sorted and disjoint; reads may span touching segments.
 */
import { hex } from './report.ts';

export class PhysError extends Error {
  constructor(readonly pa: bigint, readonly len: number, message: string) {
    super(message);
    this.name = 'PhysError';
  }
}

/** One piece of memory: [start, end) physical, its bytes read on demand. */
export interface Segment {
  start: number;
  end: number;
  /** `len` bytes at `off` bytes into the segment (the caller keeps inside it). */
  readAt(off: number, len: number): Uint8Array;
  /** Whether the root-FDT scan should look here (false for runs known to be zero). */
  scan: boolean;
  /** What it is, for messages ("PT_LOAD 2", "page file kho_fdt@0x1f0000.bin"). */
  label: string;
}

export interface PhysView {
  readonly description: string;
  read(pa: bigint, len: number): Uint8Array;
  /** Whether every byte of [pa, pa+len) is in the view. */
  has(pa: bigint, len: number): boolean;
  ranges(): { start: bigint; end: bigint }[];
  /** The scannable memory in pieces of at most `chunk` bytes, ascending. */
  chunks(chunk: number): Iterable<{ pa: bigint; bytes: Uint8Array }>;
}

/** The largest single read the decoders make (a sub-blob or memfd data is bounded by this). */
export const MAX_READ = 64 << 20;

export class SegmentView implements PhysView {
  private readonly segs: Segment[];
  constructor(segs: Segment[], readonly description: string) {
    this.segs = [...segs].filter((s) => s.end > s.start).sort((a, b) => a.start - b.start);
    for (let i = 1; i < this.segs.length; i++) {
      if (this.segs[i]!.start < this.segs[i - 1]!.end) throw new Error(`segments ${this.segs[i - 1]!.label} and ${this.segs[i]!.label} overlap`);
    }
  }

  get segments(): readonly Segment[] {
    return this.segs;
  }

  /** Index of the segment holding byte `a`, or -1. */
  private find(a: number): number {
    let lo = 0;
    let hi = this.segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.segs[mid]!;
      if (a < s.start) hi = mid - 1;
      else if (a >= s.end) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** The first missing byte of [pa, pa+len), or undefined when all are present. */
  private firstMissing(pa: bigint, len: number): bigint | undefined {
    if (pa < 0n || pa + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) return pa;
    let a = Number(pa);
    const end = a + len;
    let i = this.find(a);
    while (a < end) {
      const s = this.segs[i];
      if (i < 0 || !s || a < s.start || a >= s.end) return BigInt(a);
      a = s.end;
      i++;
    }
    return undefined;
  }

  has(pa: bigint, len: number): boolean {
    return this.firstMissing(pa, len) === undefined;
  }

  read(pa: bigint, len: number): Uint8Array {
    if (!Number.isInteger(len) || len < 0 || len > MAX_READ) throw new PhysError(pa, len, `read of ${len} bytes at ${hex(pa)} is larger than ${MAX_READ}`);
    const miss = this.firstMissing(pa, len);
    if (miss !== undefined) {
      const at = miss === pa ? '' : ` (missing from ${hex(miss)})`;
      throw new PhysError(pa, len, `${hex(pa)}+${hex(len)} is outside the memory view${at}`);
    }
    const out = new Uint8Array(len);
    let a = Number(pa);
    let pos = 0;
    let i = this.find(a);
    while (pos < len) {
      const s = this.segs[i]!;
      const n = Math.min(len - pos, s.end - a);
      out.set(s.readAt(a - s.start, n), pos);
      pos += n;
      a += n;
      i++;
    }
    return out;
  }

  ranges(): { start: bigint; end: bigint }[] {
    const out: { start: bigint; end: bigint }[] = [];
    for (const s of this.segs) {
      const last = out[out.length - 1];
      if (last && last.end === BigInt(s.start)) last.end = BigInt(s.end);
      else out.push({ start: BigInt(s.start), end: BigInt(s.end) });
    }
    return out;
  }

  *chunks(chunk: number): Iterable<{ pa: bigint; bytes: Uint8Array }> {
    for (const s of this.segs) {
      if (!s.scan) continue;
      for (let a = s.start; a < s.end; a += chunk) {
        const n = Math.min(chunk, s.end - a);
        yield { pa: BigInt(a), bytes: s.readAt(a - s.start, n) };
      }
    }
  }
}

/** A segment over bytes held in memory. */
export function bytesSegment(start: number, bytes: Uint8Array, label: string): Segment {
  return { start, end: start + bytes.length, readAt: (off, len) => bytes.subarray(off, off + len), scan: true, label };
}

/** Reads a value of `len` bytes, or undefined (never throws). */
export function tryRead(view: PhysView, pa: bigint, len: number): Uint8Array | undefined {
  try {
    return view.read(pa, len);
  } catch {
    return undefined;
  }
}

export const le64 = (b: Uint8Array, off = 0): bigint => new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0, true);
export const le32 = (b: Uint8Array, off = 0): number => new DataView(b.buffer, b.byteOffset + off, 4).getUint32(0, true);
