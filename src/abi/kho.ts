/**
 * KHO's hand-over ABI: compat strings, property names and the packed structs the next kernel reads
 * (include/linux/kho/abi/kexec_handover.h, abi/vmalloc.h, abi/radix_tree.h, abi/kexec_metadata.h,
 * arch/x86/include/uapi/asm/setup_data.h). Any change here needs a new compat string.
 */
import { cstr, defineStruct, u16, u32, u64 } from '../bytes/struct.ts';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/**
 * Root compatible strings by profile (kexec_handover.h; kho-v1 from @dd03dd6; kho-v2 the radix
 * tracker with sub-FDTs by "preserved-data" and no blob-size, abi/kexec_handover.h of that era).
 */
export const KHO_FDT_COMPATIBLE = { 'kho-v1': 'kho-v1', 'kho-v2': 'kho-v2', 'kho-v4': 'kho-v4' } as const;
export type KhoProfile = keyof typeof KHO_FDT_COMPATIBLE;

export const PROP_PRESERVED_MEMORY_MAP = 'preserved-memory-map';
/** kho-v2+: physical address of a subtree's blob. */
export const PROP_SUB_FDT_DATA = 'preserved-data';
/** kho-v3+: byte size of a subtree's blob. */
export const PROP_SUB_BLOB_SIZE = 'blob-size';
/** kho-v1: physical address of a sub-FDT. */
export const PROP_SUB_FDT_V1 = 'fdt';

/** Head-page `private` magic stamped on each preserved block by the new kernel ('KHOP'). */
export const KHO_PAGE_MAGIC = 0x4b484f50;

// Radix tree geometry for 4 KiB pages (abi/kexec_handover.h, later abi/radix_tree.h).
export const KHO_ORDER_0_LOG2 = 64 - PAGE_SHIFT; // 52
export const KHO_TABLE_SIZE_LOG2 = 9;
export const KHO_BITMAP_SIZE_LOG2 = PAGE_SHIFT + 3; // 15: 32768 bits per leaf
export const KHO_TREE_MAX_DEPTH = 6;

/** kho-v1 bitmap-chunk list node (kexec_handover.c @dd03dd6): 16-byte header, 255 elements. */
export const KhoMemChunkHdr = defineStruct('khoser_mem_chunk_hdr', 'le', { next: u64, order: u32, num_elms: u32 }, 16);
export const KhoBitmapElm = defineStruct('khoser_mem_bitmap_ptr', 'le', { phys_start: u64, bitmap: u64 }, 16);
export const KHO_MEM_CHUNK_CAPACITY = (PAGE_SIZE - KhoMemChunkHdr.size) / KhoBitmapElm.size; // 255

/** struct kho_vmalloc (abi/vmalloc.h): naturally aligned 16 bytes. */
export const KhoVmalloc = defineStruct('kho_vmalloc', 'le', { first: u64, total_pages: u32, flags: u16, order: u16 }, 16);
export const KHO_VMALLOC_FLAG_VM_ALLOC = 1;
export const KHO_VMALLOC_FLAG_HUGE_VMAP = 2;
/** A vmalloc chunk page: `next` then this many physical addresses, zero-terminated. */
export const KHO_VMALLOC_CHUNK_ENTRIES = PAGE_SIZE / 8 - 1; // 511

/** struct kho_scratch (include/linux/kexec_handover.h). */
export const KhoScratch = defineStruct('kho_scratch', 'le', { addr: u64, size: u64 }, 16);

/** x86 setup_data payload for SETUP_KEXEC_KHO = 10 (asm/setup_data.h). */
export const SETUP_KEXEC_KHO = 10;
export const KhoData = defineStruct('kho_data', 'le', { fdt_addr: u64, fdt_size: u64, scratch_addr: u64, scratch_size: u64 }, 32);

/** kexec-metadata subtree (abi/kexec_metadata.h): a raw packed struct of 73 bytes. */
export const KEXEC_METADATA_NAME = 'kexec-metadata';
export const KEXEC_METADATA_VERSION = 1;
export const KexecMetadata = defineStruct('kexec_metadata', 'le', { version: u32, previous_release: cstr(65), kexec_count: u32 }, 73);
