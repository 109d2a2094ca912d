/**
 * vmalloc areas on the simulated machine, and their preservation format: a `struct kho_vmalloc`
 * descriptor pointing at a list of preserved chunk pages, each `next` plus up to 511 physical
 * addresses of (1 << order)-page runs, zero-terminated (abi/kexec_handover.h, later abi/vmalloc.h;
 * kho_preserve_vmalloc / kho_restore_vmalloc in kernel/liveupdate/kexec_handover.c).
 */
import { LuoError } from '../errno.ts';
import { KHO_VMALLOC_CHUNK_ENTRIES, PAGE_SHIFT, PAGE_SIZE } from '../abi/kho.ts';
import type { KhoAllocator, KhoMemory } from './memory.ts';

/** Kernel vm_struct flags (include/linux/vmalloc.h) that matter to KHO. */
export const VM_ALLOC = 0x2;
export const VM_ALLOW_HUGE_VMAP = 0x400;
export const KHO_VMALLOC_SUPPORTED_FLAGS = VM_ALLOC | VM_ALLOW_HUGE_VMAP;

/** A virtually contiguous area backed by runs of 2^order physically contiguous pages. */
export interface VmArea {
  /** Head pfn of each run, in virtual order. */
  readonly runs: readonly number[];
  readonly order: number;
  readonly nrPages: number;
  readonly vmFlags: number;
}

/** vmalloc(): allocates ceil(bytes / run size) runs of 2^order pages, zeroed. */
export function vmalloc(mem: KhoMemory, alloc: KhoAllocator, bytes: number, order = 0, vmFlags = VM_ALLOC): VmArea {
  if (bytes <= 0) throw new LuoError('EINVAL', `vmalloc of ${bytes} bytes`);
  const runPages = 2 ** order;
  const nrRuns = Math.ceil(bytes / (runPages * PAGE_SIZE));
  const runs: number[] = [];
  try {
    for (let i = 0; i < nrRuns; i++) {
      const pfn = alloc.allocFolio(order);
      runs.push(pfn);
      for (let p = 0; p < runPages; p++) mem.page(pfn + p).fill(0);
    }
  } catch (e) {
    for (const pfn of runs) alloc.freeFolio(pfn, order);
    throw e;
  }
  return { runs, order, nrPages: nrRuns * runPages, vmFlags };
}

export function vfree(alloc: KhoAllocator, area: VmArea): void {
  for (const pfn of area.runs) alloc.freeFolio(pfn, area.order);
}

/** The pfn backing byte `offset` of the area, and the offset inside that page. */
function locate(area: VmArea, offset: number): { pfn: number; inPage: number } {
  const pageIdx = Math.floor(offset / PAGE_SIZE);
  const runPages = 2 ** area.order;
  const run = area.runs[Math.floor(pageIdx / runPages)];
  if (run === undefined) throw new LuoError('EFAULT', `offset ${offset} is beyond the ${area.nrPages}-page vmalloc area`);
  return { pfn: run + (pageIdx % runPages), inPage: offset % PAGE_SIZE };
}

export function vmWrite(mem: KhoMemory, area: VmArea, offset: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    const { pfn, inPage } = locate(area, offset + done);
    const n = Math.min(PAGE_SIZE - inPage, data.length - done);
    mem.page(pfn).set(data.subarray(done, done + n), inPage);
    done += n;
  }
}

export function vmRead(mem: KhoMemory, area: VmArea, offset: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const { pfn, inPage } = locate(area, offset + done);
    const n = Math.min(PAGE_SIZE - inPage, len - done);
    out.set(mem.page(pfn).subarray(inPage, inPage + n), done);
    done += n;
  }
  return out;
}

/** Writes `next` and the run addresses of one chunk page. */
export function writeVmallocChunk(page: Uint8Array, next: bigint, runsPa: readonly bigint[]): void {
  if (runsPa.length > KHO_VMALLOC_CHUNK_ENTRIES) throw new LuoError('EINVAL', `vmalloc chunk holds at most ${KHO_VMALLOC_CHUNK_ENTRIES} entries`);
  page.fill(0);
  const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  dv.setBigUint64(0, next, true);
  runsPa.forEach((pa, i) => dv.setBigUint64(8 + i * 8, pa, true));
}

/** Reads one chunk page: its `next` and the non-zero run addresses before the terminator. */
export function readVmallocChunk(page: Uint8Array): { next: bigint; runs: bigint[] } {
  const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  const runs: bigint[] = [];
  for (let i = 0; i < KHO_VMALLOC_CHUNK_ENTRIES; i++) {
    const pa = dv.getBigUint64(8 + i * 8, true);
    if (pa === 0n) break;
    runs.push(pa);
  }
  return { next: dv.getBigUint64(0, true), runs };
}

export const pfnToPa = (pfn: number): bigint => BigInt(pfn) << BigInt(PAGE_SHIFT);
export const paToPfn = (pa: bigint): number => Number(pa >> BigInt(PAGE_SHIFT));
