/**
 * The simulated computer's physical memory: sparse, page-granular, storage allocated lazily per
 * 4 KiB page, with the poisoning a kexec applies to everything that was not preserved. Other layers
 * read and write it by physical address as the kernel does through phys_to_virt().
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { IntervalSet, hex, type Span } from './ranges.ts';
import { type ImageOptions, type ImageStream, type LoadedBase, type LoadedImage, type WrittenImage, readImage, writeImage } from './image.ts';

/** A physical byte range [start, end) (end exclusive). */
export interface PhysRange {
  readonly start: bigint;
  readonly end: bigint;
}

/** State of one page: never written (reads zeros), written (has bytes), or poisoned by a kexec. */
export type PageState = 'zero' | 'data' | 'poison';

/** A run of consecutive pages in one state. */
export interface PageRun {
  readonly state: PageState;
  readonly pfn: number;
  readonly count: number;
}

export interface MemoryStats {
  /** Pages that have host storage (DATA pages). */
  touchedPages: number;
  /** Estimated host bytes used by page storage and range bookkeeping. */
  hostBytes: number;
  /** Maximal page runs outside the zero background: poisoned, except pages written since. */
  poisonedRanges: number;
  /** Ranges of the zero-page background (the bookkeeping that replaces a per-page array). */
  zeroRanges: number;
}

/** The byte that dominates the poison pattern. */
export const POISON_BYTE = 0x5a;
/** The 8-byte poison pattern, repeated from every 8-byte-aligned physical address: "ZZPOISNZ". */
export const POISON_PATTERN: Uint8Array = Uint8Array.of(0x5a, 0x5a, 0x50, 0x4f, 0x49, 0x53, 0x4e, 0x5a);

const POISON_PAGE = new Uint8Array(PAGE_SIZE);
for (let i = 0; i < PAGE_SIZE; i++) POISON_PAGE[i] = POISON_PATTERN[i % 8]!;

/** True when `bytes`, read from physical address `pa`, is entirely the poison pattern. */
export function isPoisoned(bytes: Uint8Array, pa: bigint = 0n): boolean {
  const phase = Number(pa & 7n);
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== POISON_PATTERN[(phase + i) & 7]) return false;
  return true;
}

// Host cost of one stored page beyond its 4096 bytes (Map entry and Uint8Array on the heap, ~220 B;
// malloc overhead of the backing store, ~260 B: 100 000 pages cost 4577 B each in RSS on Node 20),
// and of one range of bookkeeping (two doubles).
const PAGE_OVERHEAD = 480;
const RANGE_BYTES = 16;
const MAX_STORED_PAGES = 2 ** 24 - 1;


/**
 * Physical memory of `size` bytes. A page without storage reads as zeros when it lies in the zero
 * background (all of RAM at power-on) and as the poison pattern otherwise; writing a page gives it
 * storage. Addresses are bigint (phys_addr_t); lengths are numbers (they size host buffers).
 */
export class PhysicalMemory {
  readonly size: bigint;
  readonly nrPages: number;
  private readonly bytes: number;
  /** Host storage of DATA pages, by pfn. */
  private readonly pages = new Map<number, Uint8Array>();
  /** Stored pages per 512-page (2 MiB) block, by block index: lets storedIn skip blocks with none. */
  private readonly perBlock = new Map<number, number>();
  /** Pages without storage that read as zeros; every other storage-less page is poisoned. */
  private zeroPages = new IntervalSet();
  /** While a kexec pre-copies: the pfns whose storage changed (or was handed out live) since it began. */
  private changed: Set<number> | undefined;

  constructor({ size }: { size: bigint | number }) {
    const s = BigInt(size);
    if (s <= 0n || s % BigInt(PAGE_SIZE) !== 0n) {
      throw new LuoError('EINVAL', `physical memory size ${hex(s)} must be a positive multiple of ${PAGE_SIZE}`);
    }
    if (s > BigInt(Number.MAX_SAFE_INTEGER)) throw new LuoError('EINVAL', `physical memory size ${hex(s)} exceeds 2^53 bytes`);
    this.size = s;
    this.bytes = Number(s);
    this.nrPages = this.bytes / PAGE_SIZE;
    this.zeroPages.add(0, this.nrPages);
  }

  /** Validates [pa, pa+len) and returns pa as a number. */
  private check(pa: bigint, len: number, what: string): number {
    if (!Number.isInteger(len) || len < 0) throw new LuoError('EINVAL', `${what}: bad length ${len} at ${hex(pa)}`);
    if (pa < 0n || pa + BigInt(len) > this.size) {
      throw new LuoError('EFAULT', `${what}: ${len} byte(s) at physical address ${hex(pa)} lie outside RAM [0x0, ${hex(this.size)})`);
    }
    return Number(pa);
  }

  private checkPfn(pfn: number, what: string): void {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.nrPages) {
      throw new LuoError('EFAULT', `${what}: pfn ${pfn} lies outside RAM (${this.nrPages} pages)`);
    }
  }

  pageState(pfn: number): PageState {
    this.checkPfn(pfn, 'pageState');
    if (this.pages.has(pfn)) return 'data';
    return this.zeroPages.contains(pfn) ? 'zero' : 'poison';
  }

  /** Records a page's storage. A JS Map holds at most 2^24 entries: 64 GiB of written pages. */
  private store(pfn: number, bytes: Uint8Array): void {
    if (this.pages.size >= MAX_STORED_PAGES && !this.pages.has(pfn)) {
      throw new LuoError('ENOMEM', `storing pfn ${pfn}: the simulator holds at most ${MAX_STORED_PAGES} written pages (64 GiB)`);
    }
    if (!this.pages.has(pfn)) {
      const b = Math.floor(pfn / 512);
      this.perBlock.set(b, (this.perBlock.get(b) ?? 0) + 1);
    }
    this.pages.set(pfn, bytes);
    this.changed?.add(pfn);
  }

  /** Drops a page's storage. */
  private unstore(pfn: number): void {
    if (!this.pages.delete(pfn)) return;
    this.changed?.add(pfn);
    const b = Math.floor(pfn / 512);
    const n = this.perBlock.get(b)! - 1;
    if (n === 0) this.perBlock.delete(b);
    else this.perBlock.set(b, n);
  }

  /**
   * Gives a page storage (zeros or the poison pattern, as it read before) and returns it, to be
   * written: while changes are tracked the page counts as changed (its view may be written later).
   */
  private materialize(pfn: number): Uint8Array {
    let p = this.pages.get(pfn);
    if (p === undefined) {
      p = this.zeroPages.contains(pfn) ? new Uint8Array(PAGE_SIZE) : POISON_PAGE.slice();
      this.store(pfn, p);
    } else this.changed?.add(pfn);
    return p;
  }

  /**
   * A live, writable view of one page (materialising it): edits through it are memory writes, and
   * writes by address show through it. It stays live until poisonExcept() drops the page.
   */
  page(pfn: number): Uint8Array {
    this.checkPfn(pfn, 'page');
    return this.materialize(pfn);
  }

  /** Copies `len` bytes starting at `pa`. */
  read(pa: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.readInto(pa, out, 0, len);
    return out;
  }

  /** Copies `len` bytes starting at `pa` into `out` at `outOff` (a zero page is written as zeros). */
  readInto(pa: bigint, out: Uint8Array, outOff: number, len: number): void {
    let at = this.check(pa, len, 'read');
    if (outOff < 0 || outOff + len > out.length) throw new LuoError('EINVAL', `read: ${len} byte(s) at offset ${outOff} do not fit a buffer of ${out.length}`);
    let pos = outOff;
    const end = outOff + len;
    while (pos < end) {
      const pfn = Math.floor(at / PAGE_SIZE);
      const off = at - pfn * PAGE_SIZE;
      const n = Math.min(end - pos, PAGE_SIZE - off);
      const p = this.pages.get(pfn);
      if (p !== undefined) out.set(p.subarray(off, off + n), pos);
      else if (!this.zeroPages.contains(pfn)) out.set(POISON_PAGE.subarray(off, off + n), pos);
      else out.fill(0, pos, pos + n);
      pos += n;
      at += n;
    }
  }

  write(pa: bigint, data: Uint8Array): void {
    let at = this.check(pa, data.length, 'write');
    let pos = 0;
    while (pos < data.length) {
      const pfn = Math.floor(at / PAGE_SIZE);
      const off = at - pfn * PAGE_SIZE;
      const n = Math.min(data.length - pos, PAGE_SIZE - off);
      if (n === PAGE_SIZE && !this.pages.has(pfn)) this.store(pfn, data.slice(pos, pos + n));
      else this.materialize(pfn).set(data.subarray(pos, pos + n), off);
      pos += n;
      at += n;
    }
  }

  readU64(pa: bigint): bigint {
    const b = this.read(pa, 8);
    return new DataView(b.buffer).getBigUint64(0, true);
  }

  writeU64(pa: bigint, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.write(pa, b);
  }

  readU32(pa: bigint): number {
    const b = this.read(pa, 4);
    return new DataView(b.buffer).getUint32(0, true);
  }

  writeU32(pa: bigint, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.write(pa, b);
  }

  /** Sets `len` bytes at `pa` to `byte`. Whole pages filled with 0 go back to the zero background. */
  fill(pa: bigint, len: number, byte: number): void {
    const start = this.check(pa, len, 'fill');
    if (!Number.isInteger(byte) || byte < 0 || byte > 255) throw new LuoError('EINVAL', `fill: bad byte value ${byte}`);
    const end = start + len;
    const firstFull = Math.ceil(start / PAGE_SIZE);
    const lastFull = Math.floor(end / PAGE_SIZE); // exclusive
    const partial = (s: number, e: number): void => {
      if (e <= s) return;
      const pfn = Math.floor(s / PAGE_SIZE);
      if (byte === 0 && !this.pages.has(pfn) && this.zeroPages.contains(pfn)) return;
      this.materialize(pfn).fill(byte, s - pfn * PAGE_SIZE, e - pfn * PAGE_SIZE);
    };
    if (firstFull >= lastFull) {
      // No whole page inside: at most two partial pages.
      const mid = Math.min(end, firstFull * PAGE_SIZE);
      partial(start, mid);
      partial(Math.max(mid, start), end);
      return;
    }
    partial(start, firstFull * PAGE_SIZE);
    partial(lastFull * PAGE_SIZE, end);
    if (byte === 0) {
      // Stored pages keep their storage (live views stay valid) and are cleared; the rest join the
      // zero background without being touched.
      for (const pfn of this.storedIn(firstFull, lastFull)) this.materialize(pfn).fill(0);
      this.zeroPages.add(firstFull, lastFull);
    } else {
      for (let pfn = firstFull; pfn < lastFull; pfn++) this.materialize(pfn).fill(byte);
    }
  }

  zero(pa: bigint, len: number): void {
    this.fill(pa, len, 0);
  }

  /** Pfns with storage inside [startPfn, endPfn), ascending. */
  private storedIn(startPfn: number, endPfn: number): number[] {
    const out: number[] = [];
    if (endPfn - startPfn < this.pages.size) {
      // block by block: a block without stored pages costs one lookup, not 512
      for (let pfn = startPfn; pfn < endPfn;) {
        const b = Math.floor(pfn / 512);
        const blockEnd = Math.min(endPfn, (b + 1) * 512);
        if (this.perBlock.has(b)) for (; pfn < blockEnd; pfn++) if (this.pages.has(pfn)) out.push(pfn);
        pfn = blockEnd;
      }
    } else {
      for (const pfn of this.pages.keys()) if (pfn >= startPfn && pfn < endPfn) out.push(pfn);
      out.sort((a, b) => a - b);
    }
    return out;
  }

  /**
   * Page-frame spans covering byte ranges (rounded outwards: a page partly inside is included),
   * checked against RAM, sorted and merged.
   */
  pageSpans(ranges: readonly PhysRange[], what: string): IntervalSet {
    const spans: Span[] = new Array(ranges.length);
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i]!;
      // Number() of a bigint is exact below 2^53 (RAM is smaller); the checks below catch the rest.
      const start = Number(r.start);
      const end = Number(r.end);
      if (!(end >= start)) throw new LuoError('EINVAL', `${what}: range [${hex(r.start)}, ${hex(r.end)}) ends before it starts`);
      if (start < 0 || end > this.bytes) {
        throw new LuoError('EFAULT', `${what}: range [${hex(r.start)}, ${hex(r.end)}) lies outside RAM [0x0, ${hex(this.size)})`);
      }
      spans[i] = { start: Math.floor(start / PAGE_SIZE), end: Math.ceil(end / PAGE_SIZE) };
    }
    return IntervalSet.from(spans);
  }

  /**
   * What a kexec does to memory nobody preserved: every page outside `keep` becomes POISON (its
   * storage is freed); kept pages keep their state. Costs O(ranges + stored pages), never O(RAM).
   */
  poisonExcept(keep: readonly PhysRange[]): void {
    const kept = this.pageSpans(keep, 'poisonExcept');
    this.zeroPages.intersect(kept);
    for (const pfn of [...this.pages.keys()]) if (!kept.contains(pfn)) this.unstore(pfn);
  }

  /** The pages of [startPfn, endPfn) as maximal runs of one state, ascending. */
  *runs(startPfn: number, endPfn: number): Generator<PageRun> {
    const stored = this.storedIn(startPfn, endPfn);
    let si = 0;
    let cur = startPfn;
    // Background runs between stored pages: zero where the zero set says so, poison elsewhere.
    const background = function* (self: PhysicalMemory, s: number, e: number): Generator<PageRun> {
      let c = s;
      for (const z of self.zeroPages.within(s, e)) {
        if (z.start > c) yield { state: 'poison', pfn: c, count: z.start - c };
        yield { state: 'zero', pfn: z.start, count: z.end - z.start };
        c = z.end;
      }
      if (c < e) yield { state: 'poison', pfn: c, count: e - c };
    };
    while (cur < endPfn) {
      const next = si < stored.length ? stored[si]! : endPfn;
      if (next > cur) yield* background(this, cur, next);
      if (si < stored.length) {
        let n = 1;
        while (si + n < stored.length && stored[si + n] === next + n) n++;
        yield { state: 'data', pfn: next, count: n };
        si += n;
        cur = next + n;
      } else cur = endPfn;
    }
  }

  /** The stored bytes of a DATA page (a live view, to be read only: writes go through page()), or undefined. */
  storedPage(pfn: number): Uint8Array | undefined {
    return this.pages.get(pfn);
  }

  /**
   * Starts recording which pages change from now on: given or dropped storage, writes, fills, and
   * every page() handed out (a live view may be written through later). A kexec's pre-copy uses
   * it to rewrite in the blackout only the pages changed since they were copied. Restarts the log.
   */
  trackChanges(): ReadonlySet<number> {
    this.changed = new Set();
    return this.changed;
  }

  /** Stops recording changes (the set trackChanges returned stays as it was). */
  stopTracking(): void {
    this.changed = undefined;
  }

  /** Sets a run of pages to ZERO or POISON, dropping any storage (used when loading an image). */
  setRunState(pfn: number, count: number, state: 'zero' | 'poison'): void {
    this.checkPfn(pfn, 'setRunState');
    this.checkPfn(pfn + count - 1, 'setRunState');
    for (const p of this.storedIn(pfn, pfn + count)) this.unstore(p);
    if (state === 'zero') this.zeroPages.add(pfn, pfn + count);
    else this.zeroPages.remove(pfn, pfn + count);
  }

  /**
   * Gives a page storage holding `bytes` (PAGE_SIZE of them): a copy, or with `adopt` the view itself
   * (zero-copy: the caller hands over a buffer nobody else writes, e.g. an image loader's chunk).
   */
  setPageData(pfn: number, bytes: Uint8Array, opts: { adopt?: boolean } = {}): void {
    this.checkPfn(pfn, 'setPageData');
    if (bytes.length !== PAGE_SIZE) throw new LuoError('EINVAL', `setPageData: pfn ${pfn}: ${bytes.length} bytes, expected ${PAGE_SIZE}`);
    this.store(pfn, opts.adopt ? bytes : bytes.slice());
  }

  stats(): MemoryStats {
    let poisoned = 0;
    let prevEnd = 0;
    const countGap = (s: number, e: number): void => {
      if (e > s) poisoned++;
    };
    for (const z of this.zeroPages) {
      countGap(prevEnd, z.start);
      prevEnd = z.end;
    }
    countGap(prevEnd, this.nrPages);
    return {
      touchedPages: this.pages.size,
      hostBytes: this.pages.size * (PAGE_SIZE + PAGE_OVERHEAD) + this.zeroPages.count * RANGE_BYTES,
      poisonedRanges: poisoned,
      zeroRanges: this.zeroPages.count,
    };
  }

  /**
   * Writes the pages of `ranges` (DATA bytes, ZERO/POISON as runs) and `meta` to `path`
   * atomically: path.tmp, fsync, rename, fsync of the directory (the fsyncs only if `durable`).
   */
  saveImage(path: string, opts: ImageOptions): Promise<WrittenImage> {
    return writeImage(this, path, opts);
  }

  /** Reads an image written by saveImage; every page outside the saved ranges is POISON. */
  static loadImage(path: string, opts: { expectSize?: bigint; stream?: ImageStream; base?: LoadedBase } = {}): Promise<LoadedImage> {
    return readImage(path, (size) => new PhysicalMemory({ size }), opts);
  }
}
