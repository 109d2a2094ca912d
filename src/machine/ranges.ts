/**
 * A sorted set of disjoint half-open integer intervals [start, end), used for page-frame and byte
 * ranges: which pages read as zero, which pages an allocator manages. Plays the role of the kernel's
 * range lists (memblock arrays, resource trees) where a per-page array would be too big.
 */

/** An address or size as the kernel prints it (%#llx), sign kept for bad negative input. */
export function hex(v: bigint | number): string {
  return v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

/** A half-open interval [start, end) of integers (pfns or byte offsets below 2^53). */
export interface Span {
  start: number;
  end: number;
}

export class IntervalSet {
  /** Parallel sorted arrays: interval i is [starts[i], ends[i]), disjoint and non-adjacent. */
  private starts: number[] = [];
  private ends: number[] = [];
  /** Side buffer of recent adds (sorted, disjoint among themselves); see `add`. */
  private pStarts: number[] = [];
  private pEnds: number[] = [];

  /** Builds a set from spans in any order, overlapping or not; empty spans are dropped. */
  static from(spans: Iterable<Span>): IntervalSet {
    const list = [...spans].filter((s) => s.end > s.start).sort((a, b) => a.start - b.start);
    const set = new IntervalSet();
    for (const s of list) set.add(s.start, s.end);
    return set;
  }

  get count(): number {
    this.flush();
    return this.starts.length;
  }

  /** Sum of the interval lengths. */
  total(): number {
    this.flush();
    let t = 0;
    for (let i = 0; i < this.starts.length; i++) t += this.ends[i]! - this.starts[i]!;
    return t;
  }

  /** Index of the last interval whose start is <= x, or -1. */
  private floorIndex(x: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= x) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  contains(x: number): boolean {
    const i = this.floorIndex(x);
    if (i >= 0 && x < this.ends[i]!) return true;
    const k = floorIn(this.pStarts, x);
    return k >= 0 && x < this.pEnds[k]!;
  }

  /** The interval containing x, if any. */
  find(x: number): Span | undefined {
    this.flush();
    const i = this.floorIndex(x);
    return i >= 0 && x < this.ends[i]! ? { start: this.starts[i]!, end: this.ends[i]! } : undefined;
  }

  /** True when any point of [start, end) is in the set. */
  overlaps(start: number, end: number): boolean {
    if (end <= start) return false;
    const i = this.floorIndex(end - 1);
    if (i >= 0 && this.ends[i]! > start) return true;
    const k = floorIn(this.pStarts, end - 1);
    return k >= 0 && this.pEnds[k]! > start;
  }

  /** True when every point of [start, end) is in the set. */
  covers(start: number, end: number): boolean {
    this.flush();
    if (end <= start) return true;
    const i = this.floorIndex(start);
    return i >= 0 && this.ends[i]! >= end;
  }

  /**
   * Adds [start, end), merging with neighbours. Appending past the last interval is O(1); other
   * adds go to a small sorted side buffer merged in one linear pass when it grows (so that many
   * random adds — a new kernel adopting every restored block — stay near O(n log n), not O(n^2)).
   */
  add(start: number, end: number): void {
    if (end <= start) return;
    const n = this.starts.length;
    if (this.pStarts.length === 0 && (n === 0 || start > this.ends[n - 1]!)) {
      this.starts.push(start);
      this.ends.push(end);
      return;
    }
    addToArrays(this.pStarts, this.pEnds, start, end);
    if (this.pStarts.length > 512 && this.pStarts.length * this.pStarts.length > n) this.flush();
  }

  /** Merges the side buffer into the main lists (one linear pass). */
  private flush(): void {
    if (this.pStarts.length === 0) return;
    const s: number[] = [];
    const e: number[] = [];
    let i = 0;
    let j = 0;
    const push = (a: number, b: number): void => {
      const k = s.length - 1;
      if (k >= 0 && a <= e[k]!) e[k] = Math.max(e[k]!, b);
      else {
        s.push(a);
        e.push(b);
      }
    };
    while (i < this.starts.length || j < this.pStarts.length) {
      if (j >= this.pStarts.length || (i < this.starts.length && this.starts[i]! <= this.pStarts[j]!)) {
        push(this.starts[i]!, this.ends[i]!);
        i++;
      } else {
        push(this.pStarts[j]!, this.pEnds[j]!);
        j++;
      }
    }
    this.starts = s;
    this.ends = e;
    this.pStarts = [];
    this.pEnds = [];
  }

  /** Removes [start, end), splitting an interval that straddles either end. */
  remove(start: number, end: number): void {
    this.flush();
    if (end <= start || this.starts.length === 0) return;
    let i = this.floorIndex(start);
    if (i < 0 || this.ends[i]! <= start) i++;
    let j = i;
    const newS: number[] = [];
    const newE: number[] = [];
    while (j < this.starts.length && this.starts[j]! < end) {
      if (this.starts[j]! < start) {
        newS.push(this.starts[j]!);
        newE.push(start);
      }
      if (this.ends[j]! > end) {
        newS.push(end);
        newE.push(this.ends[j]!);
      }
      j++;
    }
    if (j === i) return;
    this.starts.splice(i, j - i, ...newS);
    this.ends.splice(i, j - i, ...newE);
  }

  /** Keeps only the points also in `other` (linear merge of both lists). */
  intersect(other: IntervalSet): void {
    this.flush();
    other.flush();
    const s: number[] = [];
    const e: number[] = [];
    let i = 0;
    let j = 0;
    while (i < this.starts.length && j < other.starts.length) {
      const lo = Math.max(this.starts[i]!, other.starts[j]!);
      const hi = Math.min(this.ends[i]!, other.ends[j]!);
      if (lo < hi) {
        s.push(lo);
        e.push(hi);
      }
      if (this.ends[i]! < other.ends[j]!) i++;
      else j++;
    }
    this.starts = s;
    this.ends = e;
  }

  /** The intervals overlapping [start, end), clipped to it, in ascending order. */
  *within(start: number, end: number): Generator<Span> {
    this.flush();
    let i = this.floorIndex(start);
    if (i < 0 || this.ends[i]! <= start) i++;
    for (; i < this.starts.length && this.starts[i]! < end; i++) {
      yield { start: Math.max(this.starts[i]!, start), end: Math.min(this.ends[i]!, end) };
    }
  }

  /** The gaps of the set inside [start, end), in ascending order. */
  *gaps(start: number, end: number): Generator<Span> {
    let cur = start;
    for (const s of this.within(start, end)) {
      if (s.start > cur) yield { start: cur, end: s.start };
      cur = s.end;
    }
    if (cur < end) yield { start: cur, end };
  }

  *[Symbol.iterator](): Generator<Span> {
    this.flush();
    for (let i = 0; i < this.starts.length; i++) yield { start: this.starts[i]!, end: this.ends[i]! };
  }

  clone(): IntervalSet {
    this.flush();
    const c = new IntervalSet();
    c.starts = this.starts.slice();
    c.ends = this.ends.slice();
    return c;
  }

  clear(): void {
    this.starts = [];
    this.ends = [];
    this.pStarts = [];
    this.pEnds = [];
  }
}

/** Index of the last start <= x in a sorted array, or -1. */
export function floorIn(starts: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= x) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

/** Adds [start, end) to sorted disjoint parallel arrays, merging touching neighbours. */
function addToArrays(starts: number[], ends: number[], start: number, end: number): void {
  const n = starts.length;
  if (n === 0 || start > ends[n - 1]!) {
    starts.push(start);
    ends.push(end);
    return;
  }
  let i = floorIn(starts, start);
  if (i < 0 || ends[i]! < start) i++;
  let j = i;
  let s = start;
  let e = end;
  while (j < n && starts[j]! <= end) {
    s = Math.min(s, starts[j]!);
    e = Math.max(e, ends[j]!);
    j++;
  }
  starts.splice(i, j - i, s);
  ends.splice(i, j - i, e);
}
