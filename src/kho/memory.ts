/**
 * The narrow view of the machine that KHO needs: page-granular access to physical memory and a
 * folio allocator. machine/ provides both (PhysicalMemory.page, the page allocator); tests may
 * provide small fakes.
 */

export interface KhoMemory {
  /** A live, writable 4096-byte view of page frame `pfn`. */
  page(pfn: number): Uint8Array;
}

export interface KhoAllocator {
  /** A naturally aligned block of 2^order pages; throws LuoError ENOMEM when none is free. */
  allocFolio(order: number): number;
  freeFolio(pfn: number, order: number): void;
  /** Takes a restored block (memblock-reserved at boot, so never managed) as allocated. */
  adoptFolio?(pfn: number, order: number): void;
  adoptPages?(pfn: number, n: number): void;
  freePages?(pfn: number, n: number): void;
}
