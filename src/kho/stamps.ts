/**
 * The 'KHOP' stamps the new kernel puts in the head page's `private` word of every preserved
 * block (kernel/liveupdate/kexec_handover.c, kho_preserved_memory_reserve): here one sorted table
 * of (pfn, order) for all of them, looked up by binary search and cleared on restore, so that a
 * second restore or a restore of anything never preserved finds no stamp.
 */
import { floorIn } from '../machine/ranges.ts';

export class PageStamps {
  private cleared: Uint8Array | undefined;
  private live: number;

  /** `pfns` ascending (no duplicates), `orders[i]` the order of the block at `pfns[i]`. */
  constructor(readonly pfns: Float64Array, readonly orders: Uint8Array, readonly count: number) {
    this.live = count;
  }

  static empty(): PageStamps {
    return new PageStamps(new Float64Array(0), new Uint8Array(0), 0);
  }

  /** Builds from (pfn, order) pairs in any order (later duplicates win, as a Map would). */
  static from(entries: Iterable<readonly [number, number]>): PageStamps {
    const m = new Map<number, number>();
    for (const [pfn, order] of entries) m.set(pfn, order);
    const keys = [...m.keys()].sort((a, b) => a - b);
    const pfns = new Float64Array(keys.length);
    const orders = new Uint8Array(keys.length);
    keys.forEach((k, i) => { pfns[i] = k; orders[i] = m.get(k)!; });
    return new PageStamps(pfns, orders, keys.length);
  }

  private index(pfn: number): number {
    let lo = 0;
    let hi = this.count - 1;
    const p = this.pfns;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = p[mid]!;
      if (v === pfn) return mid;
      if (v < pfn) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** The stamped order of the block starting at `pfn`, or undefined (none, or already cleared). */
  get(pfn: number): number | undefined {
    const i = this.index(pfn);
    if (i < 0 || this.cleared?.[i]) return undefined;
    return this.orders[i];
  }

  /** The end pfn of the stamped block (not restored yet) that holds page `pfn`, or undefined. */
  blockEnd(pfn: number): number | undefined {
    // the last block starting at or below pfn; blocks do not overlap
    const at = floorIn(this.pfns.subarray(0, this.count), pfn);
    if (at < 0 || this.cleared?.[at]) return undefined;
    const end = this.pfns[at]! + 2 ** this.orders[at]!;
    return pfn < end ? end : undefined;
  }

  /** The stamped order of the block at `pfn`, cleared at once (one search for get + delete), or undefined. */
  take(pfn: number): number | undefined {
    const i = this.index(pfn);
    if (i < 0 || this.cleared?.[i]) return undefined;
    (this.cleared ??= new Uint8Array(this.count))[i] = 1;
    this.live--;
    return this.orders[i];
  }

  /** Clears the stamp (a restore). Returns false if there was none. */
  delete(pfn: number): boolean {
    return this.take(pfn) !== undefined;
  }

  /** Stamps not cleared yet. */
  get size(): number {
    return this.live;
  }

  /** Every stamp not cleared yet, ascending by pfn. */
  *[Symbol.iterator](): IterableIterator<[number, number]> {
    for (let i = 0; i < this.count; i++) if (!this.cleared?.[i]) yield [this.pfns[i]!, this.orders[i]!];
  }
}
