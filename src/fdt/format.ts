/**
 * The flattened device tree (DTB v17) format: header layout, structure-block tokens, alignment
 * rules, and the one error catalogue every fdt/ module uses (libfdt's FDT_ERR_* codes, each with
 * the byte offset it concerns). Mirrors libfdt's fdt.h and libfdt.h.
 */
import { defineStruct, u32 } from '../bytes/struct.ts';

export const FDT_MAGIC = 0xd00dfeed;
export const FDT_TAGSIZE = 4;

export const FDT_BEGIN_NODE = 0x1;
export const FDT_END_NODE = 0x2;
export const FDT_PROP = 0x3;
export const FDT_NOP = 0x4;
export const FDT_END = 0x9;

/** The version libfdt writes and the oldest version it says it is compatible with. */
export const FDT_LAST_SUPPORTED_VERSION = 17;
export const FDT_LAST_COMPATIBLE_VERSION = 16;
export const FDT_FIRST_SUPPORTED_VERSION = 0x02;

/** struct fdt_header: ten big-endian u32 words (v17). */
export const FdtHeader = defineStruct('fdt_header', 'be', {
  magic: u32,
  totalsize: u32,
  off_dt_struct: u32,
  off_dt_strings: u32,
  off_mem_rsvmap: u32,
  version: u32,
  last_comp_version: u32,
  boot_cpuid_phys: u32,
  size_dt_strings: u32,
  size_dt_struct: u32,
}, 40);
export const FDT_V17_HEADER_SIZE = 40;

/** struct fdt_reserve_entry: two big-endian u64 (address, size). */
export const FDT_RESERVE_ENTRY_SIZE = 16;

/** struct fdt_property header after the FDT_PROP token: len then nameoff. */
export const FDT_PROP_HEADER_SIZE = 8;

export const fdtTagAlign = (n: number): number => (n + FDT_TAGSIZE - 1) & ~(FDT_TAGSIZE - 1);

/** libfdt's error catalogue (libfdt.h), by name. */
export const FDT_ERR = {
  NOTFOUND: 1,
  EXISTS: 2,
  NOSPACE: 3,
  BADOFFSET: 4,
  BADPATH: 5,
  BADPHANDLE: 6,
  BADSTATE: 7,
  TRUNCATED: 8,
  BADMAGIC: 9,
  BADVERSION: 10,
  BADSTRUCTURE: 11,
  BADLAYOUT: 12,
  INTERNAL: 13,
  BADNCELLS: 14,
  BADVALUE: 15,
  BADOVERLAY: 16,
  NOPHANDLES: 17,
  BADFLAGS: 18,
  ALIGNMENT: 19,
} as const;
export type FdtErrCode = keyof typeof FDT_ERR;

/**
 * A typed FDT failure: `code` is the libfdt error, `offset` the byte offset in the blob that the
 * problem concerns (-1 when no single offset applies).
 */
export class FdtError extends Error {
  readonly code: FdtErrCode;
  readonly offset: number;
  constructor(code: FdtErrCode, offset: number, detail: string) {
    super(`FDT_ERR_${code} at offset ${offset}: ${detail}`);
    this.name = 'FdtError';
    this.code = code;
    this.offset = offset;
  }
  /** The negative libfdt return value for this error. */
  get libfdtValue(): number {
    return -FDT_ERR[this.code];
  }
}

/** Header sizes by version (libfdt's FDT_V1_SIZE .. FDT_V17_SIZE). v16 lacks size_dt_struct. */
export const FDT_V1_HEADER_SIZE = 28;
export const FDT_V16_HEADER_SIZE = 36;
/** The oldest version luo reads (v16: NOPs allowed, names not full paths). */
export const FDT_FIRST_READABLE_VERSION = 16;

/**
 * The deepest node nesting luo accepts (root = depth 0). Mirrors FDT_MAX_DEPTH in the kernel's
 * drivers/of/fdt.c; it bounds every walk and every path a reader builds from an untrusted blob.
 */
export const FDT_MAX_DEPTH = 64;
