/**
 * LUO's hand-over ABI (include/linux/kho/abi/luo.h, abi/block.h, abi/memfd.h): the `luo_ser` root
 * blob, linked-block headers and entries, FLB records and memfd descriptors. All packed,
 * little-endian. Any change here needs a new compat string.
 */
import { PAGE_SIZE } from './kho.ts';
import { cstr, defineStruct, u16, u32, u64 } from '../bytes/struct.ts';

export const LUO_SUBTREE_NAME = 'LUO';
export const LUO_ABI_COMPATIBLE = 'luo-v5';
/** sizeof("luo-v5") = 7, rounded up to a multiple of 8. */
export const LUO_ABI_COMPAT_LEN = 8;

/** `sizeof` of a compatible string with its NUL, rounded up to 8 (LUO_ABI_COMPAT_LEN; KHO_COMPAT_ALIGN in abi/compat.h). */
export const compatLen = (compatible: string): number => Math.ceil((new TextEncoder().encode(compatible).length + 1) / 8) * 8;

const serLayouts = new Map<string, ReturnType<typeof defineLuoSer>>();
const defineLuoSer = (len: number) => defineStruct('luo_ser', 'le', { compatible: cstr(len), liveupdate_num: u64, sessions_pa: u64, flbs_pa: u64 }, len + 24);

/**
 * struct luo_ser for a raw LUO compatible: the string's storage, then three u64 (32 bytes for
 * "luo-v5"; 40 for the granular RFC's "luo-v5;block-v1", linux-mm @a6d96598).
 */
export function luoSerLayout(compatible: string): ReturnType<typeof defineLuoSer> {
  const len = compatLen(compatible);
  let l = serLayouts.get(String(len));
  if (!l) serLayouts.set(String(len), (l = defineLuoSer(len)));
  return l;
}

export const LuoSer = luoSerLayout(LUO_ABI_COMPATIBLE);

/** Header of every linked serialization block (abi/block.h). */
export const KhoBlockHeader = defineStruct('kho_block_header_ser', 'le', { next: u64, count: u64 }, 16);
/** KHO_MAX_BLOCKS (kho_block.c): the cap on blocks in one set. */
export const KHO_MAX_BLOCKS = 10000;
export const blockCapacity = (entrySize: number, pages = 1): number => Math.floor((pages * PAGE_SIZE - KhoBlockHeader.size) / entrySize);

export const LUO_SESSION_NAME_LENGTH = 64;
export const LuoSessionSer = defineStruct('luo_session_ser', 'le', {
  name: cstr(LUO_SESSION_NAME_LENGTH),
  files: u64,
  count: u64,
}, 80);

export const LIVEUPDATE_HNDL_COMPAT_LENGTH = 48;
export const LuoFileSer = defineStruct('luo_file_ser', 'le', {
  compatible: cstr(LIVEUPDATE_HNDL_COMPAT_LENGTH),
  data: u64,
  token: u64,
}, 64);

export const LuoFlbHeaderSer = defineStruct('luo_flb_header_ser', 'le', { pgcnt: u64, count: u64 }, 16);
export const LuoFlbSer = defineStruct('luo_flb_ser', 'le', {
  name: cstr(LIVEUPDATE_HNDL_COMPAT_LENGTH),
  data: u64,
  count: u64,
}, 64);
/** One page of FLB records after the header: (4096 - 16) / 64 = 63. */
export const LUO_FLB_MAX = Math.floor((PAGE_SIZE - LuoFlbHeaderSer.size) / LuoFlbSer.size);

// ---- memfd (mm/memfd_luo.c, abi/memfd.h) ----
export const MEMFD_LUO_COMPATIBLE = 'memfd-v2';
export const MEMFD_LUO_FOLIO_DIRTY = 1;
export const MEMFD_LUO_FOLIO_UPTODATE = 2;
/** pfn in bits 0..51, flags in bits 52..63 of word 0; page index in word 1. */
export const MemfdLuoFolioSer = defineStruct('memfd_luo_folio_ser', 'le', { pfn_flags: u64, index: u64 }, 16);
export const MEMFD_FOLIO_PFN_BITS = 52n;

/** struct memfd_luo_ser, memfd-v2: the `folios` member is an embedded struct kho_vmalloc. */
export const MemfdLuoSer = defineStruct('memfd_luo_ser', 'le', {
  pos: u64,
  size: u64,
  seals: u32,
  flags: u32,
  nr_folios: u64,
  folios_first: u64,
  folios_total_pages: u32,
  folios_flags: u16,
  folios_order: u16,
}, 48);

/** memfd-v1 (no seals): kept for decoding older kernels' hand-overs. */
export const MEMFD_LUO_COMPATIBLE_V1 = 'memfd-v1';
export const MemfdLuoSerV1 = defineStruct('memfd_luo_ser_v1', 'le', {
  pos: u64,
  size: u64,
  nr_folios: u64,
  folios_first: u64,
  folios_total_pages: u32,
  folios_flags: u16,
  folios_order: u16,
}, 40);

// ---- the FDT era: "luo-v1" (abi/luo.h @cc4adab, luo_session.c @7f790dd, luo_flb.c @cab056f2) ----
/** The "LUO" subtree is one page holding an FDT. */
export const LUO_FDT_COMPATIBLE_V1 = 'luo-v1';
export const LUO_FDT_LIVEUPDATE_NUM = 'liveupdate-number';
export const LUO_FDT_SESSION_NODE = 'luo-session';
export const LUO_FDT_SESSION_COMPATIBLE = 'luo-session-v2';
export const LUO_FDT_SESSION_HEADER = 'luo-session-header';
export const LUO_FDT_FLB_NODE = 'luo-flb';
export const LUO_FDT_FLB_COMPATIBLE = 'luo-flb-v1';
export const LUO_FDT_FLB_HEADER = 'luo-flb-header';

// ---- "luo-v2", transient (v7 series patch 3, "centralize state management into struct luo_ser") ----
/** The LUO FDT keeps only its compatible and the address of a compatible-less luo_ser. */
export const LUO_FDT_COMPATIBLE_V2 = 'luo-v2';
export const LUO_FDT_ABI_HEADER = 'luo-abi-header';
/** struct luo_ser of luo-v2: no compatible field (24 bytes). */
export const LuoSerV2 = defineStruct('luo_ser_v2', 'le', { liveupdate_num: u64, sessions_pa: u64, flbs_pa: u64 }, 24);
