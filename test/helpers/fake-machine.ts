/**
 * Small stand-ins for machine/ used by unit tests of upper layers: a sparse page store and a bump
 * allocator over it, plus a loader for the real kernel's captured pages (name@0xADDR.bin files).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LuoError } from '../../src/errno.ts';
import type { KhoAllocator, KhoMemory } from '../../src/kho/memory.ts';

export class FakeMemory implements KhoMemory {
  readonly pages = new Map<number, Uint8Array>();
  constructor(readonly ramPages: number) {}
  page(pfn: number): Uint8Array {
    if (pfn < 0 || pfn >= this.ramPages) throw new LuoError('EFAULT', `pfn 0x${pfn.toString(16)} outside RAM`);
    let p = this.pages.get(pfn);
    if (!p) { p = new Uint8Array(4096); this.pages.set(pfn, p); }
    return p;
  }
}

/** Hands out naturally aligned blocks upwards from `startPfn`; freed blocks are remembered. */
export class BumpAllocator implements KhoAllocator {
  next: number;
  readonly live = new Map<number, number>();
  constructor(startPfn: number, private readonly endPfn = Number.MAX_SAFE_INTEGER) { this.next = startPfn; }
  allocFolio(order: number): number {
    const n = 2 ** order;
    const pfn = Math.ceil(this.next / n) * n;
    if (pfn + n > this.endPfn) throw new LuoError('ENOMEM', 'bump allocator exhausted');
    this.next = pfn + n;
    this.live.set(pfn, order);
    return pfn;
  }
  freeFolio(pfn: number, order: number): void {
    if (this.live.get(pfn) !== order) throw new Error(`bad free of pfn ${pfn} order ${order}`);
    this.live.delete(pfn);
  }
}

export interface CapturedPage { role: string; pa: bigint; bytes: Uint8Array }

/** The pages the real 7.3.4 kernel handed over (test/fixtures/real-kernel/handover-memory/pages). */
export function loadRealPages(): CapturedPage[] {
  const dir = new URL('../fixtures/real-kernel/handover-memory/pages/', import.meta.url).pathname;
  return readdirSync(dir).filter((f) => f.endsWith('.bin')).map((f) => {
    const m = /^(.*)@0x([0-9a-f]+)\.bin$/.exec(f);
    if (!m) throw new Error(`unexpected fixture name ${f}`);
    return { role: m[1]!, pa: BigInt('0x' + m[2]!), bytes: new Uint8Array(readFileSync(join(dir, f))) };
  });
}

/** A 1 GiB FakeMemory holding the captured pages at their physical addresses. */
export function realKernelMemory(): FakeMemory {
  const mem = new FakeMemory((1 << 30) / 4096);
  for (const p of loadRealPages()) mem.page(Number(p.pa >> 12n)).set(p.bytes);
  return mem;
}
