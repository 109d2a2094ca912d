/**
 * One zone's free area (mm/page_alloc.c): per-order free lists of naturally aligned blocks, split
 * on allocation (expand) and merged with their buddy on free (__free_one_page). The page allocator
 * keeps one pool for ordinary memory and one for KHO scratch (CMA) memory.
 */
import { IntervalSet } from './ranges.ts';

export const MAX_PAGE_ORDER = 10;
/** Pages in a max-order block. */
export const MAX_BLOCK = 1 << MAX_PAGE_ORDER;

export interface PoolStats {
  /** Free pages in the pool. */
  freePages: number;
  /** Free blocks per order, index = order. */
  freeBlocks: number[];
}

/** A free list of one order below the maximum: a stack (LIFO like the kernel's) with O(1) removal by pfn. */
class FreeList {
  private pfns: number[] = [];
  private pos = new Map<number, number>();
  get size(): number {
    return this.pfns.length;
  }
  has(pfn: number): boolean {
    return this.pos.has(pfn);
  }
  push(pfn: number): void {
    this.pos.set(pfn, this.pfns.length);
    this.pfns.push(pfn);
  }
  pop(): number | undefined {
    const pfn = this.pfns.pop();
    if (pfn !== undefined) this.pos.delete(pfn);
    return pfn;
  }
  delete(pfn: number): boolean {
    const i = this.pos.get(pfn);
    if (i === undefined) return false;
    const last = this.pfns.pop()!;
    if (last !== pfn) {
      this.pfns[i] = last;
      this.pos.set(last, i);
    }
    this.pos.delete(pfn);
    return true;
  }
}

/**
 * One buddy pool (a zone, or the CMA pageblocks of the scratch areas). Max-order blocks are kept as
 * runs of block indices (pfn >> MAX_PAGE_ORDER): the free list of the top order, in a form whose
 * cost does not grow with memory size — freeing the free memory of a 128 TiB machine at boot is a
 * few interval inserts, not 2^25 bit flips — and in which contiguous runs of them are found
 * directly. Lower orders use FreeLists.
 */
export class BuddyPool {
  private readonly lists: FreeList[] = Array.from({ length: MAX_PAGE_ORDER }, () => new FreeList());
  private readonly maxRuns = new IntervalSet();
  private maxCount = 0;
  freePages = 0;

  private setMax(idx: number, on: boolean): void {
    if (on) {
      this.maxRuns.add(idx, idx + 1);
      this.maxCount++;
    } else {
      this.maxRuns.remove(idx, idx + 1);
      this.maxCount--;
    }
  }

  private maxFree(idx: number): boolean {
    return this.maxRuns.contains(idx);
  }

  /** Is this exact block (pfn aligned to order) on the free list of `order`? */
  private isFreeBlock(pfn: number, order: number): boolean {
    return order === MAX_PAGE_ORDER ? this.maxFree(pfn / MAX_BLOCK) : this.lists[order]!.has(pfn);
  }

  private insert(pfn: number, order: number): void {
    if (order === MAX_PAGE_ORDER) this.setMax(pfn / MAX_BLOCK, true);
    else this.lists[order]!.push(pfn);
  }

  private unlink(pfn: number, order: number): void {
    if (order === MAX_PAGE_ORDER) this.setMax(pfn / MAX_BLOCK, false);
    else this.lists[order]!.delete(pfn);
  }

  /** Is the page inside some free block? */
  isFree(pfn: number): boolean {
    if (this.maxFree(Math.floor(pfn / MAX_BLOCK))) return true;
    for (let o = 0; o < MAX_PAGE_ORDER; o++) {
      const head = pfn - (pfn % (1 << o));
      if (this.lists[o]!.has(head)) return true;
    }
    return false;
  }

  /** Frees one naturally aligned block, merging with free buddies (__free_one_page). */
  freeBlock(pfn: number, order: number): void {
    this.freePages += 1 << order;
    while (order < MAX_PAGE_ORDER) {
      const size = 1 << order;
      const buddy = pfn % (2 * size) === 0 ? pfn + size : pfn - size;
      if (!this.isFreeBlock(buddy, order)) break;
      this.unlink(buddy, order);
      pfn = Math.min(pfn, buddy);
      order++;
    }
    this.insert(pfn, order);
  }

  /**
   * Frees [pfn, pfn+n) as the largest naturally aligned blocks that fit. The max-order blocks in
   * the middle go in as one run (a max-order block merges with nothing), so the cost is that of
   * the unaligned ends, whatever n is.
   */
  freeRange(pfn: number, n: number): void {
    const end = pfn + n;
    const midStart = Math.ceil(pfn / MAX_BLOCK) * MAX_BLOCK;
    const midEnd = Math.floor(end / MAX_BLOCK) * MAX_BLOCK;
    if (midEnd - midStart >= MAX_BLOCK) {
      this.freeSmall(pfn, midStart);
      const a = midStart / MAX_BLOCK;
      const b = midEnd / MAX_BLOCK;
      this.maxRuns.add(a, b);
      this.maxCount += b - a;
      this.freePages += midEnd - midStart;
      this.freeSmall(midEnd, end);
      return;
    }
    this.freeSmall(pfn, end);
  }

  private freeSmall(pfn: number, end: number): void {
    while (pfn < end) {
      let order = 0;
      while (order < MAX_PAGE_ORDER && pfn % (2 << order) === 0 && pfn + (2 << order) <= end) order++;
      this.freeBlock(pfn, order);
      pfn += 1 << order;
    }
  }

  private popMax(): number | undefined {
    const top = this.maxRuns.last();
    if (!top) return undefined;
    this.setMax(top.end - 1, false);
    return (top.end - 1) * MAX_BLOCK;
  }

  /** __rmqueue_smallest: takes a block of `order`, splitting a larger one (lower half kept). */
  take(order: number): number | undefined {
    let o = order;
    let pfn: number | undefined;
    for (; o < MAX_PAGE_ORDER; o++) {
      pfn = this.lists[o]!.pop();
      if (pfn !== undefined) break;
    }
    if (pfn === undefined) {
      pfn = this.popMax();
      if (pfn === undefined) return undefined;
      o = MAX_PAGE_ORDER;
    }
    while (o > order) {
      o--;
      this.insert(pfn + (1 << o), o); // expand(): the upper half goes back on the list
    }
    this.freePages -= 1 << order;
    return pfn;
  }

  /**
   * Takes `nBlocks` consecutive free max-order blocks whose first index is a multiple of
   * `alignBlocks`, lowest first (alloc_contig_pages scans zones upwards). Returns the first pfn.
   */
  takeContig(nBlocks: number, alignBlocks: number): number | undefined {
    for (const run of this.maxRuns) {
      const first = Math.ceil(run.start / alignBlocks) * alignBlocks;
      if (first + nBlocks > run.end) continue;
      this.maxRuns.remove(first, first + nBlocks);
      this.maxCount -= nBlocks;
      this.freePages -= nBlocks * MAX_BLOCK;
      return first * MAX_BLOCK;
    }
    return undefined;
  }

  stats(): PoolStats {
    return { freePages: this.freePages, freeBlocks: [...this.lists.map((l) => l.size), this.maxCount] };
  }
}

