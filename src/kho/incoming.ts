/**
 * How a freshly booted kernel finds KHO state: kho_populate (check the root FDT the boot protocol
 * pointed at, read the scratch array) and kho_memory_init (walk the preserved-memory tracker,
 * reserve every block, stamp the 'KHOP' magic). Anything wrong means a boot without hand-over,
 * logged with what and where — never a crash or a silently wrong restore.
 */
import { LuoError } from '../errno.ts';
import { KhoScratch, type KhoProfile, PAGE_SIZE } from '../abi/kho.ts';
import { walkIncomingChunks } from './bitmap-v1.ts';
import type { KhoLog, ScratchArea } from './kho.ts';
import { type KhoMemory, readPhysBytes } from './memory.ts';
import { walkIncomingTree } from './radix.ts';
import { type IncomingRoot, readIncomingRoot } from './root-fdt.ts';
import { PageStamps } from './stamps.ts';

/** What the x86 boot protocol carries (struct kho_data in setup_data type SETUP_KEXEC_KHO). */
export interface KhoBootData {
  readonly fdtAddr: bigint;
  readonly fdtSize: bigint;
  readonly scratchAddr: bigint;
  readonly scratchSize: bigint;
}

export interface Populated {
  readonly root: IncomingRoot;
  readonly fdtPa: bigint;
  readonly scratchPa: bigint;
  readonly scratch: ScratchArea[];
}

const MAX_SCRATCH_AREAS = 1026; // nodes (MAX_NUMNODES 1024) + 2

/** kho_populate: undefined (after logging why) when the hand-over cannot be used. */
export function khoPopulate(mem: KhoMemory, ramPages: number, boot: KhoBootData, kho: { readonly compatible: string }, log: KhoLog): Populated | undefined {
  try {
    const fdtPfn = pfnIn(boot.fdtAddr, ramPages, 'FDT');
    if (boot.fdtSize !== BigInt(PAGE_SIZE)) throw new LuoError('EINVAL', `FDT size ${boot.fdtSize} is not one page`);
    if (boot.fdtAddr % BigInt(PAGE_SIZE) !== 0n) throw new LuoError('EINVAL', `FDT address 0x${boot.fdtAddr.toString(16)} is not page aligned`);
    const root = readIncomingRoot(mem.page(fdtPfn), kho.compatible);
    const n = boot.scratchSize / BigInt(KhoScratch.size);
    if (boot.scratchSize % BigInt(KhoScratch.size) !== 0n || n === 0n || n > BigInt(MAX_SCRATCH_AREAS)) {
      throw new LuoError('EINVAL', `scratch array size ${boot.scratchSize} is not 1..${MAX_SCRATCH_AREAS} entries of ${KhoScratch.size} bytes`);
    }
    const bytes = readPhysBytes(mem, boot.scratchAddr, Number(boot.scratchSize), (at) => pfnIn(at, ramPages, 'scratch array'));
    const scratch: ScratchArea[] = [];
    for (let i = 0; i < Number(n); i++) {
      const s = KhoScratch.decode(bytes, i * KhoScratch.size);
      if (s.addr % BigInt(PAGE_SIZE) !== 0n || s.size % BigInt(PAGE_SIZE) !== 0n || ((s.addr + s.size) >> 12n) > BigInt(ramPages)) {
        throw new LuoError('EINVAL', `scratch area ${i} 0x${s.addr.toString(16)}+0x${s.size.toString(16)} is not page aligned inside RAM`);
      }
      scratch.push({ addr: s.addr, size: s.size });
    }
    log('info', 'found kexec handover data.');
    return { root, fdtPa: boot.fdtAddr, scratchPa: boot.scratchAddr, scratch };
  } catch (e) {
    log('warn', `setup: ${e instanceof Error ? e.message : String(e)}`);
    log('warn', 'disabling KHO revival');
    return undefined;
  }
}

/**
 * kho_memory_init on a KHO boot: walks the tracker. Returns the stamped blocks, or undefined when
 * the tracker is corrupt (then nothing has been reserved: the caller boots without hand-over).
 */
export function khoMemoryInit(
  mem: KhoMemory,
  ramPages: number,
  p: Populated,
  profile: KhoProfile,
  log: KhoLog,
): { magic: PageStamps; blocks: number } | undefined {
  const forbidden = p.scratch
    .filter((s) => s.size > 0n)
    .map((s, i) => ({ startPfn: Number(s.addr >> 12n), endPfn: Number((s.addr + s.size) >> 12n), what: `scratch area ${i}` }));
  const limits = { ramPages, forbidden };
  // The walk only collects the blocks, packed as pfn * 64 + order (exact: a pfn inside RAM is far
  // below 2^47), in walk order. Duplicates and overlaps are then found in one pass over the blocks
  // in pfn order, reporting exactly what a check at every block would have reported first.
  const blocks = new BlockList();
  try {
    const collect = (pfn: number, order: number): void => blocks.push(pfn * 64 + order);
    let r: { blocks: number };
    try {
      r = profile !== 'kho-v1' ? walkIncomingTree(mem, p.root.memMapPa, limits, collect) : walkIncomingChunks(mem, p.root.memMapPa, limits, collect);
    } catch (e) {
      // A block listed twice before the failing one is what the walk would have stopped at.
      throwFirstDuplicate(blocks);
      throw e;
    }
    return { magic: stampInPfnOrder(blocks), blocks: r.blocks };
  } catch (e) {
    log('err', `failed to restore preserved memory: ${e instanceof Error ? e.message : String(e)}`);
    log('warn', 'booting without hand-over');
    return undefined;
  }
}

/** A growable list of packed blocks (pfn * 64 + order) that remembers where its ascending runs start. */
class BlockList {
  vals = new Float64Array(1024);
  length = 0;
  /** Start index of each maximal ascending run. */
  readonly runs: number[] = [0];

  push(v: number): void {
    const n = this.length;
    if (n === this.vals.length) {
      const grown = new Float64Array(n * 2);
      grown.set(this.vals);
      this.vals = grown;
    }
    if (n > 0 && v < this.vals[n - 1]!) this.runs.push(n);
    this.vals[n] = v;
    this.length = n + 1;
  }
}

/** 2^order for every order a block can have (exact doubles). */
const POW2 = Array.from({ length: 64 }, (_, o) => 2 ** o);

/** Runs above this many are sorted natively instead of merged. */
const MAX_MERGE_RUNS = 16;

/**
 * The 'KHOP' stamps, pfn -> order, inserted in ascending pfn order (so that the kernel's memblock
 * reservations over them stay cheap). Throws for a block listed twice (the first one in walk
 * order) or, failing that, for the first block in pfn order that overlaps the block before it.
 * The radix walk yields one ascending run per order, so this is a k-way merge of a few runs.
 */
function stampInPfnOrder(list: BlockList): PageStamps {
  const vals = list.vals;
  const n = list.length;
  let heads: number[];
  let ends: number[];
  let src = vals;
  if (list.runs.length <= MAX_MERGE_RUNS) {
    heads = list.runs.slice();
    ends = [...list.runs.slice(1), n];
  } else {
    src = vals.slice(0, n).sort();
    heads = [0];
    ends = [n];
  }
  const k = heads.length;
  const pfns = new Float64Array(n);
  const orders = new Uint8Array(n);
  let end = -1;
  let prevPfn = -1;
  let overlap = -1;
  for (let out = 0; out < n; out++) {
    // The smallest head (k is at most MAX_MERGE_RUNS, usually 3 or 4).
    let best = -1;
    let bv = Infinity;
    for (let r = 0; r < k; r++) {
      const h = heads[r]!;
      if (h < ends[r]! && src[h]! < bv) {
        bv = src[h]!;
        best = r;
      }
    }
    heads[best]!++;
    const order = bv % 64;
    const pfn = (bv - order) / 64;
    if (pfn === prevPfn) throwFirstDuplicate(list);
    if (pfn < end && overlap < 0) overlap = bv;
    prevPfn = pfn;
    end = pfn + POW2[order]!;
    pfns[out] = pfn;
    orders[out] = order;
  }
  if (overlap >= 0) {
    const order = overlap % 64;
    const pfn = (overlap - order) / 64;
    throw new LuoError('EINVAL', `preserved block 0x${(BigInt(pfn) << 12n).toString(16)} order ${order} overlaps the block before it`);
  }
  return new PageStamps(pfns, orders, n);
}

/** Throws for the first pfn (in walk order) seen a second time, if any. */
function throwFirstDuplicate(list: BlockList): void {
  const seen = new Set<number>();
  for (let i = 0; i < list.length; i++) {
    const pfn = Math.floor(list.vals[i]! / 64);
    if (seen.has(pfn)) throw new LuoError('EINVAL', `block 0x${(BigInt(pfn) << 12n).toString(16)} is listed twice`);
    seen.add(pfn);
  }
}

function pfnIn(pa: bigint, ramPages: number, what: string): number {
  if (pa < 0n || pa >> 12n >= BigInt(ramPages)) throw new LuoError('EINVAL', `${what} address 0x${pa.toString(16)} is outside RAM`);
  return Number(pa >> 12n);
}

