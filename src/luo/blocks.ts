/**
 * Linked serialization blocks (kernel/liveupdate/kho_block.c, include/linux/kho/abi/block.h):
 * one preserved page each (KHO_BLOCK_SIZE; the seeds' linked-block patch used LUO_BLOCK_PGCNT 2),
 * a {next, count} header then packed entries. Sets grow ahead of need and shrink from the end; an
 * incoming chain is checked (cycle, length cap, pointers, per-block counts) before anything trusts
 * it. Iterators write, read and step back over entry slots. Blocks of several pages are worked on
 * in a contiguous copy (entries straddle page boundaries) that `sync` writes out; their headers
 * are written through at once.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { blockCapacity, KHO_MAX_BLOCKS, KhoBlockHeader } from '../abi/luo.ts';
import { type KhoMemory, readPhysBytes } from '../kho/memory.ts';
import type { EntryStore } from './entry-store.ts';

/** The KHO services a block set needs (a subset of Kho). */
export interface BlockKho {
  allocPreserve(size: number): bigint;
  unpreserveFree(pa: bigint): void;
  restoreFree(pa: bigint): void;
}

const HDR = KhoBlockHeader.size;

/** A slot: the page holding it and the byte offset of the entry in that page. */
export interface EntrySlot {
  readonly page: Uint8Array;
  readonly offset: number;
  readonly pa: bigint;
}

function pageOf(mem: KhoMemory, pa: bigint): Uint8Array {
  return mem.page(Number(pa >> 12n));
}

function readNext(page: Uint8Array): bigint {
  return new DataView(page.buffer, page.byteOffset, HDR).getBigUint64(0, true);
}
function writeNext(page: Uint8Array, v: bigint): void {
  new DataView(page.buffer, page.byteOffset, HDR).setBigUint64(0, v, true);
}
function readCount(page: Uint8Array): bigint {
  return new DataView(page.buffer, page.byteOffset, HDR).getBigUint64(8, true);
}
/** The count as a number, read byte-wise on the per-entry paths (Number(readCount(page)) exactly). */
function readCountNum(page: Uint8Array): number {
  const lo = (page[8]! | (page[9]! << 8) | (page[10]! << 16) | (page[11]! << 24)) >>> 0;
  const hi = (page[12]! | (page[13]! << 8) | (page[14]! << 16) | (page[15]! << 24)) >>> 0;
  return hi * 2 ** 32 + lo;
}
/** Writes a count (0..countPerBlock) as the u64 it is, byte-wise: no allocation per entry. */
function writeCount(page: Uint8Array, v: number): void {
  page[8] = v & 0xff;
  page[9] = (v >>> 8) & 0xff;
  page[10] = (v >>> 16) & 0xff;
  page[11] = (v >>> 24) & 0xff;
  page[12] = page[13] = page[14] = page[15] = 0;
}

/** An entry slot; its physical address is computed only when asked for. */
class Slot implements EntrySlot {
  constructor(public page: Uint8Array, public offset: number, public blockPa: bigint) {}
  get pa(): bigint {
    return this.blockPa + BigInt(this.offset);
  }
}

export class BlockSet implements EntryStore {
  readonly countPerBlock: number;
  /** Physical addresses of the blocks, in chain order. */
  private blocks: bigint[] = [];
  private incomingSet = false;

  /** Multi-page blocks: their contiguous copies, by address. */
  private readonly shadows: Map<bigint, Uint8Array> | undefined;

  constructor(private readonly kho: BlockKho, private readonly mem: KhoMemory, readonly entrySize: number, readonly pages = 1) {
    this.countPerBlock = blockCapacity(entrySize, pages);
    if (this.countPerBlock < 1) throw new LuoError('EINVAL', `entry size ${entrySize} does not fit a block`);
    if (pages > 1) this.shadows = new Map();
  }

  /** The bytes of the block at `pa`: its page, or the copy of a multi-page block. */
  view(pa: bigint): Uint8Array {
    return this.shadows?.get(pa) ?? pageOf(this.mem, pa);
  }

  private setNext(pa: bigint, next: bigint): void {
    writeNext(this.view(pa), next);
    if (this.shadows) writeNext(pageOf(this.mem, pa), next);
  }

  get nblocks(): number {
    return this.blocks.length;
  }
  get headPa(): bigint {
    return this.blocks[0] ?? 0n;
  }
  get incoming(): boolean {
    return this.incomingSet;
  }
  get capacity(): number {
    return this.blocks.length * this.countPerBlock;
  }
  /** Block addresses in order (for inspection and accounting). */
  blockAddresses(): readonly bigint[] {
    return this.blocks;
  }

  private freeBlock(pa: bigint): void {
    if (!this.incomingSet) return this.kho.unpreserveFree(pa);
    try {
      this.kho.restoreFree(pa);
    } catch {
      // not a preserved block (corrupt chain): nothing to give back (the kernel WARNs)
    }
  }

  private growOne(): void {
    if (this.blocks.length >= KHO_MAX_BLOCKS) throw new LuoError('ENOSPC', `block set is at its cap of ${KHO_MAX_BLOCKS} blocks`);
    const pa = this.kho.allocPreserve(this.pages * PAGE_SIZE);
    this.shadows?.set(pa, new Uint8Array(this.pages * PAGE_SIZE));
    const last = this.blocks[this.blocks.length - 1];
    if (last !== undefined) this.setNext(last, pa);
    this.blocks.push(pa);
  }

  private shrinkOne(): void {
    const last = this.blocks.pop();
    if (last === undefined) return;
    this.freeBlock(last);
    this.shadows?.delete(last);
    const newLast = this.blocks[this.blocks.length - 1];
    if (newLast !== undefined) this.setNext(newLast, 0n);
  }

  /** kho_block_set_grow: room for `count` entries, or nothing changes (ENOMEM/ENOSPC). */
  grow(count: number): void {
    if (this.incomingSet) throw new LuoError('EINVAL', 'cannot grow an incoming block set');
    const orig = this.blocks.length;
    try {
      while (count > this.capacity) this.growOne();
    } catch (e) {
      while (this.blocks.length > orig) this.shrinkOne();
      throw e;
    }
  }

  /** kho_block_set_shrink: drop trailing blocks not needed for `count` entries. */
  shrink(count: number): void {
    while (this.blocks.length > 0 && count <= (this.blocks.length - 1) * this.countPerBlock) this.shrinkOne();
  }

  /** kho_block_set_destroy: free every block (restore-free when incoming). */
  destroy(): void {
    for (const pa of this.blocks) this.freeBlock(pa);
    this.blocks = [];
    this.shadows?.clear();
  }

  /** kho_block_set_clear: zero every count and entry, keeping the blocks. */
  clear(): void {
    for (const pa of this.blocks) {
      const p = this.view(pa);
      writeCount(p, 0);
      p.fill(0, HDR);
      if (this.shadows) for (let i = 0; i < this.pages; i++) pageOf(this.mem, pa + BigInt(i * PAGE_SIZE)).fill(0, i === 0 ? 8 : 0);
    }
  }

  /**
   * kho_block_set_restore from an untrusted chain: Floyd's cycle check bounded by the block cap
   * (EINVAL), every pointer page-aligned inside RAM (EINVAL, our addition: the kernel would fault),
   * every count 1..countPerBlock (EINVAL), more than KHO_MAX_BLOCKS blocks (ENOSPC, as the
   * kernel's add step returns). On failure every block of the chain is restore-freed, like the
   * kernel's error path, and nothing is kept.
   */
  restore(headPa: bigint, ramPages: number, what = 'block set'): void {
    this.incomingSet = true;
    if (headPa === 0n) return;
    const span = BigInt(this.pages * PAGE_SIZE);
    const check = (pa: bigint, where: string): void => {
      if (pa % BigInt(PAGE_SIZE) !== 0n || (pa + span) >> 12n > BigInt(ramPages)) {
        throw new LuoError('EINVAL', `${what}: ${where} points to 0x${pa.toString(16)}, not a ${this.pages === 1 ? 'page' : `${this.pages}-page block`} inside RAM`);
      }
    };
    check(headPa, 'head');
    // Cycle check (fast/slow), bounded like the kernel's.
    let fast = headPa;
    let slow = headPa;
    let n = 0;
    for (;;) {
      if (n++ >= KHO_MAX_BLOCKS) throw new LuoError('EINVAL', `${what} is corrupted: chain longer than the cycle check allows`);
      const f1 = readNext(pageOf(this.mem, fast));
      if (f1 === 0n) break;
      check(f1, `block after 0x${fast.toString(16)}`);
      const f2 = readNext(pageOf(this.mem, f1));
      if (f2 === 0n) break;
      check(f2, `block after 0x${f1.toString(16)}`);
      fast = f2;
      slow = readNext(pageOf(this.mem, slow));
      if (slow === fast) throw new LuoError('EINVAL', `${what} is corrupted: the chain loops back to block 0x${slow.toString(16)}`);
    }
    let pa = headPa;
    let err: LuoError | undefined;
    while (pa !== 0n) {
      const page = pageOf(this.mem, pa);
      const count = readCount(page);
      if (count === 0n || count > BigInt(this.countPerBlock)) {
        err = new LuoError('EINVAL', `${what}: block ${this.blocks.length} at 0x${pa.toString(16)} contains invalid entry count: ${count}${count === 0n ? ' (an empty block: see the 7.3.4 duplicate-create defect)' : ''}`);
        break;
      }
      if (this.blocks.length >= KHO_MAX_BLOCKS) {
        err = new LuoError('ENOSPC', `${what}: more than ${KHO_MAX_BLOCKS} blocks`);
        break;
      }
      this.blocks.push(pa);
      if (this.shadows) {
        // only what the entries cover is read, as the kernel touches nothing past its count
        const copy = new Uint8Array(this.pages * PAGE_SIZE);
        copy.set(readPhysBytes(this.mem, pa, HDR + Number(count) * this.entrySize));
        this.shadows.set(pa, copy);
      }
      pa = readNext(page);
    }
    if (err) {
      this.destroy();
      while (pa !== 0n) {
        const next = readNext(pageOf(this.mem, pa));
        try {
          this.kho.restoreFree(pa);
        } catch {
          // a block that was never preserved: nothing to give back (the kernel WARNs)
        }
        pa = next;
      }
      throw err;
    }
  }

  /** One-page blocks are written in place; multi-page ones are copied out whole. */
  sync(_count: number): void {
    if (!this.shadows) return;
    for (const [pa, bytes] of this.shadows) {
      for (let i = 0; i < this.pages; i++) pageOf(this.mem, pa + BigInt(i * PAGE_SIZE)).set(bytes.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    }
  }

  /** Number of entries the chain holds (sum of counts). */
  entryCount(): number {
    let n = 0;
    for (const pa of this.blocks) n += readCountNum(this.view(pa));
    return n;
  }

  iterator(): BlockIterator {
    return new BlockIterator(this);
  }
}

/** kho_block_set_it: a cursor over entry slots. */
export class BlockIterator {
  private block = 0;
  private i = 0;
  /** The one slot readEntry hands out, moved along (reads are consumed at once). */
  private readonly readSlot = new Slot(new Uint8Array(0), 0, 0n);
  constructor(private readonly bs: BlockSet) {}

  private slot(): EntrySlot {
    const pa = this.bs.blockAddresses()[this.block]!;
    return new Slot(this.bs.view(pa), HDR + this.i * this.bs.entrySize, pa);
  }

  /** Next free slot for writing (the block's count follows), or undefined when the set is full. */
  reserveEntry(): EntrySlot | undefined {
    const blocks = this.bs.blockAddresses();
    if (blocks.length === 0) return undefined;
    if (this.i === this.bs.countPerBlock) {
      if (this.block === blocks.length - 1) return undefined;
      this.block++;
      this.i = 0;
    }
    const s = this.slot();
    this.i++;
    writeCount(s.page, this.i);
    return s;
  }

  /** Next written entry, respecting each block's count, or undefined at the end. */
  readEntry(): EntrySlot | undefined {
    const blocks = this.bs.blockAddresses();
    if (blocks.length === 0) return undefined;
    const count = readCountNum(this.bs.view(blocks[this.block]!));
    if (this.i >= count) {
      if (this.block === blocks.length - 1) return undefined;
      this.block++;
      this.i = 0;
      // Restored chains never hold an empty block; stop rather than read slots nobody wrote.
      if (readCountNum(this.bs.view(blocks[this.block]!)) === 0) return undefined;
    }
    const pa = blocks[this.block]!;
    const s = this.readSlot;
    s.page = this.bs.view(pa);
    s.offset = HDR + this.i * this.bs.entrySize;
    s.blockPa = pa;
    this.i++;
    return s;
  }

  /** The previous slot, moving back into the previous block when needed. */
  prev(): EntrySlot | undefined {
    if (this.bs.blockAddresses().length === 0) return undefined;
    if (this.i === 0) {
      if (this.block === 0) return undefined;
      this.block--;
      this.i = this.bs.countPerBlock;
    }
    this.i--;
    return this.slot();
  }
}
