/**
 * Decodes the preserved-memory tracker from a memory view: the kho-v2+ radix tree (6 levels of
 * page tables, bitmap leaves of (pa, order) keys) or kho-v1's chunk list of per-order bitmaps.
 * Every pointer, loop and key is checked and reported; the result answers "is this page preserved".
 */
import { KHO_BITMAP_SIZE_LOG2, KHO_MEM_CHUNK_CAPACITY, KHO_ORDER_0_LOG2, KHO_TABLE_SIZE_LOG2, KhoBitmapElm, KhoMemChunkHdr, PAGE_SIZE } from '../abi/kho.ts';
import { decodeKey } from '../kho/radix.ts';
import { type PhysView, le64 } from './phys.ts';
import { type Problems, type TrackerBlock, type TrackerInfo, hex } from './report.ts';

/** Blocks listed in the report (all are counted). */
export const MAX_LISTED_BLOCKS = 100000;
/** Blocks remembered for preserved-ness checks, and tracker pages read, at most. */
const MAX_BLOCKS = 1 << 22;
const MAX_NODES = 1 << 18;
const MAX_V1_CHUNKS = 1 << 16;
/** Problems listed per radix table before the rest are only counted. */
const BAD_PER_NODE = 8;

/** The union of preserved blocks, as sorted disjoint page-frame intervals. */
export class PreservedSet {
  private starts: number[] = [];
  private ends: number[] = [];
  private readonly heads = new Map<number, number>();
  /** False when more blocks existed than were remembered: a "not preserved" answer is then unsure. */
  complete = true;

  static from(blocks: readonly { pfn: number; order: number }[]): PreservedSet {
    const s = new PreservedSet();
    for (const b of blocks) s.heads.set(b.pfn, b.order);
    const list = blocks.map((b) => [b.pfn, b.pfn + 2 ** b.order] as const).sort((a, b) => a[0] - b[0]);
    for (const [a, e] of list) {
      const n = s.ends.length;
      if (n && a <= s.ends[n - 1]!) s.ends[n - 1] = Math.max(s.ends[n - 1]!, e);
      else { s.starts.push(a); s.ends.push(e); }
    }
    return s;
  }

  /** The order of the preserved block starting at `pfn`, if one does. */
  orderOf(pfn: number): number | undefined {
    return this.heads.get(pfn);
  }

  /** Whether every page of [pa, pa+len) lies in one preserved interval. */
  covers(pa: bigint, len: number): boolean {
    if (pa < 0n || pa + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) return false;
    const first = Math.floor(Number(pa) / PAGE_SIZE);
    const last = Math.floor((Number(pa) + Math.max(len, 1) - 1) / PAGE_SIZE);
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (first < this.starts[mid]!) hi = mid - 1;
      else if (first >= this.ends[mid]!) lo = mid + 1;
      else return last < this.ends[mid]!;
    }
    return false;
  }
}

interface Acc {
  blocks: { pfn: number; order: number }[];
  list: TrackerBlock[];
  count: number;
  perOrder: Record<string, number>;
  total: bigint;
}

function newAcc(): Acc {
  return { blocks: [], list: [], count: 0, perOrder: {}, total: 0n };
}

function record(acc: Acc, pfn: number, order: number): void {
  acc.count++;
  acc.perOrder[order] = (acc.perOrder[order] ?? 0) + 1;
  acc.total += BigInt(PAGE_SIZE) << BigInt(order);
  const pa = BigInt(pfn) * BigInt(PAGE_SIZE);
  if (acc.list.length < MAX_LISTED_BLOCKS) acc.list.push({ pa, order, key: (1n << BigInt(KHO_ORDER_0_LOG2 - order)) | (pa >> BigInt(12 + order)) });
  if (acc.blocks.length < MAX_BLOCKS) acc.blocks.push({ pfn, order });
}

function finish(acc: Acc, format: 'radix' | 'chunks', rootPa: bigint, nodes: number, problems: Problems, where: string): { info: TrackerInfo; set: PreservedSet } {
  const set = PreservedSet.from(acc.blocks);
  set.complete = acc.blocks.length === acc.count;
  if (!set.complete) problems.info(where, `${acc.count} blocks; only the first ${acc.blocks.length} are used for preserved-ness checks`);
  // Overlapping blocks: the next kernel would reserve the same memory twice.
  const sorted = [...acc.blocks].sort((a, b) => a.pfn - b.pfn);
  let reported = 0;
  for (let i = 1; i < sorted.length && reported < 10; i++) {
    const p = sorted[i - 1]!;
    const c = sorted[i]!;
    if (c.pfn < p.pfn + 2 ** p.order) {
      problems.error(where, `preserved block ${hex(c.pfn * PAGE_SIZE)} order ${c.order} overlaps block ${hex(p.pfn * PAGE_SIZE)} order ${p.order}`);
      reported++;
    }
  }
  return {
    info: { format, rootPa, nodes, blocks: acc.count, perOrder: acc.perOrder, totalBytes: acc.total, list: acc.list, listTruncated: acc.list.length < acc.count },
    set,
  };
}

const TABLE = 1 << KHO_TABLE_SIZE_LOG2;

/** The kho-v2+ radix tree rooted at `rootPa` (preserved-memory-map). */
export function walkRadix(view: PhysView, rootPa: bigint, problems: Problems): { info: TrackerInfo; set: PreservedSet } {
  const acc = newAcc();
  const seen = new Set<bigint>();
  let budgetHit = false;
  const node = (pa: bigint, where: string): Uint8Array | undefined => {
    if (pa % BigInt(PAGE_SIZE) !== 0n) { problems.error(where, `points to unaligned address ${hex(pa)}`); return undefined; }
    if (seen.has(pa)) { problems.error(where, `reaches node ${hex(pa)} a second time (a loop or a shared node)`); return undefined; }
    if (seen.size >= MAX_NODES) { if (!budgetHit) problems.error(where, `more than ${MAX_NODES} tracker nodes; walk stopped`); budgetHit = true; return undefined; }
    seen.add(pa);
    try {
      return view.read(pa, PAGE_SIZE);
    } catch (e) {
      problems.error(where, `node ${hex(pa)} points outside memory: ${(e as Error).message}`);
      return undefined;
    }
  };
  const leaf = (page: Uint8Array, prefix: number, where: string): void => {
    for (let byte = 0; byte < PAGE_SIZE; byte++) {
      let b = page[byte]!;
      for (let bit = 0; b !== 0; bit++, b >>>= 1) {
        if ((b & 1) === 0) continue;
        const key = prefix + byte * 8 + bit;
        if (key === 0) { problems.error(where, 'key 0 is set (no order bit)'); continue; }
        const { pfn, order } = decodeKey(key);
        record(acc, pfn, order);
      }
    }
  };
  const rec = (page: Uint8Array, pa: bigint, level: number, prefix: number): void => {
    const where = `KHO radix L${level} @${hex(pa)}`;
    if (level === 0) return leaf(page, prefix, where);
    const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
    const span = 2 ** (KHO_BITMAP_SIZE_LOG2 + KHO_TABLE_SIZE_LOG2 * (level - 1));
    // A table that is really some other page would give 512 problems: list a few, count the rest.
    let shown = 0;
    let hidden = 0;
    const bad = (w: string, m: string): void => { if (shown++ < BAD_PER_NODE) problems.error(w, m); else hidden++; };
    for (let i = 0; i < TABLE; i++) {
      const child = dv.getBigUint64(i * 8, true);
      if (child === 0n) continue;
      const childPrefix = prefix + i * span;
      if (childPrefix >= 2 ** (KHO_ORDER_0_LOG2 + 1)) { bad(`${where} [${i}]`, `entry ${hex(child)} covers keys of no possible order (index ${i} too high)`); continue; }
      if (child % BigInt(PAGE_SIZE) !== 0n) { bad(`${where} [${i}]`, `points to unaligned address ${hex(child)}`); continue; }
      const p = node(child, `${where} [${i}]`);
      if (p) rec(p, child, level - 1, childPrefix);
    }
    if (hidden) problems.error(where, `${hidden} more bad entries in this table (is it a table at all?)`);
  };
  const root = node(rootPa, 'preserved-memory-map');
  if (root) rec(root, rootPa, 5, 0);
  return finish(acc, 'radix', rootPa, seen.size, problems, `KHO radix tree @${hex(rootPa)}`);
}

/** kho-v1's chunk list starting at `firstPa`. */
export function walkChunks(view: PhysView, firstPa: bigint, problems: Problems): { info: TrackerInfo; set: PreservedSet } {
  const acc = newAcc();
  const seen = new Set<bigint>();
  let bitmaps = 0;
  const BITS = PAGE_SIZE * 8;
  for (let pa = firstPa, n = 0; pa !== 0n; n++) {
    const where = `KHO v1 chunk ${n} @${hex(pa)}`;
    if (pa % BigInt(PAGE_SIZE) !== 0n) { problems.error(where, 'chunk address is not page aligned'); break; }
    if (seen.has(pa)) { problems.error(where, 'visited twice: the chunk list loops'); break; }
    if (seen.size >= MAX_V1_CHUNKS) { problems.error(where, `more than ${MAX_V1_CHUNKS} chunks; walk stopped`); break; }
    seen.add(pa);
    let page: Uint8Array;
    try { page = view.read(pa, PAGE_SIZE); } catch (e) { problems.error(where, `chunk points outside memory: ${(e as Error).message}`); break; }
    const hdr = KhoMemChunkHdr.decode(page);
    let nElms = hdr.num_elms;
    if (nElms > KHO_MEM_CHUNK_CAPACITY) { problems.error(where, `num_elms ${nElms} exceeds ${KHO_MEM_CHUNK_CAPACITY}`); nElms = KHO_MEM_CHUNK_CAPACITY; }
    if (hdr.order > KHO_ORDER_0_LOG2) { problems.error(where, `impossible order ${hdr.order}`); pa = hdr.next; continue; }
    const order = hdr.order;
    const span = BigInt(BITS) << BigInt(order + 12);
    for (let i = 0; i < nElms; i++) {
      const e = KhoBitmapElm.decode(page, KhoMemChunkHdr.size + i * KhoBitmapElm.size);
      const ew = `${where} element ${i}`;
      if (e.phys_start % span !== 0n) { problems.error(ew, `phys_start ${hex(e.phys_start)} is not a multiple of the bitmap span ${hex(span)}`); continue; }
      if (e.phys_start > BigInt(Number.MAX_SAFE_INTEGER)) { problems.error(ew, `phys_start ${hex(e.phys_start)} is beyond 2^53`); continue; }
      if (e.bitmap % BigInt(PAGE_SIZE) !== 0n) { problems.error(ew, `bitmap ${hex(e.bitmap)} is not page aligned`); continue; }
      let bmp: Uint8Array;
      try { bmp = view.read(e.bitmap, PAGE_SIZE); } catch (err) { problems.error(ew, `bitmap points outside memory: ${(err as Error).message}`); continue; }
      bitmaps++;
      const base = Number(e.phys_start / BigInt(PAGE_SIZE));
      for (let byte = 0; byte < PAGE_SIZE; byte++) {
        let b = bmp[byte]!;
        for (let bit = 0; b !== 0; bit++, b >>>= 1) if (b & 1) record(acc, base + (byte * 8 + bit) * 2 ** order, order);
      }
    }
    pa = le64(page, 0);
  }
  return finish(acc, 'chunks', firstPa, seen.size + bitmaps, problems, `KHO v1 chunk list @${hex(firstPa)}`);
}
