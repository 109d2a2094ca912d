/**
 * The LUO file handler for memfds, compatible "memfd-v2": preserve pins and hands over every folio
 * of a shmem memfd with its size, position and seals; the next kernel rebuilds the memfd from
 * struct memfd_luo_ser and its folio array. Mirrors mm/memfd_luo.c (include/linux/kho/abi/memfd.h).
 */
import { LuoError } from '../errno.ts';
import { PAGE_SHIFT, PAGE_SIZE } from '../abi/kho.ts';
import {
  MEMFD_FOLIO_PFN_BITS,
  MEMFD_LUO_COMPATIBLE,
  MEMFD_LUO_COMPATIBLE_V1,
  MEMFD_LUO_FOLIO_DIRTY,
  MEMFD_LUO_FOLIO_UPTODATE,
  MemfdLuoFolioSer,
  MemfdLuoSer,
  MemfdLuoSerV1,
} from '../abi/luo.ts';
import type { FileHandler, FileOpArgs, KernelFile } from '../luo/file-handler.ts';
import type { Kho } from '../kho/kho.ts';
import type { KhoAllocator, KhoMemory } from '../kho/memory.ts';
import { type VmArea, readVmallocChunk, vfree, vmalloc, vmRead, vmWrite } from '../kho/vmalloc.ts';
import {
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MEMFD_MAX_BYTES,
  MFD_ALLOW_SEALING,
  type MemfdContext,
  MemfdFile,
  type MemfdMemory,
  type ShmemFolio,
  memfdAllocFile,
} from './memfd-file.ts';

/** MEMFD_LUO_ALL_SEALS: the seals memfd-v2 can carry; anything else is EOPNOTSUPP. */
export const MEMFD_LUO_ALL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;
const UINT_MAX = 0xffffffff;
const FOLIO_SER = MemfdLuoFolioSer.size;

// ---------------------------------------------------------------- the ABI, decoded

/** struct memfd_luo_ser (memfd-v2) with its embedded struct kho_vmalloc. */
export interface MemfdSer {
  pos: bigint;
  size: bigint;
  seals: number;
  flags: number;
  nr_folios: bigint;
  folios: { first: bigint; total_pages: number; flags: number; order: number };
}

/** One struct memfd_luo_folio_ser: pfn (52 bits), flags (12 bits), page index. */
export interface MemfdFolioSer {
  pfn: number;
  flags: number;
  index: bigint;
}

export function decodeMemfdSer(bytes: Uint8Array, off = 0): MemfdSer {
  const s = MemfdLuoSer.decode(bytes, off);
  return {
    pos: s.pos, size: s.size, seals: s.seals, flags: s.flags, nr_folios: s.nr_folios,
    folios: { first: s.folios_first, total_pages: s.folios_total_pages, flags: s.folios_flags, order: s.folios_order },
  };
}

/** memfd-v1's 40-byte struct (no seals, no flags: sjp38/linux @ec4967c2). */
export function decodeMemfdSerV1(bytes: Uint8Array, off = 0): MemfdSer {
  const s = MemfdLuoSerV1.decode(bytes, off);
  return {
    pos: s.pos, size: s.size, seals: 0, flags: 0, nr_folios: s.nr_folios,
    folios: { first: s.folios_first, total_pages: s.folios_total_pages, flags: s.folios_flags, order: s.folios_order },
  };
}

export function encodeMemfdSerV1(s: MemfdSer): Uint8Array {
  return MemfdLuoSerV1.encode({
    pos: s.pos, size: s.size, nr_folios: s.nr_folios,
    folios_first: s.folios.first, folios_total_pages: s.folios.total_pages, folios_flags: s.folios.flags, folios_order: s.folios.order,
  });
}

export function encodeMemfdSer(s: MemfdSer, buf?: Uint8Array, off = 0): Uint8Array {
  return MemfdLuoSer.encode({
    pos: s.pos, size: s.size, seals: s.seals, flags: s.flags, nr_folios: s.nr_folios,
    folios_first: s.folios.first, folios_total_pages: s.folios.total_pages, folios_flags: s.folios.flags, folios_order: s.folios.order,
  }, buf, off);
}

/**
 * The entries of `nr` memfd_luo_folio_ser at `off` (the vmalloc'd array), as objects with the page
 * index exact (a u64): pfn and flags as decodeMemfdFolioColumns reads them.
 */
export function decodeMemfdFolios(bytes: Uint8Array, nr: number, off = 0): MemfdFolioSer[] {
  const view = bytes.subarray(off, off + nr * FOLIO_SER);
  const cols = decodeMemfdFolioColumns(view, nr);
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  const ix = MemfdLuoFolioSer.offsets.index;
  return Array.from({ length: nr }, (_, i) => ({ pfn: cols.pfn[i]!, flags: cols.flags[i]!, index: dv.getBigUint64(i * FOLIO_SER + ix, true) }));
}

/**
 * The folio array as columns, for the retrieve of guest RAM (no object or BigInt per folio): read
 * with 32-bit words at the model's offsets (MemfdLuoFolioSer); pfn is bits 0..51 of pfn_flags, the
 * flags bits 52..63; the page index a number (exact below 2^53; a larger one, beyond any file, is
 * kept exact in `decodeMemfdFolios` for messages).
 */
export interface MemfdFolioColumns {
  readonly nr: number;
  readonly pfn: Float64Array;
  readonly flags: Uint16Array;
  readonly index: Float64Array;
  /** The array's bytes, for decodeMemfdFolios when a message needs an entry exactly. */
  readonly bytes: Uint8Array;
}

export function decodeMemfdFolioColumns(bytes: Uint8Array, nr: number): MemfdFolioColumns {
  const pfn = new Float64Array(nr);
  const flags = new Uint16Array(nr);
  const index = new Float64Array(nr);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hiBits = Number(MEMFD_FOLIO_PFN_BITS) - 32;
  const { pfn_flags: pf, index: ix } = MemfdLuoFolioSer.offsets;
  for (let i = 0; i < nr; i++) {
    const at = i * FOLIO_SER;
    const hi = dv.getUint32(at + pf + 4, true);
    pfn[i] = dv.getUint32(at + pf, true) + (hi & ((1 << hiBits) - 1)) * 2 ** 32;
    flags[i] = hi >>> hiBits;
    index[i] = dv.getUint32(at + ix, true) + dv.getUint32(at + ix + 4, true) * 2 ** 32;
  }
  return { nr, pfn, flags, index, bytes };
}

/** True when `xs` holds a value twice (sorts xs in place: pass a scratch array). */
function hasDuplicate(xs: Float64Array): boolean {
  xs.sort();
  for (let i = 1; i < xs.length; i++) if (xs[i] === xs[i - 1]) return true;
  return false;
}

export function encodeMemfdFolios(entries: readonly MemfdFolioSer[]): Uint8Array {
  const out = new Uint8Array(entries.length * FOLIO_SER);
  entries.forEach((e, i) => MemfdLuoFolioSer.encode({ pfn_flags: BigInt(e.pfn) | (BigInt(e.flags) << MEMFD_FOLIO_PFN_BITS), index: e.index }, out, i * FOLIO_SER));
  return out;
}

// ---------------------------------------------------------------- the handler

export type MemfdLog = (level: 'info' | 'warn' | 'err', msg: string) => void;

/** What the handler needs from the running kernel. */
export interface MemfdHandlerContext {
  /** The handler's compatible string (default "memfd-v2"; the granular RFC's "memfd-v2;vmalloc-v1"). */
  readonly compatible?: string;
  readonly kho: Kho;
  readonly mem: KhoMemory & MemfdMemory & { readonly nrPages: number };
  readonly alloc: KhoAllocator;
  /** Where retrieved memfds get their pages (normally the same memory and allocator). */
  readonly memfd: MemfdContext;
  readonly log?: MemfdLog;
}

/** args.privateData of a preserved memfd: the runtime state unpreserve needs. */
interface Preserved {
  readonly inode: MemfdFile['inode'];
  readonly folios: readonly ShmemFolio[];
  readonly area: VmArea | undefined;
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;
const paOf = (pfn: number): bigint => BigInt(pfn) << BigInt(PAGE_SHIFT);

export function createMemfdHandler(ctx: MemfdHandlerContext): FileHandler {
  const log: MemfdLog = ctx.log ?? (() => {});
  const { kho, mem, alloc } = ctx;

  const memfdOf = (file: KernelFile | undefined, op: string): MemfdFile => {
    if (!(file instanceof MemfdFile) || file.kind !== 'memfd') throw new LuoError('EINVAL', `memfd ${op}: not a shmem memfd`);
    return file;
  };

  // memfd-v1 (6.19 era) hands over no seals: 40 bytes, and the new memfd is created unsealable
  const v1 = (ctx.compatible ?? MEMFD_LUO_COMPATIBLE).split(';')[0] === MEMFD_LUO_COMPATIBLE_V1;
  const serSize = v1 ? MemfdLuoSerV1.size : MemfdLuoSer.size;
  const decodeSer = (b: Uint8Array): MemfdSer => (v1 ? decodeMemfdSerV1(b) : decodeMemfdSer(b));
  const writeSer = (pa: bigint, s: MemfdSer): void => mem.write(pa, v1 ? encodeMemfdSerV1(s) : encodeMemfdSer(s));
  const where = (pa: bigint): string => `memfd_luo_ser @${hex(pa)}`;

  /** memfd_luo_preserve_folios: pin, preserve each folio, build and preserve the array. */
  const preserveFolios = (file: MemfdFile): { folios: ShmemFolio[]; area: VmArea | undefined; desc: MemfdSer['folios'] } => {
    const inode = file.inode;
    if (inode.size === 0) return { folios: [], area: undefined, desc: { first: 0n, total_pages: 0, flags: 0, order: 0 } };
    const folios = inode.pinAll();
    let area: VmArea | undefined;
    let done = 0;
    try {
      area = vmalloc(mem, alloc, folios.length * FOLIO_SER);
      const entries: MemfdFolioSer[] = [];
      for (const f of folios) {
        kho.preserveFolio(paOf(f.pfn), f.order);
        done++;
        // Every folio goes over dirty and uptodate; a fallocated one is zeroed first.
        if (!f.uptodate) {
          inode.getFolio(f.index, 'cache');
        }
        entries.push({ pfn: f.pfn, flags: MEMFD_LUO_FOLIO_DIRTY | MEMFD_LUO_FOLIO_UPTODATE, index: BigInt(f.index) });
      }
      vmWrite(mem, area, 0, encodeMemfdFolios(entries));
      const desc = kho.preserveVmalloc(area);
      return { folios, area, desc };
    } catch (e) {
      for (let i = done - 1; i >= 0; i--) kho.unpreserveFolio(paOf(folios[i]!.pfn), folios[i]!.order);
      if (area) vfree(alloc, area);
      inode.unpin(folios);
      throw e;
    }
  };

  const preserve = (args: FileOpArgs): void => {
    const file = memfdOf(args.file, 'preserve');
    const inode = file.inode;
    inode.frozen = true;
    let serPa: bigint | undefined;
    try {
      serPa = kho.allocPreserve(serSize);
      const seals = inode.seals;
      if (!v1 && seals & ~MEMFD_LUO_ALL_SEALS) throw new LuoError('EOPNOTSUPP', `memfd preserve: seals ${hex(seals)} include ones memfd-v2 cannot carry (${hex(seals & ~MEMFD_LUO_ALL_SEALS)})`);
      const pages = Math.ceil(inode.size / PAGE_SIZE);
      if (pages > UINT_MAX) throw new LuoError('EFBIG', `memfd preserve: ${pages} pages exceed UINT_MAX (memfd_pin_folios' limit)`);
      const { folios, area, desc } = preserveFolios(file);
      writeSer(serPa, { pos: BigInt(file.pos), size: BigInt(inode.size), seals, flags: 0, nr_folios: BigInt(folios.length), folios: desc });
      const priv: Preserved = { inode, folios, area };
      args.privateData = priv;
      args.serializedData = serPa;
    } catch (e) {
      if (serPa !== undefined) kho.unpreserveFree(serPa);
      inode.frozen = false;
      throw e;
    }
  };

  /** memfd_luo_freeze: only the position may have changed since preserve. */
  const freeze = (args: FileOpArgs): void => {
    if (args.serializedData === 0n) throw new LuoError('EINVAL', 'memfd freeze: no serialized data (was the file preserved?)');
    const file = memfdOf(args.file, 'freeze');
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(file.pos), true);
    mem.write(args.serializedData + BigInt(MemfdLuoSer.offsets.pos), b);
  };

  const unpreserve = (args: FileOpArgs): void => {
    if (args.serializedData === 0n) {
      log('warn', 'memfd unpreserve: no serialized data');
      return;
    }
    const priv = args.privateData as Preserved | undefined;
    if (!priv) {
      log('warn', `memfd unpreserve: ${where(args.serializedData)} has no preserve state (unpreserved twice?)`);
      return;
    }
    const ser = decodeSer(mem.read(args.serializedData, serSize));
    priv.inode.frozen = false;
    if (ser.nr_folios > 0n) {
      kho.unpreserveVmalloc(ser.folios);
      for (const f of priv.folios) kho.unpreserveFolio(paOf(f.pfn), f.order);
      priv.inode.unpin(priv.folios);
      if (priv.area) vfree(alloc, priv.area);
    }
    kho.unpreserveFree(args.serializedData);
    args.privateData = undefined;
  };

  // ---- incoming side

  /** The ser at `pa`, checked enough to be read safely: EINVAL names what is wrong. */
  const readSer = (pa: bigint): MemfdSer => {
    if (pa === 0n) throw new LuoError('EINVAL', 'memfd retrieve: serialized data is 0');
    if (pa % BigInt(PAGE_SIZE) !== 0n || pa + BigInt(serSize) > BigInt(mem.nrPages) * BigInt(PAGE_SIZE)) {
      throw new LuoError('EINVAL', `${where(pa)}: not a page inside RAM (${mem.nrPages} pages)`);
    }
    return decodeSer(mem.read(pa, serSize));
  };

  /**
   * Checks the folio array's descriptor and walks its chunk list read-only before anything is
   * restored (kho_restore_vmalloc is not transactional): chunks and runs inside RAM and aligned,
   * no cycle, as many pages as total_pages, room for nr_folios entries.
   */
  const checkArray = (pa: bigint, ser: MemfdSer, nr: number): void => {
    const d = ser.folios;
    const ramBytes = BigInt(mem.nrPages) * BigInt(PAGE_SIZE);
    const w = `${where(pa)}: folios descriptor (first ${hex(d.first)}, total_pages ${d.total_pages}, order ${d.order})`;
    if (d.flags & ~3) throw new LuoError('EINVAL', `${w}: unknown kho_vmalloc flags ${hex(d.flags)}`);
    if (d.order > 10) throw new LuoError('EINVAL', `${w}: order above MAX_PAGE_ORDER`);
    if (BigInt(nr) * BigInt(FOLIO_SER) > BigInt(d.total_pages) * BigInt(PAGE_SIZE)) {
      throw new LuoError('EINVAL', `${w}: nr_folios ${nr} needs ${nr * FOLIO_SER} bytes, the array has ${d.total_pages} page(s)`);
    }
    const runBytes = BigInt(PAGE_SIZE) << BigInt(d.order);
    const seen = new Set<bigint>();
    let pages = 0;
    for (let chunk = d.first; chunk !== 0n;) {
      if (chunk % BigInt(PAGE_SIZE) !== 0n || chunk >= ramBytes) throw new LuoError('EINVAL', `${w}: chunk ${hex(chunk)} is not a page inside RAM`);
      if (seen.has(chunk)) throw new LuoError('EINVAL', `${w}: chunk list loops back to ${hex(chunk)}`);
      seen.add(chunk);
      const { next, runs } = readVmallocChunk(mem.read(chunk, PAGE_SIZE));
      for (const r of runs) {
        if (r % runBytes !== 0n || r + runBytes > ramBytes) throw new LuoError('EINVAL', `${w}: chunk ${hex(chunk)} lists run ${hex(r)}, not an aligned run inside RAM`);
        pages += 1 << d.order;
        if (pages > d.total_pages) throw new LuoError('EINVAL', `${w}: chunks list more than total_pages pages`);
      }
      chunk = next;
    }
    if (pages !== d.total_pages || pages === 0) throw new LuoError('EINVAL', `${w}: chunks list ${pages} page(s)`);
  };

  /** Gives back a vmalloc area kho_restore_vmalloc rebuilt (its runs came back as page ranges). */
  const vfreeRestored = (area: VmArea): void => {
    for (const r of area.runs) {
      if (alloc.freePages) alloc.freePages(r, 1 << area.order);
      else alloc.freeFolio(r, area.order);
    }
  };

  /** folio_put of a folio kho_restore_folio gave back. */
  const putRestored = (f: { pfn: number; order: number }): void => {
    if (f.order <= 10) alloc.freeFolio(f.pfn, f.order);
    else if (alloc.freePages) alloc.freePages(f.pfn, 1 << f.order);
  };

  /** Restores and frees every listed folio from entry `from` on (skipping pfn 0); failures are only logged. */
  const discard = (cols: MemfdFolioColumns, from: number, what: string): void => {
    for (let i = from; i < cols.nr; i++) {
      const pfn = cols.pfn[i]!;
      if (pfn === 0) continue;
      if (pfn >= mem.nrPages) {
        log('warn', `${what}: folio pfn ${hex(pfn)} lies outside RAM; skipped`);
        continue;
      }
      const f = kho.restoreFolio(paOf(pfn));
      if (!f) log('warn', `${what}: Unable to restore folio at physical address: ${hex(paOf(pfn))}`);
      else putRestored(f);
    }
  };

  /** Restores the folio array; the area's memory is given back before returning. */
  const restoreArray = (ser: MemfdSer, nr: number): MemfdFolioColumns => {
    const area = kho.restoreVmalloc(ser.folios);
    try {
      return decodeMemfdFolioColumns(vmRead(mem, area, 0, nr * FOLIO_SER), nr);
    } finally {
      vfreeRestored(area);
    }
  };

  /**
   * Checks that need only the entries: pfns inside RAM and distinct, indexes inside the size. One
   * pass and two typed-array sorts find whether anything is wrong (this runs for every folio of
   * guest RAM); only then does the entry-by-entry check name the first bad entry.
   */
  const checkEntries = (pa: bigint, cols: MemfdFolioColumns, size: number): void => {
    const pages = Math.ceil(size / PAGE_SIZE);
    const pfns = new Float64Array(cols.nr);
    const indexes = new Float64Array(cols.nr);
    let k = 0;
    let bad = false;
    for (let i = 0; i < cols.nr; i++) {
      const pfn = cols.pfn[i]!;
      if (pfn === 0) continue;
      if (pfn >= mem.nrPages || cols.index[i]! >= pages) {
        bad = true;
        break;
      }
      pfns[k] = pfn;
      indexes[k++] = cols.index[i]!;
    }
    if (!bad && !hasDuplicate(pfns.subarray(0, k)) && !hasDuplicate(indexes.subarray(0, k))) return;
    checkEachEntry(pa, decodeMemfdFolios(cols.bytes, cols.nr), size);
  };

  /** The entry-by-entry check: throws for the first bad entry, in array order. */
  const checkEachEntry = (pa: bigint, entries: readonly MemfdFolioSer[], size: number): void => {
    const pages = BigInt(Math.ceil(size / PAGE_SIZE));
    const pfns = new Set<number>();
    const indexes = new Set<number>(); // numbers: bigint keys hash slowly, and an index below `pages` fits
    // (no closure per entry: this runs once per folio of guest RAM)
    const w = (i: number): string => `${where(pa)}: folio[${i}] (array offset ${i * FOLIO_SER})`;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.pfn === 0) continue;
      if (e.pfn >= mem.nrPages) throw new LuoError('EIO', `${w(i)}: pfn ${hex(e.pfn)} lies outside RAM (${mem.nrPages} pages)`);
      if (pfns.has(e.pfn)) throw new LuoError('EIO', `${w(i)}: pfn ${hex(e.pfn)} is listed twice`);
      if (e.index >= pages) throw new LuoError('EINVAL', `${w(i)}: page index ${e.index} lies beyond the file's ${pages} page(s)`);
      const index = Number(e.index);
      if (indexes.has(index)) throw new LuoError('EEXIST', `${w(i)}: page index ${e.index} is listed twice`);
      pfns.add(e.pfn);
      indexes.add(index);
    }
  };

  /** memfd_luo_retrieve_folios: restore each folio and add it to the new file's page cache. */
  const insertFolios = (pa: bigint, file: MemfdFile, cols: MemfdFolioColumns): void => {
    for (let i = 0; i < cols.nr; i++) {
      const pfn = cols.pfn[i]!;
      if (pfn === 0) continue;
      const order = kho.restoreFolioOrder(pfn);
      if (order < 0) {
        discard(cols, i + 1, `${where(pa)} cleanup`);
        throw new LuoError('EIO', `${where(pa)}: folio[${i}]: Unable to restore folio at physical address: ${hex(paOf(pfn))}`);
      }
      try {
        file.inode.insertFolio(cols.index[i]!, pfn, order, (cols.flags[i]! & MEMFD_LUO_FOLIO_UPTODATE) !== 0);
      } catch (err) {
        putRestored({ pfn, order });
        discard(cols, i + 1, `${where(pa)} cleanup`);
        if (err instanceof LuoError) throw new LuoError(err.errno, `${where(pa)}: folio[${i}]: ${err.message}`, { cause: err });
        throw err;
      }
    }
  };

  /**
   * memfd_luo_retrieve. The kernel trusts the previous kernel; luo also refuses what would make it
   * misbehave: a descriptor or chunk list that does not add up (EINVAL, before anything is
   * restored), a pfn outside RAM or listed twice (EIO, as a failed kho_restore_folio), an index
   * beyond the size (EINVAL) or listed twice (EEXIST, as shmem_add_to_page_cache). Once the array
   * is restored, any failure gives every restorable folio back.
   */
  const retrieve = (args: FileOpArgs): void => {
    const pa = args.serializedData;
    const ser = readSer(pa);
    const restoreSer = (): void => {
      try {
        kho.restoreFree(pa);
      } catch (e) {
        log('warn', `${where(pa)}: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    let file: MemfdFile | undefined;
    let entries: MemfdFolioColumns | undefined;
    let inserting = false;
    try {
      if (!v1 && ser.seals & ~MEMFD_LUO_ALL_SEALS) throw new LuoError('EOPNOTSUPP', `${where(pa)}: seals ${hex(ser.seals)} are not all supported by memfd-v2`);
      if (ser.size > BigInt(MEMFD_MAX_BYTES)) throw new LuoError('EINVAL', `${where(pa)}: size ${ser.size} is beyond the maximum file size`);
      const size = Number(ser.size);
      const maxFolios = BigInt(Math.ceil(size / PAGE_SIZE));
      if (ser.nr_folios > maxFolios) throw new LuoError('EINVAL', `${where(pa)}: nr_folios ${ser.nr_folios} is more than the ${maxFolios} page(s) of a ${size}-byte file`);
      const nr = Number(ser.nr_folios);
      if (nr > 0) checkArray(pa, ser, nr);
      if (v1) file = memfdAllocFile(ctx.memfd, '', 0);
      else {
        file = memfdAllocFile(ctx.memfd, '', MFD_ALLOW_SEALING);
        file.addSeals(ser.seals);
      }
      // vfs_setpos's result is ignored by the kernel: an offset it refuses leaves f_pos at 0.
      if (ser.pos <= BigInt(MEMFD_MAX_BYTES)) file.pos = Number(ser.pos);
      else if (ser.pos < 1n << 63n) throw new LuoError('EINVAL', `${where(pa)}: position ${ser.pos} is beyond what luo can represent`);
      file.inode.size = size;
      if (nr > 0) {
        entries = restoreArray(ser, nr);
        checkEntries(pa, entries, size);
        inserting = true;
        insertFolios(pa, file, entries);
      }
    } catch (e) {
      if (entries && !inserting) discard(entries, 0, `${where(pa)} cleanup`);
      file?.close();
      restoreSer();
      if (e instanceof LuoError) log('err', e.message);
      throw e;
    }
    args.file = file;
    restoreSer();
  };

  /** memfd_luo_finish: only when retrieve never ran, give every preserved page back. */
  const finish = (args: FileOpArgs): void => {
    if (args.retrieveStatus !== 0) return;
    const pa = args.serializedData;
    let ser: MemfdSer;
    try {
      ser = readSer(pa);
    } catch (e) {
      log('err', e instanceof Error ? e.message : String(e));
      return;
    }
    if (ser.nr_folios > 0n) {
      try {
        const nr = Number(ser.nr_folios);
        checkArray(pa, ser, nr);
        discard(restoreArray(ser, nr), 0, `${where(pa)} finish`);
      } catch (e) {
        log('err', e instanceof Error ? e.message : String(e));
      }
    }
    try {
      kho.restoreFree(pa);
    } catch (e) {
      log('warn', `${where(pa)}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  return {
    compatible: ctx.compatible ?? MEMFD_LUO_COMPATIBLE,
    ops: {
      canPreserve: (_h, file) => file instanceof MemfdFile && file.kind === 'memfd' && file.inode.nlink === 0,
      preserve,
      freeze,
      unpreserve,
      retrieve,
      canFinish: () => true,
      finish,
      getId: (file) => (file instanceof MemfdFile ? file.inode : file),
    },
  };
}
