/**
 * One zone's free area (mm/page_alloc.c): per-order free lists of naturally aligned blocks, split
 * on allocation (expand) and merged with their buddy on free (__free_one_page). The page allocator
 * keeps one pool for ordinary memory and one for KHO scratch (CMA) memory.
 */

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
 * One buddy pool (a zone, or the CMA pageblocks of the scratch areas). Max-order blocks live in a
 * bitmap indexed by pfn >> MAX_PAGE_ORDER, which both serves as their free list and lets contiguous
 * runs of them be found quickly; lower orders use FreeLists.
 */
export class BuddyPool {
  private readonly lists: FreeList[] = Array.from({ length: MAX_PAGE_ORDER }, () => new FreeList());
  private maxBits = new Uint32Array(0);
  private maxCount = 0;
  /** No max-order block is free in a word above this index. */
  private maxHint = -1;
  freePages = 0;

  private setMax(idx: number, on: boolean): void {
    const w = idx >>> 5;
    if (w >= this.maxBits.length) {
      const grown = new Uint32Array(Math.max(w + 1, this.maxBits.length * 2));
      grown.set(this.maxBits);
      this.maxBits = grown;
    }
    const bit = 1 << (idx & 31);
    if (on) {
      this.maxBits[w]! |= bit;
      this.maxCount++;
      if (w > this.maxHint) this.maxHint = w;
    } else {
      this.maxBits[w]! &= ~bit;
      this.maxCount--;
    }
  }

  private maxFree(idx: number): boolean {
    const w = idx >>> 5;
    return w < this.maxBits.length && (this.maxBits[w]! & (1 << (idx & 31))) !== 0;
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

  /** Frees [pfn, pfn+n) as the largest naturally aligned blocks that fit. */
  freeRange(pfn: number, n: number): void {
    const end = pfn + n;
    while (pfn < end) {
      let order = 0;
      while (order < MAX_PAGE_ORDER && pfn % (2 << order) === 0 && pfn + (2 << order) <= end) order++;
      this.freeBlock(pfn, order);
      pfn += 1 << order;
    }
  }

  private popMax(): number | undefined {
    if (this.maxCount === 0) return undefined;
    for (let w = this.maxHint; w >= 0; w--) {
      const word = this.maxBits[w]!;
      if (word !== 0) {
        this.maxHint = w;
        const bit = 31 - Math.clz32(word);
        const idx = w * 32 + bit;
        this.setMax(idx, false);
        return idx * MAX_BLOCK;
      }
    }
    return undefined;
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
    const bits = this.maxBits.length * 32;
    let i = 0;
    while (i + nBlocks <= bits) {
      let j = 0;
      while (j < nBlocks && this.maxFree(i + j)) j++;
      if (j === nBlocks) {
        for (let k = 0; k < nBlocks; k++) this.setMax(i + k, false);
        this.freePages -= nBlocks * MAX_BLOCK;
        return i * MAX_BLOCK;
      }
      // Skip past the busy block at i+j to the next aligned start.
      i = Math.floor((i + j) / alignBlocks + 1) * alignBlocks;
    }
    return undefined;
  }

  stats(): PoolStats {
    return { freePages: this.freePages, freeBlocks: [...this.lists.map((l) => l.size), this.maxCount] };
  }
}

