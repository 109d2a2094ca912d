/**
 * A checked walk of a linked serialization block chain (kho_block.c, abi/block.h): every block a
 * readable, preserved page with 1 <= count <= capacity, no loop, at most KHO_MAX_BLOCKS blocks.
 * Returns the blocks and their entries; a trailing empty session block names the 7.3.4 defect.
 */
import { PAGE_SIZE } from '../abi/kho.ts';
import { KHO_MAX_BLOCKS, KhoBlockHeader, blockCapacity } from '../abi/luo.ts';
import type { Ctx } from './context.ts';
import { le64 } from './phys.ts';
import { type BlockInfo, hex } from './report.ts';

export interface ChainEntry {
  pa: bigint;
  bytes: Uint8Array;
}

export interface Chain {
  blocks: BlockInfo[];
  entries: ChainEntry[];
}

/** The 7.3.4 defect, named when an empty block ends a session chain. */
export const DEFECT_7_3_4 =
  'an empty trailing session block is what Linux 7.3.4 leaves when a duplicate CREATE_SESSION fails (EEXIST) at exactly 51 sessions: ' +
  'it grows the block set before the name check and never shrinks it; the next kernel panics on it (kernel-abi.md §8 item 9)';

/**
 * Walks the chain at `headPa` of `entrySize`-byte entries. `label` names a block in messages
 * ("session block", "file block of session \"a\""); `sessions` enables the defect diagnosis.
 */
export function walkChain(ctx: Ctx, headPa: bigint, entrySize: number, label: string, sessions: boolean): Chain {
  const capacity = blockCapacity(entrySize);
  const blocks: BlockInfo[] = [];
  const entries: ChainEntry[] = [];
  const seen = new Map<bigint, number>();
  let pa = headPa;
  let from = 'head';
  for (let i = 0; pa !== 0n; i++) {
    const where = `${label} ${i} @${hex(pa)}`;
    if (pa % BigInt(PAGE_SIZE) !== 0n) { ctx.problems.error(where, `${from} points to ${hex(pa)}, which is not page aligned`); break; }
    const prev = seen.get(pa);
    if (prev !== undefined) { ctx.problems.error(where, `${from} points back to block ${prev} @${hex(pa)}: the chain loops (the kernel's cycle check rejects it: EINVAL)`); break; }
    if (i >= KHO_MAX_BLOCKS) { ctx.problems.error(where, `chain longer than ${KHO_MAX_BLOCKS} blocks (KHO_MAX_BLOCKS): corrupted`); break; }
    if (!ctx.spend(where)) break;
    const page = ctx.read(pa, PAGE_SIZE, where, `${from} pointer`);
    if (!page) break;
    seen.set(pa, i);
    if (!ctx.claim(pa, `${label} ${i}`, where)) break;
    ctx.checkPreserved(pa, PAGE_SIZE, where, 'block');
    const hdr = KhoBlockHeader.decode(page);
    blocks.push({ index: i, pa, next: hdr.next, count: hdr.count, capacity });
    let n = Number(hdr.count > BigInt(capacity) ? BigInt(capacity) : hdr.count);
    if (hdr.count === 0n) {
      const trailing = hdr.next === 0n && i > 0;
      const defect = sessions && trailing ? `; ${DEFECT_7_3_4}${blocks[i - 1]!.count === BigInt(capacity) ? ` (block ${i - 1} is full: ${capacity} sessions)` : ''}` : '';
      ctx.problems.error(where, `block contains invalid entry count: 0 (the kernel rejects the chain: EINVAL, a panic at boot)${defect}`);
      n = 0;
    } else if (hdr.count > BigInt(capacity)) {
      ctx.problems.error(where, `block contains invalid entry count: ${hdr.count} (capacity ${capacity}); decoding the first ${capacity}`);
    }
    for (let s = 0; s < n; s++) {
      const off = KhoBlockHeader.size + s * entrySize;
      entries.push({ pa: pa + BigInt(off), bytes: page.subarray(off, off + entrySize) });
    }
    from = `next of block ${i}`;
    pa = le64(page, 0);
  }
  return { blocks, entries };
}
