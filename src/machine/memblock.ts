/**
 * memblock, the early-boot memory manager (mm/memblock.c): sorted, merged `memory` and `reserved`
 * region lists with flags, top-down allocation, and the KHO scratch-only mode a kexec'd kernel runs
 * in until it has reserved the memory the previous kernel preserved.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { hex } from './ranges.ts';

/** enum memblock_flags (include/linux/memblock.h). */
export const MEMBLOCK_NONE = 0x0;
export const MEMBLOCK_HOTPLUG = 0x1;
export const MEMBLOCK_MIRROR = 0x2;
export const MEMBLOCK_NOMAP = 0x4;
export const MEMBLOCK_DRIVER_MANAGED = 0x8;
/** Reserved memory whose struct pages must not be initialised (KHO-preserved blocks). */
export const MEMBLOCK_RSRV_NOINIT = 0x10;
/** Reserved by the kernel itself (memblock_alloc*, memblock_reserve_kern): what scratch sizing counts. */
export const MEMBLOCK_RSRV_KERN = 0x20;
/** Memory inside a KHO scratch area. */
export const MEMBLOCK_KHO_SCRATCH = 0x40;

/** x86_64 (and the generic default): the highest address of "low" memory, inclusive. */
export const ARCH_LOW_ADDRESS_LIMIT = 0xffffffffn;

export interface MemblockRegion {
  base: bigint;
  size: bigint;
  flags: number;
  nid: number;
}

/** A free range as for_each_free_mem_range gives it: [base, end) with its memory region's flags. */
export interface FreeRange {
  base: bigint;
  end: bigint;
  flags: number;
  nid: number;
}

export interface MemblockAllocOptions {
  /** Below ARCH_LOW_ADDRESS_LIMIT, like memblock_phys_alloc_range(..., 0, ARCH_LOW_ADDRESS_LIMIT). */
  low?: boolean;
  /** Lowest acceptable address (the kernel never goes below PAGE_SIZE). */
  min?: bigint;
  /** Exclusive upper bound (clamped to the current limit). */
  max?: bigint;
  /** Node to allocate on; with exactNid false, falls back to any node. */
  nid?: number;
  exactNid?: boolean;
}

interface Region {
  base: number;
  end: number;
  flags: number;
  nid: number;
}

const MAX_ADDR = Number.MAX_SAFE_INTEGER;

function toNum(v: bigint, what: string): number {
  if (v < 0n || v > BigInt(MAX_ADDR)) throw new LuoError('EINVAL', `memblock: ${what} ${hex(v)} out of range`);
  return Number(v);
}

/** One memblock_type: a sorted array of disjoint regions; touching regions with equal flags and nid merge. */
const PAGE_BYTES = 4096;
/** Bytes of a block of each order a 64-bit pfn can have (exact doubles). */
const BLOCK_BYTES = Array.from({ length: 53 }, (_, o) => PAGE_BYTES * 2 ** o);

class RegionList {
  regions: Region[] = [];
  constructor(readonly name: string) {}

  /** Index of the first region with end > addr. */
  private lowerIndex(addr: number): number {
    let lo = 0;
    let hi = this.regions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.regions[mid]!.end > addr) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Index of the last region with base < addr, or -1. */
  lastBefore(addr: number): number {
    let lo = 0;
    let hi = this.regions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.regions[mid]!.base < addr) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** memblock_merge_regions over [from, to] (indices clamped). */
  private mergeAround(from: number, to: number): void {
    let i = Math.max(0, from);
    let stop = Math.min(this.regions.length - 1, to);
    while (i < stop) {
      const a = this.regions[i]!;
      const b = this.regions[i + 1]!;
      if (a.end === b.base && a.flags === b.flags && a.nid === b.nid) {
        a.end = b.end;
        this.regions.splice(i + 1, 1);
        stop--;
      } else i++;
    }
  }

  /** memblock_add_range: adds the parts of [base, end) not yet covered, with `flags`. */
  add(base: number, end: number, flags: number, nid: number): void {
    if (end <= base) return;
    const n = this.regions.length;
    const last = this.regions[n - 1];
    if (last === undefined || base >= last.end) {
      if (last && last.end === base && last.flags === flags && last.nid === nid) last.end = end;
      else this.regions.push({ base, end, flags, nid });
      return;
    }
    const i = this.lowerIndex(base);
    const inserts: Region[] = [];
    let cur = base;
    let j = i;
    for (; j < n && this.regions[j]!.base < end; j++) {
      const r = this.regions[j]!;
      if (r.base > cur) inserts.push({ base: cur, end: r.base, flags, nid });
      cur = Math.max(cur, r.end);
    }
    if (cur < end) inserts.push({ base: cur, end, flags, nid });
    if (inserts.length === 0) return;
    // Interleave the new pieces with the existing regions i..j-1 (all sorted, disjoint).
    const merged = [...this.regions.slice(i, j), ...inserts].sort((a, b) => a.base - b.base);
    this.regions.splice(i, j - i, ...merged);
    this.mergeAround(i - 1, i + merged.length);
  }

  /**
   * Adds many regions (sorted by base) in one pass, taking ownership of the objects (the new kernel reserving every preserved block).
   * Ranges that overlap each other or existing regions go through `add` one by one instead, so the
   * result is always what repeated `add` calls would give.
   */
  addSortedBatch(ranges: Region[]): void {
    const fresh: Region[] = [];
    const slow: Region[] = [];
    let prevEnd = -1;
    let j = 0;
    for (const r of ranges) {
      if (r.end <= r.base) continue;
      while (j < this.regions.length && this.regions[j]!.end <= r.base) j++;
      const hitsExisting = j < this.regions.length && this.regions[j]!.base < r.end;
      if (r.base < prevEnd || hitsExisting) slow.push(r);
      else fresh.push(r); // the list takes ownership of the caller's region objects
      prevEnd = Math.max(prevEnd, r.end);
    }
    if (fresh.length) {
      // Merge both sorted lists, joining touching regions as memblock_merge_regions does.
      const old = this.regions;
      const merged: Region[] = [];
      let a = 0;
      let b = 0;
      while (a < old.length || b < fresh.length) {
        const r = b >= fresh.length || (a < old.length && old[a]!.base < fresh[b]!.base) ? old[a++]! : fresh[b++]!;
        const last = merged[merged.length - 1];
        if (last && last.end === r.base && last.flags === r.flags && last.nid === r.nid) last.end = r.end;
        else merged.push(r);
      }
      this.regions = merged;
    }
    for (const r of slow) this.add(r.base, r.end, r.flags, r.nid);
  }

  /** memblock_isolate_range: splits regions so that [base, end) starts and ends on region edges. Returns [first, last+1). */
  isolate(base: number, end: number): [number, number] {
    let i = this.lowerIndex(base);
    const start = i;
    for (; i < this.regions.length && this.regions[i]!.base < end; i++) {
      const r = this.regions[i]!;
      if (r.base < base) {
        this.regions.splice(i, 0, { ...r, end: base });
        r.base = base;
        continue; // re-examine r at i+1
      }
      if (r.end > end) {
        this.regions.splice(i + 1, 0, { ...r, base: end });
        r.end = end;
      }
    }
    // After splitting, the isolated regions begin where base falls.
    let first = start;
    while (first < this.regions.length && this.regions[first]!.end <= base) first++;
    return [first, i];
  }

  /** memblock_remove_range. */
  remove(base: number, end: number): void {
    if (end <= base) return;
    const [a, b] = this.isolate(base, end);
    this.regions.splice(a, b - a);
  }

  /** memblock_setclr_flag. */
  setClearFlag(base: number, end: number, flag: number, set: boolean): void {
    if (end <= base) return;
    const [a, b] = this.isolate(base, end);
    for (let k = a; k < b; k++) {
      const r = this.regions[k]!;
      r.flags = set ? r.flags | flag : r.flags & ~flag;
    }
    this.mergeAround(a - 1, b);
  }

  overlaps(base: number, end: number): boolean {
    const i = this.lowerIndex(base);
    return i < this.regions.length && this.regions[i]!.base < end;
  }

  total(): number {
    let t = 0;
    for (const r of this.regions) t += r.end - r.base;
    return t;
  }
}

/** The memblock allocator of one booting kernel. */
export class Memblock {
  private readonly memory = new RegionList('memory');
  private readonly reserved = new RegionList('reserved');
  private scratchOnly = false;
  /** memblock.current_limit: allocations end below it. */
  currentLimit: bigint = BigInt(MAX_ADDR);

  // ---- memory ----

  /** memblock_add: registers RAM [base, base+size) on node `nid`. */
  addMemory(base: bigint, size: bigint, nid = 0): void {
    this.memory.add(toNum(base, 'base'), toNum(base + size, 'end'), MEMBLOCK_NONE, nid);
  }

  /** memblock_remove. */
  removeMemory(base: bigint, size: bigint): void {
    this.memory.remove(toNum(base, 'base'), toNum(base + size, 'end'));
  }

  /** memblock_mark_kho_scratch for each area (memory outside RAM is not marked, as in the kernel). */
  markScratch(areas: readonly { addr: bigint; size: bigint }[]): void {
    for (const a of areas) this.memory.setClearFlag(toNum(a.addr, 'addr'), toNum(a.addr + a.size, 'end'), MEMBLOCK_KHO_SCRATCH, true);
  }

  /** memblock_clear_kho_scratch. */
  clearScratch(areas: readonly { addr: bigint; size: bigint }[]): void {
    for (const a of areas) this.memory.setClearFlag(toNum(a.addr, 'addr'), toNum(a.addr + a.size, 'end'), MEMBLOCK_KHO_SCRATCH, false);
  }

  /** memblock_set_kho_scratch_only / memblock_clear_kho_scratch_only. */
  setScratchOnly(on: boolean): void {
    this.scratchOnly = on;
  }

  get isScratchOnly(): boolean {
    return this.scratchOnly;
  }

  /** memblock_phys_mem_size. */
  memorySize(): bigint {
    return BigInt(this.memory.total());
  }

  memoryRegions(): MemblockRegion[] {
    return this.memory.regions.map(pub);
  }

  // ---- reserved ----

  /** memblock_reserve (flags NONE) or, with MEMBLOCK_RSRV_KERN, memblock_reserve_kern. Size 0 is a no-op. */
  /**
   * memblock_reserve + memblock_reserved_mark_noinit for many blocks at once (what KHO does for
   * every incoming preserved block), in one pass when they are sorted and disjoint.
   */
  reserveBatch(blocks: readonly { base: bigint; size: bigint }[], flags = MEMBLOCK_NONE): void {
    const ranges = blocks.map((b) => {
      const base = toNum(b.base, 'base');
      return { base, end: toNum(b.base + b.size, 'end'), flags, nid: this.nidOf(base) };
    });
    ranges.sort((x, y) => x.base - y.base);
    this.reserved.addSortedBatch(ranges);
  }

  /**
   * reserveBatch for page blocks given as pfn and order (no bigint on the hot path). Touching
   * blocks in ascending order are coalesced first, as memblock would merge them anyway.
   */
  reservePageBlocks(pfns: ArrayLike<number>, orders: ArrayLike<number>, count: number, flags = MEMBLOCK_NONE): void {
    // With every memory region on node 0 (the common case) nidOf is 0 for any address: skip it.
    const node0 = this.memory.regions.every((r) => r.nid === 0);
    const ranges: Region[] = [];
    let last: Region | undefined;
    let sorted = true;
    for (let i = 0; i < count; i++) {
      const pfn = pfns[i]!;
      const order = orders[i]!;
      const base = pfn * PAGE_BYTES;
      const end = base + (BLOCK_BYTES[order] ?? PAGE_BYTES * 2 ** order);
      if (end > MAX_ADDR) throw new LuoError('EINVAL', `memblock: block at pfn ${pfn} order ${order} out of range`);
      if (last !== undefined && base === last.end) {
        last.end = end;
        continue;
      }
      if (last !== undefined && base < last.end && base < last.base) sorted = false;
      last = { base, end, flags, nid: node0 ? 0 : this.nidOf(base) };
      ranges.push(last);
    }
    if (!sorted) ranges.sort((x, y) => x.base - y.base);
    this.reserved.addSortedBatch(ranges);
  }

  reserve(base: bigint, size: bigint, flags = MEMBLOCK_NONE): void {
    if (size < 0n) throw new LuoError('EINVAL', `memblock_reserve: negative size at ${hex(base)}`);
    const b = toNum(base, 'base');
    this.reserved.add(b, toNum(base + size, 'end'), flags, this.nidOf(b));
  }

  /** memblock_phys_free: returns [base, base+size) to the free pool. */
  free(base: bigint, size: bigint): void {
    this.reserved.remove(toNum(base, 'base'), toNum(base + size, 'end'));
  }

  /** memblock_reserved_mark_noinit. */
  markNoInit(base: bigint, size: bigint): void {
    this.reserved.setClearFlag(toNum(base, 'base'), toNum(base + size, 'end'), MEMBLOCK_RSRV_NOINIT, true);
  }

  /** memblock_is_region_reserved: does any part of [base, base+size) overlap a reservation? */
  isReserved(base: bigint, size = 1n): boolean {
    return this.reserved.overlaps(toNum(base, 'base'), toNum(base + size, 'end'));
  }

  reservedRegions(): MemblockRegion[] {
    return this.reserved.regions.map(pub);
  }

  get reservedCount(): number {
    return this.reserved.regions.length;
  }

  /** Bytes reserved in total (memblock_reserved_size), or inside [range.start, range.end). */
  reservedSize(range?: { start: bigint; end: bigint }): bigint {
    if (!range) return BigInt(this.reserved.total());
    const lo = toNum(range.start, 'start');
    const hi = toNum(range.end, 'end');
    let t = 0;
    for (const r of this.reserved.regions) {
      if (r.base >= hi) break;
      t += Math.max(0, Math.min(r.end, hi) - Math.max(r.base, lo));
    }
    return BigInt(t);
  }

  /**
   * memblock_reserved_kern_size(limit, nid): bytes of MEMBLOCK_RSRV_KERN regions starting at or
   * below `limit`, clipped at `limit` (exactly as the kernel clips: size = limit - base), on node
   * `nid` (-1 = NUMA_NO_NODE, every node). What KHO scales its scratch areas from.
   */
  reservedKernSize(limit: bigint, nid = -1): bigint {
    let t = 0n;
    for (const r of this.reserved.regions) {
      const base = BigInt(r.base);
      if (base > limit) break;
      let size = BigInt(r.end - r.base);
      if (base + size > limit) size = limit - base;
      if ((nid < 0 || r.nid === nid) && r.flags & MEMBLOCK_RSRV_KERN) t += size;
    }
    return t;
  }

  /** Node of the memory region holding `addr` (0 when none: one node unless told otherwise). */
  private nidOf(addr: number): number {
    const i = this.memory.lastBefore(addr + 1);
    const r = this.memory.regions[i];
    return r && addr < r.end ? r.nid : 0;
  }

  // ---- free ranges and allocation ----

  /** Would the kernel skip this memory region for an allocation (should_skip_region)? */
  private skip(m: Region, nid: number, scratchOnly: boolean): boolean {
    if (nid >= 0 && m.nid !== nid) return true;
    if (m.flags & MEMBLOCK_NOMAP) return true;
    if (scratchOnly && !(m.flags & MEMBLOCK_KHO_SCRATCH)) return true;
    return false;
  }

  /** Free ranges (memory minus reserved) in ascending order, with their memory region's flags. */
  *iterateFree(opts: { nid?: number; scratchOnly?: boolean } = {}): Generator<FreeRange> {
    for (const r of this.freeRanges(opts.nid ?? -1, opts.scratchOnly ?? false)) {
      yield { base: BigInt(r.base), end: BigInt(r.end), flags: r.flags, nid: r.nid };
    }
  }

  /** Same as iterateFree with plain numbers, for the page allocator's seeding. */
  *freeRanges(nid = -1, scratchOnly = false): Generator<Region> {
    const res = this.reserved.regions;
    let ri = 0;
    for (const m of this.memory.regions) {
      if (this.skip(m, nid, scratchOnly)) continue;
      while (ri < res.length && res[ri]!.end <= m.base) ri++;
      let cur = m.base;
      let k = ri;
      while (cur < m.end) {
        const r = res[k];
        if (r === undefined || r.base >= m.end) {
          yield { base: cur, end: m.end, flags: m.flags, nid: m.nid };
          break;
        }
        if (r.base > cur) yield { base: cur, end: r.base, flags: m.flags, nid: m.nid };
        cur = Math.max(cur, r.end);
        k++;
      }
    }
  }

  /** Free gaps of one memory region inside [lo, hi), highest first. */
  private *gapsDown(lo: number, hi: number): Generator<[number, number]> {
    const res = this.reserved.regions;
    let i = this.reserved.lastBefore(hi);
    let top = hi;
    while (top > lo) {
      const r = i >= 0 ? res[i] : undefined;
      if (r === undefined || r.end <= lo) {
        yield [lo, top];
        return;
      }
      if (r.end < top) yield [Math.max(r.end, lo), top];
      top = Math.min(top, r.base);
      i--;
    }
  }

  /** memblock_find_in_range_node, top-down: the highest aligned base of a free fit, or undefined. */
  private findTopDown(size: number, align: number, start: number, end: number, nid: number): number | undefined {
    const mem = this.memory.regions;
    for (let mi = mem.length - 1; mi >= 0; mi--) {
      const m = mem[mi]!;
      if (m.base >= end || this.skip(m, nid, this.scratchOnly)) continue;
      if (m.end <= start) break;
      for (const [gs, ge] of this.gapsDown(Math.max(m.base, start), Math.min(m.end, end))) {
        if (ge < size) continue;
        const cand = Math.floor((ge - size) / align) * align;
        if (cand >= gs) return cand;
      }
    }
    return undefined;
  }

  /**
   * memblock_phys_alloc / memblock_alloc_range_nid: finds [base, base+size) top-down, aligned to
   * `align`, and reserves it as MEMBLOCK_RSRV_KERN. In scratch-only mode only KHO scratch memory is
   * used. A size of 0 returns an address and reserves nothing, as the kernel does.
   */
  alloc(size: bigint, align: bigint, opts: MemblockAllocOptions = {}): bigint {
    if (size < 0n) throw new LuoError('EINVAL', `memblock_alloc: negative size ${size}`);
    if (align <= 0n || (align & (align - 1n)) !== 0n) throw new LuoError('EINVAL', `memblock_alloc: alignment ${hex(align)} is not a power of two`);
    const sz = toNum(size, 'size');
    const al = toNum(align, 'align');
    let start = Math.max(toNum(opts.min ?? 0n, 'min'), PAGE_SIZE);
    let end = toNum(opts.max ?? BigInt(MAX_ADDR), 'max');
    if (opts.low) end = Math.min(end, Number(ARCH_LOW_ADDRESS_LIMIT));
    end = Math.min(end, toNum(this.currentLimit, 'current_limit'));
    end = Math.max(start, end);
    const nid = opts.nid ?? -1;
    let found = this.findTopDown(sz, al, start, end, nid);
    if (found === undefined && nid >= 0 && !opts.exactNid) found = this.findTopDown(sz, al, start, end, -1);
    if (found === undefined) {
      throw new LuoError(
        'ENOMEM',
        `memblock_alloc: no free ${hex(size)} bytes aligned to ${hex(align)} in [${hex(start)}, ${hex(end)})${this.scratchOnly ? ' inside KHO scratch' : ''}${nid >= 0 ? ` on node ${nid}` : ''}`,
      );
    }
    start = found;
    this.reserved.add(start, start + sz, MEMBLOCK_RSRV_KERN, this.nidOf(start));
    return BigInt(start);
  }
}

function pub(r: Region): MemblockRegion {
  return { base: BigInt(r.base), size: BigInt(r.end - r.base), flags: r.flags, nid: r.nid };
}
