/**
 * The kho-v1 preserved-memory tracker: per-order sparse bitmaps (one 4 KiB page covers 32768
 * blocks of that order) serialized at finalize into a linked list of chunk pages, each holding up
 * to 255 {phys_start, bitmap_pa} elements of one order (kernel/liveupdate/kexec_handover.c
 * @dd03dd6: kho_mem_serialize / kho_mem_deserialize). Bitmaps and chunks are ordinary pages.
 */
import { LuoError } from '../errno.ts';
import { KHO_MEM_CHUNK_CAPACITY, KhoBitmapElm, KhoMemChunkHdr, PAGE_SHIFT, PAGE_SIZE } from '../abi/kho.ts';
import type { KhoAllocator, KhoMemory } from './memory.ts';
import type { IncomingLimits } from './radix.ts';

const BITS = PAGE_SIZE * 8; // 32768 blocks per bitmap page

export class BitmapTracker {
  /** order -> (bitmap index -> pfn of the bitmap page). */
  private readonly orders = new Map<number, Map<number, number>>();
  private chunks: number[] = [];

  constructor(private readonly mem: KhoMemory, private readonly alloc: KhoAllocator) {}

  add(pfn: number, order: number): void {
    const high = Math.floor(pfn / 2 ** order);
    let bitmaps = this.orders.get(order);
    if (!bitmaps) {
      bitmaps = new Map();
      this.orders.set(order, bitmaps);
    }
    const idx = Math.floor(high / BITS);
    let page = bitmaps.get(idx);
    if (page === undefined) {
      page = this.alloc.allocFolio(0);
      this.mem.page(page).fill(0);
      bitmaps.set(idx, page);
    }
    const bit = high % BITS;
    this.mem.page(page)[bit >>> 3]! |= 1 << (bit & 7);
  }

  del(pfn: number, order: number): boolean {
    const high = Math.floor(pfn / 2 ** order);
    const page = this.orders.get(order)?.get(Math.floor(high / BITS));
    if (page === undefined) return false;
    const bit = high % BITS;
    const p = this.mem.page(page);
    const was = (p[bit >>> 3]! >> (bit & 7)) & 1;
    p[bit >>> 3]! &= ~(1 << (bit & 7));
    return was === 1;
  }

  /** The tracker's own pages (bitmaps and serialized chunks), which the kexec must carry. */
  pages(): number[] {
    const out = [...this.chunks];
    for (const m of this.orders.values()) out.push(...m.values());
    return out;
  }

  /** Pages the tracker itself uses: bitmaps plus the serialized chunks. */
  get nodeCount(): number {
    let n = this.chunks.length;
    for (const m of this.orders.values()) n += m.size;
    return n;
  }

  /**
   * Writes the chunk list (orders ascending, bitmaps by ascending index, a new chunk for every
   * order and whenever one is full) and returns the first chunk's address, 0 if nothing is
   * tracked. Any previously serialized list is freed first: finalize is re-entrant.
   */
  serialize(): bigint {
    this.discardSerialized();
    const entry = KhoBitmapElm.size;
    let cur: number | undefined;
    let n = 0;
    const newChunk = (order: number): number => {
      const pfn = this.alloc.allocFolio(0);
      const page = this.mem.page(pfn);
      page.fill(0);
      KhoMemChunkHdr.encode({ next: 0n, order, num_elms: 0 }, page);
      if (cur !== undefined) writeNext(this.mem.page(cur), BigInt(pfn) << BigInt(PAGE_SHIFT));
      this.chunks.push(pfn);
      cur = pfn;
      n = 0;
      return pfn;
    };
    try {
      for (const order of [...this.orders.keys()].sort((a, b) => a - b)) {
        newChunk(order);
        const bitmaps = this.orders.get(order)!;
        for (const idx of [...bitmaps.keys()].sort((a, b) => a - b)) {
          if (n === KHO_MEM_CHUNK_CAPACITY) newChunk(order);
          const page = this.mem.page(cur!);
          KhoBitmapElm.encode(
            { phys_start: (BigInt(idx) * BigInt(BITS)) << BigInt(order + PAGE_SHIFT), bitmap: BigInt(bitmaps.get(idx)!) << BigInt(PAGE_SHIFT) },
            page,
            KhoMemChunkHdr.size + n * entry,
          );
          n++;
          new DataView(page.buffer, page.byteOffset).setUint32(12, n, true);
        }
      }
    } catch (e) {
      this.discardSerialized();
      throw e;
    }
    return this.chunks.length ? BigInt(this.chunks[0]!) << BigInt(PAGE_SHIFT) : 0n;
  }

  discardSerialized(): void {
    for (const pfn of this.chunks) this.alloc.freeFolio(pfn, 0);
    this.chunks = [];
  }

  /** Every tracked block, orders ascending then addresses ascending (what the next kernel sees). */
  walk(cb: (pfn: number, order: number) => void): void {
    for (const order of [...this.orders.keys()].sort((a, b) => a - b)) {
      const bitmaps = this.orders.get(order)!;
      for (const idx of [...bitmaps.keys()].sort((a, b) => a - b)) {
        forEachBit(this.mem.page(bitmaps.get(idx)!), (bit) => cb((idx * BITS + bit) * 2 ** order, order));
      }
    }
  }
}

function writeNext(page: Uint8Array, pa: bigint): void {
  new DataView(page.buffer, page.byteOffset, PAGE_SIZE).setBigUint64(0, pa, true);
}

function forEachBit(page: Uint8Array, cb: (bit: number) => void): void {
  for (let byte = 0; byte < PAGE_SIZE; byte++) {
    let b = page[byte]!;
    for (let bit = 0; b !== 0; bit++, b >>>= 1) if (b & 1) cb(byte * 8 + bit);
  }
}

/**
 * Walks an incoming kho-v1 chunk list from another kernel (untrusted): chunk and bitmap pointers
 * page-aligned and inside RAM, no chunk visited twice (a cycle), num_elms within 255, orders
 * possible, phys_start aligned to a whole bitmap, every block inside RAM and outside forbidden
 * ranges. Throws a LuoError naming the chunk and element on the first problem.
 */
export function walkIncomingChunks(
  mem: KhoMemory,
  firstPa: bigint,
  limits: IncomingLimits,
  cb: (pfn: number, order: number) => void,
): { chunks: number; blocks: number } {
  const seen = new Set<number>();
  let pa = firstPa;
  let blocks = 0;
  const toPfn = (addr: bigint, what: string): number => {
    if (addr % BigInt(PAGE_SIZE) !== 0n) throw new LuoError('EINVAL', `KHO v1 chunks: ${what} at unaligned address 0x${addr.toString(16)}`);
    if (addr >> BigInt(PAGE_SHIFT) >= BigInt(limits.ramPages)) throw new LuoError('EINVAL', `KHO v1 chunks: ${what} at 0x${addr.toString(16)} lies outside RAM`);
    return Number(addr >> BigInt(PAGE_SHIFT));
  };
  while (pa !== 0n) {
    const where = `chunk ${seen.size} at 0x${pa.toString(16)}`;
    const pfn = toPfn(pa, `chunk ${seen.size}`);
    if (seen.has(pfn)) throw new LuoError('EINVAL', `KHO v1 chunks: ${where} was already visited (cycle in the chunk list)`);
    seen.add(pfn);
    const page = mem.page(pfn);
    const hdr = KhoMemChunkHdr.decode(page);
    if (hdr.num_elms > KHO_MEM_CHUNK_CAPACITY) throw new LuoError('EINVAL', `KHO v1 chunks: ${where} claims ${hdr.num_elms} elements (at most ${KHO_MEM_CHUNK_CAPACITY})`);
    if (hdr.order > 52) throw new LuoError('EINVAL', `KHO v1 chunks: ${where} has impossible order ${hdr.order}`);
    const order = hdr.order;
    for (let i = 0; i < hdr.num_elms; i++) {
      const elm = KhoBitmapElm.decode(page, KhoMemChunkHdr.size + i * KhoBitmapElm.size);
      const span = BigInt(BITS) << BigInt(order + PAGE_SHIFT);
      if (elm.phys_start % span !== 0n) throw new LuoError('EINVAL', `KHO v1 chunks: ${where} element ${i} phys_start 0x${elm.phys_start.toString(16)} is not a multiple of its bitmap span`);
      const bmp = mem.page(toPfn(elm.bitmap, `${where} element ${i} bitmap`));
      const base = Number(elm.phys_start >> BigInt(PAGE_SHIFT));
      forEachBit(bmp, (bit) => {
        const bpfn = base + bit * 2 ** order;
        const n = 2 ** order;
        if (bpfn + n > limits.ramPages) throw new LuoError('EINVAL', `KHO v1 chunks: ${where} element ${i} bit ${bit}: block 0x${(BigInt(bpfn) << 12n).toString(16)} order ${order} lies outside RAM`);
        for (const f of limits.forbidden ?? []) {
          if (bpfn < f.endPfn && bpfn + n > f.startPfn) throw new LuoError('EINVAL', `KHO v1 chunks: block 0x${(BigInt(bpfn) << 12n).toString(16)} order ${order} overlaps ${f.what}`);
        }
        blocks++;
        cb(bpfn, order);
      });
    }
    pa = hdr.next;
  }
  return { chunks: seen.size, blocks };
}
