/**
 * The simulated computer below the kernel: physical memory (with poisoning and file images),
 * memblock, the page allocator and KHO scratch areas. Layers above import from here.
 */
export {
  PhysicalMemory,
  POISON_BYTE,
  POISON_PATTERN,
  isPoisoned,
  type MemoryStats,
  type PageRun,
  type PageState,
  type PhysRange,
} from './memory.ts';
export { IMAGE_MAGIC, IMAGE_VERSION, type ImageOptions, type ImageStream, type LoadedImage, type WriteProgress } from './image.ts';
export {
  Memblock,
  ARCH_LOW_ADDRESS_LIMIT,
  MEMBLOCK_NONE,
  MEMBLOCK_HOTPLUG,
  MEMBLOCK_MIRROR,
  MEMBLOCK_NOMAP,
  MEMBLOCK_DRIVER_MANAGED,
  MEMBLOCK_RSRV_NOINIT,
  MEMBLOCK_RSRV_KERN,
  MEMBLOCK_KHO_SCRATCH,
  type FreeRange,
  type MemblockAllocOptions,
  type MemblockRegion,
} from './memblock.ts';
export { PageAllocator, MAX_PAGE_ORDER, type PageAllocOptions, type PageAllocStats, type PoolStats } from './page-alloc.ts';
export {
  CMA_MIN_ALIGNMENT_BYTES,
  DEFAULT_SCRATCH_CONFIG,
  KHO_SCRATCH_DEFAULT_SCALE,
  decodeScratchArray,
  encodeScratchArray,
  formatScratchDebugfs,
  memparse,
  parseKhoScratch,
  parseScratchDebugfs,
  reserveScratch,
  roundUpU64,
  scratchOverlap,
  scratchSizeNode,
  scratchSizes,
  type KhoScratchArea,
  type ReservedScratch,
  type ScratchConfig,
} from './scratch.ts';
export { IntervalSet, hex, type Span } from './ranges.ts';
