/**
 * LUO file handlers (the kernel's liveupdate_file_handler implementations) and the file models
 * they preserve. Today: memfd-v2 (mm/memfd_luo.c) over the shmem memfd model (mm/memfd.c).
 */
import { LuoError } from '../errno.ts';
import type { Kho } from '../kho/kho.ts';
import type { KhoAllocator, KhoMemory } from '../kho/memory.ts';
import type { FileHandler } from '../luo/file-handler.ts';
import type { MemfdContext, MemfdMemory } from './memfd-file.ts';
import { createMemfdHandler, type MemfdLog } from './memfd.ts';

export * from './memfd-file.ts';
export * from './memfd.ts';

/** The pieces of a running kernel the handlers use (structurally: kernel/ is a layer above). */
export interface HandlerKernel {
  readonly kho: Kho | undefined;
  readonly alloc: KhoAllocator;
  readonly machine: { readonly memory: KhoMemory & MemfdMemory & { readonly nrPages: number } };
}

/** The memfd context of a running kernel: its memory and page allocator. */
export function memfdContextOf(k: HandlerKernel, opts: Omit<MemfdContext, 'mem' | 'alloc'> = {}): MemfdContext {
  return { ...opts, mem: k.machine.memory, alloc: k.alloc };
}

/** A memfd-v2 handler bound to a running kernel (which must have KHO). */
export function memfdHandlerOf(k: HandlerKernel, opts: { memfd?: Omit<MemfdContext, 'mem' | 'alloc'>; log?: MemfdLog; compatible?: string } = {}): FileHandler {
  if (!k.kho) throw new LuoError('EOPNOTSUPP', 'memfd handler: the kernel runs without KHO');
  return createMemfdHandler({ kho: k.kho, mem: k.machine.memory, alloc: k.alloc, memfd: memfdContextOf(k, opts.memfd), ...(opts.log ? { log: opts.log } : {}), ...(opts.compatible ? { compatible: opts.compatible } : {}) });
}
