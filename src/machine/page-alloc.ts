/**
 * The running kernel's page allocator: a buddy allocator (mm/page_alloc.c) handing out naturally
 * aligned folios of order 0..MAX_PAGE_ORDER, plus contiguous runs like alloc_contig_pages(). It is
 * seeded from memblock's free ranges; KHO scratch memory forms a separate CMA-like pool that only
 * movable allocations may use.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { MEMBLOCK_KHO_SCRATCH, type Memblock } from './memblock.ts';
import { IntervalSet } from './ranges.ts';
import { BuddyPool, MAX_BLOCK, MAX_PAGE_ORDER, type PoolStats } from './buddy.ts';

export { MAX_PAGE_ORDER, type PoolStats };

export interface PageAllocOptions {
  /**
   * A movable allocation (GFP_MOVABLE): may be served from KHO scratch memory, which the kernel
   * turns into CMA. Memory that may be preserved with KHO must not be movable.
   */
  movable?: boolean;
}

export interface PageAllocStats {
  managedPages: number;
  allocatedPages: number;
  normal: PoolStats;
  /** The KHO scratch (CMA) pool. */
  movable: PoolStats;
}

/** A contiguous allocation made with allocPages (or adoptPages). */
interface Run {
  pfn: number;
  n: number;
}

/** Smallest order whose block holds n pages. */
function orderFor(n: number): number {
  let o = 0;
  while (1 << o < n) o++;
  return o;
}

/** Largest power of two <= n. */
function floorPow2(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

export class PageAllocator {
  private readonly normal = new BuddyPool();
  private readonly movable = new BuddyPool();
  /** Every pfn the allocator manages (free or allocated). */
  private readonly managed = new IntervalSet();
  /** Managed pfns belonging to the movable (scratch/CMA) pool. */
  private readonly cma = new IntervalSet();
  /** Live folios: head pfn -> order. */
  private readonly folios = new Map<number, number>();
  /** Live contiguous runs, sorted by pfn. */
  private runs: Run[] = [];
  private allocated = 0;

  /**
   * memblock_free_all: seeds the allocator with memblock's free ranges (rounded inwards to whole
   * pages). Ranges inside KHO scratch go to the movable pool.
   */
  static fromMemblock(mb: Memblock): PageAllocator {
    const pa = new PageAllocator();
    for (const r of mb.freeRanges()) {
      const start = Math.ceil(r.base / PAGE_SIZE);
      const end = Math.floor(r.end / PAGE_SIZE);
      if (end > start) pa.addFreeRange(start, end - start, { movable: (r.flags & MEMBLOCK_KHO_SCRATCH) !== 0 });
    }
    return pa;
  }

  private checkRange(pfn: number, n: number, what: string): void {
    if (!Number.isSafeInteger(pfn) || pfn < 0 || !Number.isSafeInteger(n) || n <= 0) {
      throw new LuoError('EINVAL', `${what}: bad range pfn ${pfn}, ${n} page(s)`);
    }
  }

  /**
   * Hands pages the allocator does not manage yet to it, free (free_reserved_area; with movable,
   * init_cma_reserved_pageblock for KHO scratch on a cold boot).
   */
  addFreeRange(pfn: number, n: number, opts: PageAllocOptions = {}): void {
    this.checkRange(pfn, n, 'addFreeRange');
    if (this.managed.overlaps(pfn, pfn + n)) throw new LuoError('EBUSY', `addFreeRange: pfns [${pfn}, ${pfn + n}) overlap memory already managed`);
    this.managed.add(pfn, pfn + n);
    if (opts.movable) {
      this.cma.add(pfn, pfn + n);
      this.movable.freeRange(pfn, n);
    } else this.normal.freeRange(pfn, n);
  }

  private checkOrder(order: number, what: string): void {
    if (!Number.isInteger(order) || order < 0 || order > MAX_PAGE_ORDER) {
      throw new LuoError('EINVAL', `${what}: order ${order} is outside 0..${MAX_PAGE_ORDER}`);
    }
  }

  /** folio_alloc(): the head pfn of a free, naturally aligned block of 2^order pages. */
  allocFolio(order: number, opts: PageAllocOptions = {}): number {
    this.checkOrder(order, 'allocFolio');
    let pfn = this.normal.take(order);
    if (pfn === undefined && opts.movable) pfn = this.movable.take(order);
    if (pfn === undefined) {
      throw new LuoError('ENOMEM', `allocFolio: no free block of order ${order}${opts.movable ? '' : ' outside KHO scratch'} (${this.freePagesCount(opts)} free page(s))`);
    }
    this.folios.set(pfn, order);
    this.allocated += 1 << order;
    return pfn;
  }

  private poolOf(pfn: number): BuddyPool {
    return this.cma.contains(pfn) ? this.movable : this.normal;
  }

  /** Index of the run containing pfn, or -1. */
  private runAt(pfn: number): number {
    let lo = 0;
    let hi = this.runs.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.runs[mid]!.pfn <= pfn) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans >= 0 && pfn < this.runs[ans]!.pfn + this.runs[ans]!.n ? ans : -1;
  }

  private insertRun(run: Run): void {
    let lo = 0;
    let hi = this.runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.runs[mid]!.pfn < run.pfn) lo = mid + 1;
      else hi = mid;
    }
    this.runs.splice(lo, 0, run);
  }

  /** folio_put() of the last reference: frees a folio allocated (or adopted) with this order. */
  freeFolio(pfn: number, order: number): void {
    this.checkOrder(order, 'freeFolio');
    const had = this.folios.get(pfn);
    if (had === undefined) {
      if (this.runAt(pfn) >= 0) throw new LuoError('EINVAL', `freeFolio: pfn ${pfn} belongs to a contiguous run; free it with freePages`);
      throw new LuoError('EINVAL', `freeFolio: pfn ${pfn} is not the head of an allocated folio (double free?)`);
    }
    if (had !== order) throw new LuoError('EINVAL', `freeFolio: pfn ${pfn} was allocated with order ${had}, freed with order ${order}`);
    this.folios.delete(pfn);
    this.allocated -= 1 << order;
    this.poolOf(pfn).freeBlock(pfn, order);
  }

  /**
   * alloc_contig_pages(): the first pfn of `n` contiguous free pages, aligned to the largest power
   * of two <= n when such a run exists (runs above a max-order block are built from whole free
   * max-order blocks; falls back to max-order alignment).
   */
  allocPages(n: number, opts: PageAllocOptions = {}): number {
    if (!Number.isSafeInteger(n) || n <= 0) throw new LuoError('EINVAL', `allocPages: bad page count ${n}`);
    const pools = opts.movable ? [this.normal, this.movable] : [this.normal];
    let pfn: number | undefined;
    let pool: BuddyPool | undefined;
    if (n <= MAX_BLOCK) {
      const order = orderFor(n);
      for (pool of pools) if ((pfn = pool.take(order)) !== undefined) break;
      if (pfn !== undefined && n < 1 << order) pool!.freeRange(pfn + n, (1 << order) - n);
    } else {
      const nBlocks = Math.ceil(n / MAX_BLOCK);
      const align = floorPow2(n) / MAX_BLOCK;
      for (pool of pools) {
        pfn = pool.takeContig(nBlocks, align);
        if (pfn === undefined && align > 1) pfn = pool.takeContig(nBlocks, 1);
        if (pfn !== undefined) break;
      }
      if (pfn !== undefined && n < nBlocks * MAX_BLOCK) pool!.freeRange(pfn + n, nBlocks * MAX_BLOCK - n);
    }
    if (pfn === undefined) {
      throw new LuoError('ENOMEM', `allocPages: no ${n} contiguous free page(s)${opts.movable ? '' : ' outside KHO scratch'}`);
    }
    this.insertRun({ pfn, n });
    this.allocated += n;
    return pfn;
  }

  /** free_contig_range(): frees [pfn, pfn+n), which must lie inside one run from allocPages/adoptPages. */
  freePages(pfn: number, n: number): void {
    this.checkRange(pfn, n, 'freePages');
    const i = this.runAt(pfn);
    if (i < 0) {
      if (this.folios.has(pfn)) throw new LuoError('EINVAL', `freePages: pfn ${pfn} is a folio; free it with freeFolio`);
      throw new LuoError('EINVAL', `freePages: pfn ${pfn} is not allocated (double free?)`);
    }
    const run = this.runs[i]!;
    const runEnd = run.pfn + run.n;
    if (pfn + n > runEnd) throw new LuoError('EINVAL', `freePages: [${pfn}, ${pfn + n}) runs past the allocation [${run.pfn}, ${runEnd})`);
    const pieces: Run[] = [];
    if (pfn > run.pfn) pieces.push({ pfn: run.pfn, n: pfn - run.pfn });
    if (pfn + n < runEnd) pieces.push({ pfn: pfn + n, n: runEnd - pfn - n });
    this.runs.splice(i, 1, ...pieces);
    this.allocated -= n;
    // A run may straddle the scratch boundary only if it was adopted; free each part to its pool.
    let cur = pfn;
    for (const c of this.cma.within(pfn, pfn + n)) {
      if (c.start > cur) this.normal.freeRange(cur, c.start - cur);
      this.movable.freeRange(c.start, c.end - c.start);
      cur = c.end;
    }
    if (cur < pfn + n) this.normal.freeRange(cur, pfn + n - cur);
  }

  private adopt(pfn: number, n: number, what: string): void {
    this.checkRange(pfn, n, what);
    if (this.managed.overlaps(pfn, pfn + n)) throw new LuoError('EBUSY', `${what}: pfns [${pfn}, ${pfn + n}) are already managed by the page allocator`);
    this.managed.add(pfn, pfn + n);
    this.allocated += n;
  }

  /**
   * Takes a block the allocator never managed (memblock-reserved, e.g. a folio KHO restored) as an
   * allocated folio, so that freeFolio later returns it to the free lists.
   */
  adoptFolio(pfn: number, order: number): void {
    this.checkOrder(order, 'adoptFolio');
    if (pfn % (1 << order) !== 0) throw new LuoError('EINVAL', `adoptFolio: pfn ${pfn} is not aligned to order ${order}`);
    this.adopt(pfn, 1 << order, 'adoptFolio');
    this.folios.set(pfn, order);
  }

  /** Same as adoptFolio for a run of order-0 pages (kho_restore_pages). */
  adoptPages(pfn: number, n: number): void {
    this.adopt(pfn, n, 'adoptPages');
    this.insertRun({ pfn, n });
  }

  isManaged(pfn: number): boolean {
    return this.managed.contains(pfn);
  }

  /** Every live allocation as [startPfn, endPfn): folios, then contiguous runs (for views). */
  allocatedRanges(): { ranges: Array<[number, number]>; folios: number } {
    const ranges: Array<[number, number]> = [];
    for (const [pfn, order] of this.folios) ranges.push([pfn, pfn + 2 ** order]);
    for (const r of this.runs) ranges.push([r.pfn, r.pfn + r.n]);
    return { ranges, folios: this.folios.size };
  }

  /** Is the page managed and handed out (part of a live folio or run)? */
  isAllocated(pfn: number): boolean {
    return this.managed.contains(pfn) && !this.poolOf(pfn).isFree(pfn);
  }

  /** Free pages usable by an allocation of this kind (movable ones may also use scratch). */
  freePagesCount(opts: PageAllocOptions = {}): number {
    return this.normal.freePages + (opts.movable ? this.movable.freePages : 0);
  }

  stats(): PageAllocStats {
    return {
      managedPages: this.managed.total(),
      allocatedPages: this.allocated,
      normal: this.normal.stats(),
      movable: this.movable.stats(),
    };
  }
}
