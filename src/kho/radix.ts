/**
 * The kho-v2+ preserved-memory tracker: a 6-level radix tree whose nodes are ordinary pages of the
 * simulated RAM, handed to the next kernel as is (kernel/liveupdate/kexec_handover.c, radix tree
 * functions; layout in include/linux/kho/abi/kexec_handover.h, later abi/radix_tree.h "radix-v1").
 * Tables are 512 u64 physical addresses; leaves are 32768-bit bitmaps of (pa, order) keys.
 */
import { LuoError } from '../errno.ts';
import {
  KHO_BITMAP_SIZE_LOG2,
  KHO_ORDER_0_LOG2,
  KHO_TABLE_SIZE_LOG2,
  KHO_TREE_MAX_DEPTH,
  PAGE_SHIFT,
  PAGE_SIZE,
} from '../abi/kho.ts';
import type { KhoAllocator, KhoMemory } from './memory.ts';

const TABLE_ENTRIES = 1 << KHO_TABLE_SIZE_LOG2; // 512
const LEAF_BITS = 1 << KHO_BITMAP_SIZE_LOG2; // 32768
const TOP_LEVEL = KHO_TREE_MAX_DEPTH - 1; // 5

// Keys are below 2^53 (order bit at 52 - order), so plain numbers hold them exactly. Bit operations
// in JS are 32-bit, hence the arithmetic below.
const pow2 = (n: number): number => 2 ** n;

/** key = (1 << (52 - order)) | (pa >> (12 + order)). */
export function encodeKey(pfn: number, order: number): number {
  return pow2(KHO_ORDER_0_LOG2 - order) + Math.floor(pfn / pow2(order));
}

/** Inverse of encodeKey: the order is 52 - (index of the most significant set bit). */
export function decodeKey(key: number): { pfn: number; order: number } {
  const msb = Math.floor(Math.log2(key));
  // log2 can round at exact powers near 2^53; correct by one if needed.
  const top = pow2(msb) > key ? msb - 1 : pow2(msb + 1) <= key ? msb + 1 : msb;
  const order = KHO_ORDER_0_LOG2 - top;
  const low = key - pow2(top);
  return { pfn: low * pow2(order), order };
}

/** Table index at level 1..5: (key >> (15 + 9 (L - 1))) & 511. */
export function tableIndex(key: number, level: number): number {
  return Math.floor(key / pow2(KHO_BITMAP_SIZE_LOG2 + KHO_TABLE_SIZE_LOG2 * (level - 1))) % TABLE_ENTRIES;
}

/** Bit index inside the leaf: key & 0x7fff. */
export function leafIndex(key: number): number {
  return key % LEAF_BITS;
}

/** Whether the host stores a Uint32Array's words little-endian (then leaves can be read by word). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** A view of page `pfn` as 512 little-endian u64 words (tables) or 4096 bitmap bytes (leaves). */
function tableView(p: Uint8Array): DataView {
  return new DataView(p.buffer, p.byteOffset, PAGE_SIZE);
}

/**
 * The outgoing tracker of a running kernel. The root (level 5) page is allocated once at KHO init
 * and its physical address goes into the root FDT's `preserved-memory-map` property.
 */
export class RadixTracker {
  readonly rootPfn: number;
  /** Table and leaf pages allocated so far (the root included); never freed while running. */
  private readonly nodes: number[] = [];

  constructor(private readonly mem: KhoMemory, private readonly alloc: KhoAllocator) {
    this.rootPfn = this.newNode();
  }

  get rootPa(): bigint {
    return BigInt(this.rootPfn) << BigInt(PAGE_SHIFT);
  }

  /** Number of tree pages (tables and leaves), i.e. the tracker's own memory cost. */
  get nodeCount(): number {
    return this.nodes.length;
  }

  /** The tracker's own pages (tables and leaves), which the kexec must carry. */
  pages(): number[] {
    return [...this.nodes];
  }

  private newNode(): number {
    const pfn = this.alloc.allocFolio(0);
    this.mem.page(pfn).fill(0);
    this.nodes.push(pfn);
    return pfn;
  }

  /** Marks (pfn, order) preserved, allocating missing table/leaf pages on the way down. */
  add(pfn: number, order: number): void {
    const key = encodeKey(pfn, order);
    const created: Array<{ parent: DataView; idx: number; pfn: number }> = [];
    let node = this.rootPfn;
    try {
      for (let level = TOP_LEVEL; level > 0; level--) {
        const idx = tableIndex(key, level);
        const dv = tableView(this.mem.page(node));
        const next = dv.getBigUint64(idx * 8, true);
        if (next !== 0n) {
          node = Number(next >> BigInt(PAGE_SHIFT));
          continue;
        }
        const child = this.newNode();
        dv.setBigUint64(idx * 8, BigInt(child) << BigInt(PAGE_SHIFT), true);
        created.push({ parent: dv, idx, pfn: child });
        node = child;
      }
    } catch (e) {
      // Allocation failed part way: unlink and free what this call created, as the kernel does.
      for (const c of created.reverse()) {
        c.parent.setBigUint64(c.idx * 8, 0n, true);
        this.alloc.freeFolio(c.pfn, 0);
        this.nodes.splice(this.nodes.lastIndexOf(c.pfn), 1);
      }
      throw e instanceof LuoError ? e : new LuoError('ENOMEM', `radix tree node allocation failed: ${String(e)}`);
    }
    const bit = leafIndex(key);
    const leaf = this.mem.page(node);
    leaf[bit >>> 3]! |= 1 << (bit & 7);
  }

  /** Clears the bit for (pfn, order). Nodes are never freed. Returns false if it was not set. */
  del(pfn: number, order: number): boolean {
    const leaf = this.findLeaf(encodeKey(pfn, order));
    if (leaf === undefined) return false;
    const bit = leafIndex(encodeKey(pfn, order));
    const page = this.mem.page(leaf);
    const was = (page[bit >>> 3]! >> (bit & 7)) & 1;
    page[bit >>> 3]! &= ~(1 << (bit & 7));
    return was === 1;
  }

  /** True when (pfn, order) is currently marked. */
  has(pfn: number, order: number): boolean {
    const key = encodeKey(pfn, order);
    const leaf = this.findLeaf(key);
    if (leaf === undefined) return false;
    const bit = leafIndex(key);
    return ((this.mem.page(leaf)[bit >>> 3]! >> (bit & 7)) & 1) === 1;
  }

  private findLeaf(key: number): number | undefined {
    let node = this.rootPfn;
    for (let level = TOP_LEVEL; level > 0; level--) {
      const next = tableView(this.mem.page(node)).getBigUint64(tableIndex(key, level) * 8, true);
      if (next === 0n) return undefined;
      node = Number(next >> BigInt(PAGE_SHIFT));
    }
    return node;
  }

  /** Depth-first, ascending walk of every marked block (the order the next kernel sees them in). */
  walk(cb: (pfn: number, order: number) => void): void {
    walkTree(this.mem, this.rootPfn, cb);
  }
}

/** Unchecked walk over a tree we built ourselves. */
function walkTree(mem: KhoMemory, rootPfn: number, cb: (pfn: number, order: number) => void): void {
  const rec = (pfn: number, level: number, prefix: number): void => {
    const page = mem.page(pfn);
    if (level === 0) {
      walkLeaf(page, prefix, cb);
      return;
    }
    const dv = tableView(page);
    const shift = pow2(KHO_BITMAP_SIZE_LOG2 + KHO_TABLE_SIZE_LOG2 * (level - 1));
    for (let i = 0; i < TABLE_ENTRIES; i++) {
      const lo = dv.getUint32(i * 8, true);
      const hi = dv.getUint32(i * 8 + 4, true);
      if (lo === 0 && hi === 0) continue;
      rec((hi * 2 ** 32 + lo) / PAGE_SIZE, level - 1, prefix + i * shift);
    }
  };
  rec(rootPfn, TOP_LEVEL, 0);
}

function walkLeaf(page: Uint8Array, prefix: number, cb: (pfn: number, order: number) => void): void {
  for (let byte = 0; byte < PAGE_SIZE; byte++) {
    let b = page[byte]!;
    if (b === 0) continue;
    for (let bit = 0; b !== 0; bit++, b >>>= 1) {
      if (b & 1) {
        const { pfn, order } = decodeKey(prefix + byte * 8 + bit);
        cb(pfn, order);
      }
    }
  }
}

/** Limits the incoming walk checks every block against. */
export interface IncomingLimits {
  /** Pages of RAM: every node and every block must lie below this. */
  readonly ramPages: number;
  /** Ranges [startPfn, endPfn) no preserved block may overlap (the scratch areas). */
  readonly forbidden?: readonly { startPfn: number; endPfn: number; what: string }[];
}

/**
 * Walks an incoming tree that came from another kernel: untrusted. Every node pointer must be
 * page-aligned and inside RAM, no node may be reached twice (a loop or a shared subtree), every
 * decoded block must have a possible order and lie inside RAM and outside the forbidden ranges.
 * The first problem throws a LuoError naming the level, table index and address; the callback
 * then has seen only blocks before it, so the caller must discard what it did (boot without
 * hand-over). The kernel itself trusts this tree; we check what it would crash or corrupt on.
 */
export function walkIncomingTree(
  mem: KhoMemory,
  rootPa: bigint,
  limits: IncomingLimits,
  cb: (pfn: number, order: number) => void,
): { nodes: number; blocks: number } {
  const seen = new Set<number>();
  let blocks = 0;
  const ramPages = limits.ramPages;
  // The forbidden ranges as flat arrays: checked for every block.
  const forbidden = limits.forbidden ?? [];
  const fStart = forbidden.map((f) => f.startPfn);
  const fEnd = forbidden.map((f) => f.endPfn);
  const nForbidden = forbidden.length;
  const nodeAt = (pa: bigint, where: () => string): number => {
    if (pa % BigInt(PAGE_SIZE) !== 0n) throw new LuoError('EINVAL', `KHO radix tree: ${where()} points to unaligned address 0x${pa.toString(16)}`);
    const pfn = Number(pa >> BigInt(PAGE_SHIFT));
    if (pa >> BigInt(PAGE_SHIFT) >= BigInt(ramPages)) throw new LuoError('EINVAL', `KHO radix tree: ${where()} points outside RAM (0x${pa.toString(16)})`);
    if (seen.has(pfn)) throw new LuoError('EINVAL', `KHO radix tree: ${where()} reaches node 0x${pa.toString(16)} a second time (loop or shared node)`);
    seen.add(pfn);
    return pfn;
  };
  /** Checks one decoded block (messages built only on failure) and hands it to the callback. */
  const block = (pfn: number, order: number, key: number): void => {
    if (order < 0 || order > KHO_ORDER_0_LOG2) throw new LuoError('EINVAL', `KHO radix tree: leaf key 0x${key.toString(16)} decodes to impossible order ${order}`);
    const end = pfn + pow2(order);
    if (end > ramPages) {
      throw new LuoError('EINVAL', `KHO radix tree: leaf key 0x${key.toString(16)} (pa 0x${(BigInt(pfn) << 12n).toString(16)}, order ${order}) lies outside RAM`);
    }
    for (let f = 0; f < nForbidden; f++) {
      if (pfn < fEnd[f]! && end > fStart[f]!) {
        throw new LuoError('EINVAL', `KHO radix tree: block pa 0x${(BigInt(pfn) << 12n).toString(16)} order ${order} overlaps ${forbidden[f]!.what}`);
      }
    }
    blocks++;
    cb(pfn, order);
  };
  const leaf = (page: Uint8Array, prefix: number, path: string): void => {
    if (prefix === 0) {
      // Keys 1..32767 mix the orders 38..52: decode each one.
      for (let byte = 0; byte < PAGE_SIZE; byte++) {
        let b = page[byte]!;
        if (b === 0) continue;
        for (let bit = 0; b !== 0; bit++, b >>>= 1) {
          if ((b & 1) === 0) continue;
          const key = byte * 8 + bit;
          if (key === 0) throw new LuoError('EINVAL', `KHO radix tree: key 0 set in leaf ${path}`);
          const { pfn, order } = decodeKey(key);
          block(pfn, order, key);
        }
      }
      return;
    }
    // Every key of a leaf with a non-zero prefix has the order bit inside the prefix (bit 15 or
    // above), so one order for the whole leaf: key = 2^top + low, pfn = low << order.
    const { pfn: firstPfn, order } = decodeKey(prefix);
    const step = pow2(order);
    if (LITTLE_ENDIAN && (page.byteOffset & 3) === 0) {
      // Bit i of 32-bit word w is key bit 32 w + i on a little-endian host (bytes in order).
      const words = new Uint32Array(page.buffer, page.byteOffset, PAGE_SIZE >>> 2);
      for (let w = 0; w < words.length; w++) {
        let v = words[w]!;
        while (v !== 0) {
          const t = v & -v;
          const i = w * 32 + 31 - Math.clz32(t);
          v ^= t;
          block(firstPfn + i * step, order, prefix + i);
        }
      }
      return;
    }
    for (let byte = 0; byte < PAGE_SIZE; byte++) {
      let b = page[byte]!;
      if (b === 0) continue;
      for (let bit = 0; b !== 0; bit++, b >>>= 1) {
        if ((b & 1) === 0) continue;
        const i = byte * 8 + bit;
        block(firstPfn + i * step, order, prefix + i);
      }
    }
  };
  const rec = (pfn: number, level: number, prefix: number, path: string): void => {
    const page = mem.page(pfn);
    if (level === 0) {
      leaf(page, prefix, path);
      return;
    }
    const dv = tableView(page);
    const shift = pow2(KHO_BITMAP_SIZE_LOG2 + KHO_TABLE_SIZE_LOG2 * (level - 1));
    for (let i = 0; i < TABLE_ENTRIES; i++) {
      if (dv.getUint32(i * 8, true) === 0 && dv.getUint32(i * 8 + 4, true) === 0) continue;
      const child = dv.getBigUint64(i * 8, true);
      const childPrefix = prefix + i * shift;
      // Above 2^53 the key cannot come from any order >= 0 (its order bit would be above 52).
      if (childPrefix >= pow2(KHO_ORDER_0_LOG2 + 1)) {
        throw new LuoError('EINVAL', `KHO radix tree: L${level}[${i}] at ${path} covers keys of negative order`);
      }
      rec(nodeAt(child, () => `L${level}[${i}] of ${path}`), level - 1, childPrefix, `${path}/L${level}[${i}]`);
    }
  };
  rec(nodeAt(rootPa, () => 'preserved-memory-map'), TOP_LEVEL, 0, 'root');
  return { nodes: seen.size, blocks };
}
