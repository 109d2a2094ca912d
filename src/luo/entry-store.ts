/**
 * Where LUO keeps the serialized entries of sessions and of each session's files: linked blocks
 * (luo-v4/luo-v5, blocks.ts) or the FDT era's fixed arrays (luo-v1, entry-array.ts). Both grow ahead
 * of need, hand out entry slots to write at reboot, and give an incoming set back to the allocator.
 */
import type { EntrySlot } from './blocks.ts';

export interface EntryCursor {
  /** The next free slot to write, or undefined when the store is full. */
  reserveEntry(): EntrySlot | undefined;
  /** The next written entry, or undefined at the end; the slot is valid until the next readEntry. */
  readEntry(): EntrySlot | undefined;
  /** Steps back one slot (a write that failed). */
  prev(): EntrySlot | undefined;
}

export interface EntryStore {
  /** Room for `count` entries, or nothing changes (ENOMEM/ENOSPC). */
  grow(count: number): void;
  /** Gives back what `count` entries do not need. */
  shrink(count: number): void;
  /** Zeroes what was written (a rolled-back freeze), keeping the memory. */
  clear(): void;
  /** Frees everything (restore-free when incoming). */
  destroy(): void;
  /** Takes an incoming set at `headPa` (its `count` when the format keeps it outside, as luo-v1's file arrays). */
  restore(headPa: bigint, ramPages: number, what: string, count?: bigint): void;
  iterator(): EntryCursor;
  /** After writing through an iterator: `count` entries are final (fixed arrays write them out here). */
  sync(count: number): void;
  /** The address the format hands over (first block, or the array). */
  readonly headPa: bigint;
  readonly nblocks: number;
}
