/**
 * Test helpers for `luo inspect`: an ELF64 core writer (PT_NOTE + one PT_LOAD per contiguous run,
 * QEMU dump-guest-memory or vmcore layout), captures of a simulated machine at the moment of
 * kexec (after LUO serialized), and in-memory inputs built from page maps.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Machine } from '../../src/kernel/machine.ts';
import { PhysicalMemory } from '../../src/machine/memory.ts';
import { SegmentView, bytesSegment } from '../../src/inspect/phys.ts';
import type { Input } from '../../src/inspect/sources.ts';

export interface MemSeg { pa: bigint; bytes: Uint8Array }

/** Touching segments merged into contiguous runs, ascending. */
export function contiguous(segs: readonly MemSeg[]): MemSeg[] {
  const sorted = [...segs].sort((a, b) => (a.pa < b.pa ? -1 : 1));
  const out: MemSeg[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && last.pa + BigInt(last.bytes.length) === s.pa) {
      const b = new Uint8Array(last.bytes.length + s.bytes.length);
      b.set(last.bytes);
      b.set(s.bytes, last.bytes.length);
      last.bytes = b;
    } else out.push({ pa: s.pa, bytes: s.bytes.slice() });
  }
  return out;
}

const DIRECT_MAP = 0xffff888000000000n;
const KERNEL_TEXT = 0xffffffff81000000n;

/**
 * An ELF64 little-endian ET_CORE file: a PT_NOTE (one empty-ish note) then a PT_LOAD per
 * contiguous run. 'qemu': p_vaddr 0 (paging off), p_paddr physical. 'vmcore': p_vaddr in the
 * direct map, and a first PT_LOAD aliasing the first run at a kernel-text address.
 */
export function writeElfCore(segs: readonly MemSeg[], layout: 'qemu' | 'vmcore' = 'qemu'): Uint8Array {
  const runs = contiguous(segs);
  const loads: { vaddr: bigint; paddr: bigint; bytes: Uint8Array }[] = runs.map((r) => ({ vaddr: layout === 'qemu' ? 0n : DIRECT_MAP + r.pa, paddr: r.pa, bytes: r.bytes }));
  if (layout === 'vmcore' && runs[0]) loads.unshift({ vaddr: KERNEL_TEXT, paddr: runs[0].pa, bytes: runs[0].bytes.subarray(0, Math.min(4096, runs[0].bytes.length)) });
  const note = new Uint8Array(24); // namesz 5, descsz 0, type 1, "CORE\0" padded
  const nv = new DataView(note.buffer);
  nv.setUint32(0, 5, true); nv.setUint32(4, 0, true); nv.setUint32(8, 1, true);
  note.set(new TextEncoder().encode('CORE'), 12);
  const phnum = loads.length + 1;
  const headers = 64 + phnum * 56;
  let off = headers + note.length;
  off = Math.ceil(off / 4096) * 4096;
  const offsets: number[] = [];
  for (const l of loads) { offsets.push(off); off += l.bytes.length; }
  const out = new Uint8Array(off);
  const dv = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  dv.setUint16(16, 4, true); // ET_CORE
  dv.setUint16(18, 62, true); // EM_X86_64
  dv.setUint32(20, 1, true);
  dv.setBigUint64(32, 64n, true); // e_phoff
  dv.setUint16(52, 64, true);
  dv.setUint16(54, 56, true);
  dv.setUint16(56, phnum, true);
  const ph = (i: number, type: number, offset: number, vaddr: bigint, paddr: bigint, size: number): void => {
    const o = 64 + i * 56;
    dv.setUint32(o, type, true);
    dv.setUint32(o + 4, type === 1 ? 7 : 0, true);
    dv.setBigUint64(o + 8, BigInt(offset), true);
    dv.setBigUint64(o + 16, vaddr, true);
    dv.setBigUint64(o + 24, paddr, true);
    dv.setBigUint64(o + 32, BigInt(size), true);
    dv.setBigUint64(o + 40, BigInt(size), true);
    dv.setBigUint64(o + 48, type === 1 ? 4096n : 0n, true);
  };
  ph(0, 4, headers, 0n, 0n, note.length);
  out.set(note, headers);
  loads.forEach((l, i) => { ph(i + 1, 1, offsets[i]!, l.vaddr, l.paddr, l.bytes.length); out.set(l.bytes, offsets[i]!); });
  return out;
}

export interface Capture {
  segs: MemSeg[];
  fdtAddr: bigint;
  ramSize: bigint;
}

/**
 * Kexecs `m` and returns what the next kernel is handed: every kept range (preserved blocks and
 * tracker pages) as it was after the reboot hooks (LUO serialization) ran.
 */
export function captureAtKexec(m: Machine): Capture {
  const k = m.kernel;
  let cap: Capture | undefined;
  k.onReboot(() => {
    const segs = k.handoverRanges().map((r) => ({ pa: r.start, bytes: m.memory.read(r.start, Number(r.end - r.start)) }));
    cap = { segs, fdtAddr: k.kho!.rootFdtPa, ramSize: m.memory.size };
  });
  m.kexec();
  if (!cap) throw new Error('reboot hook did not run');
  return cap;
}

/** Writes a capture as a luo memory image (with or without the root FDT address in its metadata). */
/**
 * The capture as a luo memory image; with `overBase`, as a kexec leaves it when killed before the
 * image was made whole: a base image of that name beside it holding every page, the image naming it.
 */
export async function saveCaptureImage(cap: Capture, path: string, withMeta = true, overBase?: string): Promise<void> {
  const mem = new PhysicalMemory({ size: cap.ramSize });
  mem.poisonExcept([]);
  for (const s of cap.segs) mem.write(s.pa, s.bytes);
  const ranges = cap.segs.map((s) => ({ start: s.pa, end: s.pa + BigInt(s.bytes.length) }));
  const meta = withMeta ? { kho: { fdtAddr: `0x${cap.fdtAddr.toString(16)}` } } : { note: 'no kho address' };
  if (overBase === undefined) {
    await mem.saveImage(path, { ranges, meta });
    return;
  }
  const base = await mem.saveImage(join(dirname(path), overBase), { ranges });
  await mem.saveImage(path, { ranges, meta, base: { name: overBase, length: base.length, seal: base.seal, pages: base.dataPages } });
}

export const tmp = (): string => mkdtempSync(join(tmpdir(), 'luo-inspect-'));

/** An in-memory input over page-sized (or any) segments. */
export function memInput(pages: ReadonlyMap<bigint, Uint8Array> | readonly MemSeg[], path = 'test memory'): Input {
  const segs = pages instanceof Map ? [...pages].map(([pa, bytes]) => ({ pa, bytes })) : (pages as readonly MemSeg[]);
  const view = new SegmentView(contiguous(segs).map((s) => bytesSegment(Number(s.pa), s.bytes, `segment ${s.pa.toString(16)}`)), `test memory: ${segs.length} segment(s)`);
  return { kind: 'pages', path, view, close: () => {} };
}

export const FIX = new URL('../fixtures/real-kernel/', import.meta.url).pathname;
export const PAGES_DIR = FIX + 'handover-memory/pages';

/** The real 7.3.4 pages as a mutable map pa -> bytes. */
export function realPages(): Map<bigint, Uint8Array> {
  const out = new Map<bigint, Uint8Array>();
  for (const f of readdirSync(PAGES_DIR)) {
    const m = /@0x([0-9a-f]+)\.bin$/.exec(f);
    if (m) out.set(BigInt('0x' + m[1]!), new Uint8Array(readFileSync(join(PAGES_DIR, f))));
  }
  return out;
}

export const u64At = (b: Uint8Array, off: number): bigint => new DataView(b.buffer, b.byteOffset).getBigUint64(off, true);
export const setU64 = (b: Uint8Array, off: number, v: bigint): void => new DataView(b.buffer, b.byteOffset).setBigUint64(off, v, true);
