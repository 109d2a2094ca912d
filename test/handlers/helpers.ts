/** Shared pieces of the handler tests: a machine, op-args bundles, preserve-then-kexec. */
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import type { Kernel } from '../../src/kernel/kernel.ts';
import { isLuoError, type ErrnoName } from '../../src/errno.ts';
import type { FileHandler, FileOpArgs, KernelFile } from '../../src/luo/file-handler.ts';
import { type MemfdContext, type MemfdFile, memfdContextOf, memfdHandlerOf } from '../../src/handlers/index.ts';

export const PG = 4096;
export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export function newArgs(handler: FileHandler, file?: KernelFile, serializedData = 0n): FileOpArgs {
  return { handler, retrieveStatus: 0, file, serializedData, privateData: undefined };
}

export function throwsErrno(fn: () => unknown, errno: ErrnoName, what?: string): void {
  assert.throws(fn, (e: unknown) => {
    if (!isLuoError(e, errno)) throw e;
    return true;
  }, what ?? `expected ${errno}`);
}

/** A booted machine with the memfd handler of its running kernel. */
export function boot(ramSize = 1n << 30n, memfd: Omit<MemfdContext, 'mem' | 'alloc'> = {}): { m: Machine; k: Kernel; c: MemfdContext; h: FileHandler } {
  const m = new Machine({ ramSize });
  return { m, k: m.kernel, c: memfdContextOf(m.kernel, memfd), h: memfdHandlerOf(m.kernel, { memfd }) };
}

/** Deterministic pseudo-random bytes. */
export function pattern(seed: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** What a memfd looks like from userspace. */
export interface MemfdView { bytes: Uint8Array; size: number; pos: number; seals: number }
export const viewOf = (f: MemfdFile): MemfdView => ({ bytes: f.pread(f.stat().size, 0), size: f.stat().size, pos: f.pos, seals: f.getSeals() });

/**
 * Preserves each file (preserve, then freeze as the reboot path does), kexecs, and returns the new
 * kernel with a fresh handler and the serialized data of each file.
 */
export function preserveAndKexec(m: Machine, h: FileHandler, files: readonly MemfdFile[], memfd: Omit<MemfdContext, 'mem' | 'alloc'> = {}): { k: Kernel; h: FileHandler; data: bigint[] } {
  const args = files.map((f) => {
    const a = newArgs(h, f);
    h.ops.preserve(a);
    return a;
  });
  for (const a of args) h.ops.freeze?.(a);
  const k = m.kexec();
  return { k, h: memfdHandlerOf(k, { memfd }), data: args.map((a) => a.serializedData) };
}

/** RETRIEVE_FD in the new kernel: the restored memfd. */
export function retrieve(h: FileHandler, data: bigint): MemfdFile {
  const a = newArgs(h, undefined, data);
  h.ops.retrieve(a);
  assert.ok(a.file, 'retrieve sets args.file');
  return a.file as MemfdFile;
}
