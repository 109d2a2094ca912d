/**
 * The FDT era's fixed serialization arrays (luo_session.c @7f790dd, luo_file.c of the same era):
 * sessions in one 16-page preserved area, `{u64 count}` then 80-byte entries (at most 819, ENOMEM
 * beyond); each session's files in a 2-page area allocated at its first preserve, 64-byte entries
 * (at most 128, ENOSPC beyond), freed when its last file goes. Entries straddle page boundaries, so
 * they are written to a contiguous shadow and copied out when final (sync), which is what the
 * next kernel sees either way. An incoming array's count is bounded by its capacity (EINVAL): the
 * kernel of that era did not check and would read past the array.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { type KhoMemory, readPhysBytes } from '../kho/memory.ts';
import type { BlockKho, EntrySlot } from './blocks.ts';
import type { EntryCursor, EntryStore } from './entry-store.ts';

export interface ArrayShape {
  readonly pages: number;
  /** Bytes before the entries: 8 for the session array's count, 0 for file arrays. */
  readonly header: number;
  readonly entrySize: number;
  /** Allocated at the first grow (file arrays) rather than by `allocate` at boot (the session array). */
  readonly lazy: boolean;
  /** Freed once nothing is in it (luo_free_files_mem); luo-v3's deferred session array is kept. */
  readonly freeWhenEmpty: boolean;
  /** What a full array answers. */
  readonly fullErrno: 'ENOMEM' | 'ENOSPC';
  readonly what: string;
}

export const SESSION_ARRAY: ArrayShape = { pages: 16, header: 8, entrySize: 80, lazy: false, freeWhenEmpty: false, fullErrno: 'ENOMEM', what: 'session array' };
export const FILE_ARRAY: ArrayShape = { pages: 2, header: 0, entrySize: 64, lazy: true, freeWhenEmpty: true, fullErrno: 'ENOSPC', what: 'file array' };

export const arrayCapacity = (s: ArrayShape): number => Math.floor((s.pages * PAGE_SIZE - s.header) / s.entrySize);

export class EntryArray implements EntryStore {
  readonly max: number;
  private pa = 0n;
  private incoming = false;
  /** The entries as they will be written (outgoing) or as read (incoming), header included. */
  private shadow: Uint8Array | undefined;
  private incomingCount = 0;

  constructor(private readonly kho: BlockKho, private readonly mem: KhoMemory, readonly shape: ArrayShape) {
    this.max = arrayCapacity(shape);
  }

  get headPa(): bigint {
    return this.pa;
  }
  get nblocks(): number {
    return this.pa === 0n ? 0 : 1;
  }

  /** kho_alloc_preserve of the whole area (zeroed). */
  allocate(): void {
    if (this.pa !== 0n) return;
    this.pa = this.kho.allocPreserve(this.shape.pages * PAGE_SIZE);
    this.shadow = new Uint8Array(this.shape.pages * PAGE_SIZE);
  }

  /** Refuses a count past the capacity (the array's full errno), without allocating. */
  checkRoom(count: number): void {
    if (count > this.max) throw new LuoError(this.shape.fullErrno, `the ${this.shape.what} is full (${this.max} entries)`);
  }

  grow(count: number): void {
    if (this.incoming) throw new LuoError('EINVAL', `cannot grow an incoming ${this.shape.what}`);
    this.checkRoom(count);
    if (this.shape.lazy) this.allocate();
  }

  /** A file array is freed once nothing is in it (luo_free_files_mem). */
  shrink(count: number): void {
    if (!this.shape.freeWhenEmpty || count > 0 || this.pa === 0n || this.incoming) return;
    this.kho.unpreserveFree(this.pa);
    this.pa = 0n;
    this.shadow = undefined;
  }

  /** The rolled-back freeze zeroes the area (memset of the whole array, as __luo_file_unfreeze does). */
  clear(): void {
    if (!this.shadow) return;
    this.shadow.fill(0);
    for (let off = 0; off < this.shadow.length; off += PAGE_SIZE) this.mem.page(Number((this.pa + BigInt(off)) >> 12n)).fill(0);
  }

  destroy(): void {
    if (this.pa === 0n) return;
    try {
      if (this.incoming) this.kho.restoreFree(this.pa);
      else this.kho.unpreserveFree(this.pa);
    } catch {
      // not a preserved area (a corrupt hand-over): nothing to give back
    }
    this.pa = 0n;
    this.shadow = undefined;
  }

  restore(headPa: bigint, ramPages: number, what: string, count?: bigint): void {
    this.incoming = true;
    if (headPa === 0n) return;
    const size = this.shape.pages * PAGE_SIZE;
    if (headPa % BigInt(PAGE_SIZE) !== 0n || (headPa + BigInt(size)) >> 12n > BigInt(ramPages)) {
      throw new LuoError('EINVAL', `${what}: 0x${headPa.toString(16)} is not a ${this.shape.pages}-page area inside RAM`);
    }
    this.pa = headPa;
    this.shadow = readPhysBytes(this.mem, headPa, size);
    const n = count ?? new DataView(this.shadow.buffer, 0, 8).getBigUint64(0, true);
    if (n > BigInt(this.max)) throw new LuoError('EINVAL', `${what}: count ${n} is more than the ${this.max} entries the ${this.shape.what} holds`);
    this.incomingCount = Number(n);
  }

  iterator(): EntryCursor {
    let i = 0;
    const slot = (k: number): EntrySlot => {
      const offset = this.shape.header + k * this.shape.entrySize;
      return { page: this.shadow!, offset, pa: this.pa + BigInt(offset) };
    };
    return {
      reserveEntry: () => (this.shadow && i < this.max ? slot(i++) : undefined),
      readEntry: () => (this.shadow && i < this.incomingCount ? slot(i++) : undefined),
      prev: () => (i > 0 ? slot(--i) : undefined),
    };
  }

  /** Copies the written entries (and, for the session array, the count) out to memory. */
  sync(count: number): void {
    if (!this.shadow || this.pa === 0n) return;
    if (this.shape.header) new DataView(this.shadow.buffer, 0, 8).setBigUint64(0, BigInt(count), true);
    const end = this.shape.header + count * this.shape.entrySize;
    for (let off = 0; off < end; off += PAGE_SIZE) {
      const n = Math.min(PAGE_SIZE, end - off);
      this.mem.page(Number((this.pa + BigInt(off)) >> 12n)).set(this.shadow.subarray(off, off + n));
    }
  }
}
