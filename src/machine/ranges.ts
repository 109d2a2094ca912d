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

/** Sorted, disjoint, non-adjacent intervals as parallel arrays. */
interface Run {
  s: number[];
  e: number[];
}

/** Entries of the smallest pending level; level k holds up to LEVEL0 << k before it is merged upwards. */
const LEVEL0 = 64;

export class IntervalSet {
  /** Parallel sorted arrays: interval i is [starts[i], ends[i]), disjoint and non-adjacent. */
  private starts: number[] = [];
  private ends: number[] = [];
  /**
   * Recent adds not yet in the main lists, in levels of doubling capacity (a log-structured
   * merge): level 0 takes each add by binary search, a full level is merged into the next one.
   * Each level is sorted and disjoint in itself; levels may touch or overlap one another, so a
   * query asks every level (O(log^2 n)) and a full merge (`flush`) runs before anything that
   * needs the union: a random add costs O(log n) amortized instead of a pass over the set.
   */
  private pending: Run[] = [];

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
    for (const level of this.pending) {
      const k = floorIn(level.s, x);
      if (k >= 0 && x < level.e[k]!) return true;
    }
    return false;
  }

  /** The interval containing x, if any. */
  find(x: number): Span | undefined {
    this.flush();
    const i = this.floorIndex(x);
    return i >= 0 && x < this.ends[i]! ? { start: this.starts[i]!, end: this.ends[i]! } : undefined;
  }

  /** The highest interval, if any. */
  last(): Span | undefined {
    this.flush();
    const n = this.starts.length;
    return n ? { start: this.starts[n - 1]!, end: this.ends[n - 1]! } : undefined;
  }

  /** True when any point of [start, end) is in the set. */
  overlaps(start: number, end: number): boolean {
    if (end <= start) return false;
    const i = this.floorIndex(end - 1);
    if (i >= 0 && this.ends[i]! > start) return true;
    for (const level of this.pending) {
      const k = floorIn(level.s, end - 1);
      if (k >= 0 && level.e[k]! > start) return true;
    }
    return false;
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
   * adds go to the pending levels (see `pending`), so that many random adds — a new kernel adopting
   * every restored block — cost O(n log n) in all.
   */
  add(start: number, end: number): void {
    if (end <= start) return;
    const n = this.starts.length;
    if (this.pending.length === 0 && (n === 0 || start > this.ends[n - 1]!)) {
      this.starts.push(start);
      this.ends.push(end);
      return;
    }
    // Inside an interval of the main lists, or growing one to the right short of the next: in place
    // (a kernel adopting a file's folios one after another extends the same interval each time).
    const i = this.floorIndex(start);
    if (i >= 0 && start <= this.ends[i]! && (i + 1 === n || end < this.starts[i + 1]!)) {
      if (end > this.ends[i]!) this.ends[i] = end;
      return;
    }
    let level = this.pending[0];
    if (!level) this.pending.push((level = { s: [], e: [] }));
    addToArrays(level.s, level.e, start, end);
    if (level.s.length < LEVEL0) return;
    // carry the full level upwards while the next one is occupied
    let carry: Run = level;
    this.pending[0] = { s: [], e: [] };
    let k = 1;
    for (; k < this.pending.length && this.pending[k]!.s.length > 0; k++) {
      carry = mergeRuns(this.pending[k]!, carry);
      this.pending[k] = { s: [], e: [] };
    }
    if (carry.s.length * 2 >= this.starts.length) {
      const main = mergeRuns({ s: this.starts, e: this.ends }, carry);
      this.starts = main.s;
      this.ends = main.e;
      return;
    }
    if (k === this.pending.length) this.pending.push(carry);
    else this.pending[k] = carry;
  }

  /** Merges every pending level into the main lists. */
  private flush(): void {
    if (this.pending.length === 0) return;
    let main: Run = { s: this.starts, e: this.ends };
    for (const level of this.pending) if (level.s.length) main = mergeRuns(main, level);
    this.starts = main.s;
    this.ends = main.e;
    this.pending = [];
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

  /** Removes every point that is in `other` (linear merge of both lists). */
  subtract(other: IntervalSet): void {
    this.flush();
    other.flush();
    const s: number[] = [];
    const e: number[] = [];
    let j = 0;
    for (let i = 0; i < this.starts.length; i++) {
      let cur = this.starts[i]!;
      const end = this.ends[i]!;
      while (j < other.starts.length && other.ends[j]! <= cur) j++;
      for (let k = j; k < other.starts.length && other.starts[k]! < end; k++) {
        if (other.starts[k]! > cur) {
          s.push(cur);
          e.push(other.starts[k]!);
        }
        cur = Math.max(cur, other.ends[k]!);
      }
      if (cur < end) {
        s.push(cur);
        e.push(end);
      }
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
    this.pending = [];
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

/** The union of two runs as one run (a linear merge; overlapping and touching intervals join). */
function mergeRuns(a: Run, b: Run): Run {
  const na = a.s.length;
  const nb = b.s.length;
  const s: number[] = [];
  const e: number[] = [];
  let k = -1;
  let i = 0;
  let j = 0;
  while (i < na || j < nb) {
    let lo: number;
    let hi: number;
    if (j >= nb || (i < na && a.s[i]! <= b.s[j]!)) {
      lo = a.s[i]!;
      hi = a.e[i++]!;
    } else {
      lo = b.s[j]!;
      hi = b.e[j++]!;
    }
    if (k >= 0 && lo <= e[k]!) {
      if (hi > e[k]!) e[k] = hi;
    } else {
      k++;
      s.push(lo);
      e.push(hi);
    }
  }
  return { s, e };
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
