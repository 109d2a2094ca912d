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

/**
 * Copies `len` bytes at physical address `pa` out of page views, crossing page boundaries.
 * `pfnOf` maps each page's address to its pfn (and may refuse it, e.g. outside RAM).
 */
export function readPhysBytes(mem: KhoMemory, pa: bigint, len: number, pfnOf: (at: bigint) => number = (at) => Number(at >> 12n)): Uint8Array {
  const out = new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const at = pa + BigInt(done);
    const off = Number(at & 0xfffn);
    const n = Math.min(4096 - off, len - done);
    out.set(mem.page(pfnOf(at)).subarray(off, off + n), done);
    done += n;
  }
  return out;
}
