/**
 * Opening an input: detects its kind (FDT magic, ELF magic, luo image magic, a directory of
 * captured pages, else a raw blob) unless forced, and builds the physical memory view with any
 * boot metadata it carries (a luo image's root FDT address). Problems are reported, never thrown.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { IMAGE_MAGIC } from '../machine/image.ts';
import { PhysicalMemory } from '../machine/memory.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { ELF_MAGIC, openElfCore } from './elf.ts';
import { type Segment, SegmentView, bytesSegment } from './phys.ts';
import { type InputKind, Problems, hex } from './report.ts';

export interface Input {
  kind: InputKind;
  path: string;
  /** Physical memory (empty for a lone FDT or blob). */
  view: SegmentView;
  /** The file's bytes for kinds 'fdt' and 'blob'. */
  blob?: Uint8Array;
  /** Root FDT address from the input's own metadata (a luo image's boot parameters). */
  fdtAddr?: bigint;
  close(): void;
}

export const INPUT_KINDS: readonly InputKind[] = ['fdt', 'elf', 'image', 'pages', 'raw', 'blob'];
const FDT_MAGIC = Uint8Array.of(0xd0, 0x0d, 0xfe, 0xed);
/** A page file of a pages capture: role@0xADDR.bin. */
export const PAGE_FILE = /^(.*)@0x([0-9a-fA-F]+)\.bin$/;

/** The files of a KHO debugfs capture (/sys/kernel/debug/kho: in/ and out/ with fdt and sub_fdts/), relative to `dir`; [] when it is not one. */
export function debugfsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const side of ['in', 'out']) {
    if (existsSync(join(dir, side, 'fdt'))) out.push(join(side, 'fdt'));
    const subs = join(dir, side, 'sub_fdts');
    if (existsSync(subs) && statSync(subs).isDirectory()) for (const f of readdirSync(subs).sort()) out.push(join(side, 'sub_fdts', f));
  }
  return out;
}

const startsWith = (b: Uint8Array, m: Uint8Array): boolean => b.length >= m.length && m.every((x, i) => b[i] === x);

/** The kind of the input at `path` by its first bytes (or a directory). */
export function detectKind(path: string): InputKind {
  if (statSync(path).isDirectory()) return 'pages';
  const fd = openSync(path, 'r');
  const head = new Uint8Array(8);
  let n = 0;
  try { n = readSync(fd, head, 0, 8, 0); } finally { closeSync(fd); }
  const b = head.subarray(0, n);
  if (startsWith(b, FDT_MAGIC)) return 'fdt';
  if (startsWith(b, ELF_MAGIC)) return 'elf';
  if (startsWith(b, new TextEncoder().encode(IMAGE_MAGIC))) return 'image';
  return 'blob';
}

/** A directory of captured pages named role@0xADDR.bin (the real-kernel fixture format). */
export function openPagesDir(dir: string, problems: Problems): SegmentView {
  const segs: Segment[] = [];
  const names = readdirSync(dir).sort();
  for (const f of names) {
    const m = PAGE_FILE.exec(f);
    if (!m) {
      if (f.endsWith('.bin')) problems.warn(`pages directory file ${f}`, 'name is not role@0xADDR.bin; ignored');
      continue;
    }
    const pa = BigInt('0x' + m[2]!);
    const bytes = new Uint8Array(readFileSync(join(dir, f)));
    if (pa + BigInt(bytes.length) > BigInt(Number.MAX_SAFE_INTEGER)) { problems.error(`pages directory file ${f}`, `address ${hex(pa)} is beyond 2^53`); continue; }
    const start = Number(pa);
    const clash = segs.find((s) => start < s.end && s.start < start + bytes.length);
    if (clash) { problems.warn(`pages directory file ${f}`, `[${hex(start)}, ${hex(start + bytes.length)}) overlaps ${clash.label}; ignored`); continue; }
    segs.push(bytesSegment(start, bytes, `page file ${f}`));
  }
  return new SegmentView(segs, `pages directory: ${segs.length} file(s), ${hex(segs.reduce((n, s) => n + s.end - s.start, 0))} bytes`);
}

/** A root FDT address from a luo image's metadata: {fdtAddr} or {kho: {fdtAddr}}, hex string or number. */
export function fdtAddrFromMeta(meta: unknown): bigint | undefined {
  const pick = (o: unknown): unknown => (o && typeof o === 'object' ? (o as Record<string, unknown>).fdtAddr ?? (o as Record<string, unknown>).fdt_addr : undefined);
  const v = pick(meta) ?? pick(meta && typeof meta === 'object' ? (meta as Record<string, unknown>).kho : undefined);
  try {
    if (typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v)) return BigInt(v);
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  } catch { /* not a number */ }
  return undefined;
}

/** The pages a luo image saved, as segments: DATA pages read through, ZERO runs as zeros; POISON is absent. */
function imageView(mem: PhysicalMemory, base: string | undefined): SegmentView {
  const segs: Segment[] = [];
  for (const r of mem.runs(0, mem.nrPages)) {
    if (r.state === 'poison') continue;
    const start = r.pfn * PAGE_SIZE;
    const label = `image ${r.state} run ${hex(start)}`;
    segs.push(r.state === 'data'
      ? { start, end: start + r.count * PAGE_SIZE, readAt: (o, n) => mem.read(BigInt(start + o), n), scan: true, label }
      : { start, end: start + r.count * PAGE_SIZE, readAt: (_o, n) => new Uint8Array(n), scan: false, label });
  }
  // a kexec's image over its base (left so by a kill before it was made whole): read with the base
  const over = base !== undefined ? `, written over the base image ${base} beside it` : '';
  return new SegmentView(segs, `luo memory image: RAM ${hex(mem.size)}, ${segs.length} saved run(s)${over}`);
}

const none = (): void => {};

/** A flat file of physical memory starting at address 0 (QEMU's `pmemsave 0 SIZE FILE`). */
function rawView(path: string): { view: SegmentView; close: () => void } {
  let fd: number | undefined = openSync(path, 'r');
  const size = fstatSync(fd).size;
  const readAt = (off: number, len: number): Uint8Array => {
    const b = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const r = readSync(fd!, b, got, len - got, off + got);
      if (r === 0) break;
      got += r;
    }
    return b;
  };
  const seg: Segment = { start: 0, end: size, readAt, scan: true, label: 'raw memory file' };
  return { view: new SegmentView([seg], `raw physical memory from 0x0: ${hex(size)} bytes`), close: () => { if (fd !== undefined) closeSync(fd); fd = undefined; } };
}

/** Opens `path` as `kind` (detected when undefined). A file that cannot be read is a problem. */
export async function openInput(path: string, kind: InputKind | undefined, problems: Problems): Promise<Input | undefined> {
  const fail = (msg: string): undefined => { problems.error(`input ${path}`, msg); return undefined; };
  let k: InputKind;
  try {
    k = kind ?? detectKind(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? 'no such file or directory (ENOENT)' : `cannot read: ${(e as Error).message}`);
  }
  const empty = (why: string): SegmentView => new SegmentView([], why);
  try {
    switch (k) {
      case 'pages':
        if (!statSync(path).isDirectory()) return fail('--kind pages needs a directory of role@0xADDR.bin files');
        return { kind: k, path, view: openPagesDir(path, problems), close: none };
      case 'elf': {
        const core = openElfCore(path, problems);
        return { kind: k, path, view: core.view, close: core.close };
      }
      case 'image': {
        let loaded;
        try {
          loaded = await PhysicalMemory.loadImage(path);
        } catch (e) {
          return fail(`not a usable luo memory image: ${(e as Error).message}`);
        }
        const fdtAddr = fdtAddrFromMeta(loaded.meta);
        return { kind: k, path, view: imageView(loaded.memory, loaded.base), ...(fdtAddr !== undefined ? { fdtAddr } : {}), close: none };
      }
      case 'raw': {
        const raw = rawView(path);
        return { kind: k, path, view: raw.view, close: raw.close };
      }
      case 'fdt':
      case 'blob': {
        const blob = new Uint8Array(readFileSync(path));
        return { kind: k, path, view: empty(`a lone ${k === 'fdt' ? 'FDT' : 'blob'} (${basename(path)}, ${blob.length} bytes): no physical memory`), blob, close: none };
      }
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? 'no such file or directory (ENOENT)' : code === 'EISDIR' ? `is a directory (EISDIR); use --kind pages` : `cannot read: ${(e as Error).message}`);
  }
}
