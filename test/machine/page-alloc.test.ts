/** Page allocator: alignment, no overlap against a reference model, reserved and scratch memory, errors, big runs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PageAllocator, MAX_PAGE_ORDER } from '../../src/machine/page-alloc.ts';
import { Memblock } from '../../src/machine/memblock.ts';
import { isLuoError } from '../../src/errno.ts';

const MiB = 1n << 20n;
const GiB = 1n << 30n;
const TiB = 1n << 40n;
const pfnOf = (pa: bigint) => Number(pa / 4096n);

function machine(size: bigint, setup?: (mb: Memblock) => void): { mb: Memblock; pa: PageAllocator } {
  const mb = new Memblock();
  mb.addMemory(0n, size);
  setup?.(mb);
  return { mb, pa: PageAllocator.fromMemblock(mb) };
}

test('every order is naturally aligned; bad orders are EINVAL', () => {
  const { pa } = machine(64n * MiB);
  for (let order = 0; order <= MAX_PAGE_ORDER; order++) {
    for (let i = 0; i < 3; i++) {
      const pfn = pa.allocFolio(order);
      assert.equal(pfn % (1 << order), 0, `order ${order} pfn ${pfn}`);
      for (const p of [pfn, pfn + (1 << order) - 1]) assert.ok(pa.isAllocated(p));
    }
  }
  for (const bad of [-1, 11, 1.5, NaN]) {
    assert.throws(() => pa.allocFolio(bad), (e: unknown) => isLuoError(e, 'EINVAL'));
    assert.throws(() => pa.freeFolio(0, bad), (e: unknown) => isLuoError(e, 'EINVAL'));
  }
});

test('double free, wrong order and mixed-up free calls are errors, not silent', () => {
  const { pa } = machine(64n * MiB);
  const f = pa.allocFolio(3);
  assert.throws(() => pa.freeFolio(f, 2), (e: unknown) => isLuoError(e, 'EINVAL') && /allocated with order 3, freed with order 2/.test((e as Error).message));
  assert.throws(() => pa.freeFolio(f + 1, 0), (e: unknown) => isLuoError(e, 'EINVAL') && /double free/.test((e as Error).message));
  pa.freeFolio(f, 3);
  assert.throws(() => pa.freeFolio(f, 3), (e: unknown) => isLuoError(e, 'EINVAL') && /double free/.test((e as Error).message));
  const run = pa.allocPages(5);
  assert.throws(() => pa.freeFolio(run, 0), (e: unknown) => isLuoError(e, 'EINVAL') && /freePages/.test((e as Error).message));
  assert.throws(() => pa.freePages(run, 6), (e: unknown) => isLuoError(e, 'EINVAL') && /runs past/.test((e as Error).message));
  pa.freePages(run + 1, 2); // a hole in the middle
  assert.ok(pa.isAllocated(run) && !pa.isAllocated(run + 1) && pa.isAllocated(run + 3));
  pa.freePages(run, 1);
  pa.freePages(run + 3, 2);
  assert.throws(() => pa.freePages(run, 1), (e: unknown) => isLuoError(e, 'EINVAL') && /not allocated/.test((e as Error).message));
  const g = pa.allocFolio(0);
  assert.throws(() => pa.freePages(g, 1), (e: unknown) => isLuoError(e, 'EINVAL') && /freeFolio/.test((e as Error).message));
  assert.throws(() => pa.allocPages(0), (e: unknown) => isLuoError(e, 'EINVAL'));
});

test('ENOMEM when exhausted, and everything merges back after freeing', () => {
  const { pa } = machine(8n * MiB);
  const total = pa.freePagesCount();
  assert.equal(total, 2048);
  const got: number[] = [];
  for (;;) {
    try {
      got.push(pa.allocFolio(0));
    } catch (e) {
      assert.ok(isLuoError(e, 'ENOMEM'));
      break;
    }
  }
  assert.equal(got.length, 2048);
  assert.equal(new Set(got).size, 2048);
  assert.equal(pa.freePagesCount(), 0);
  for (const p of got) pa.freeFolio(p, 0);
  const s = pa.stats();
  assert.deepEqual(s.normal.freeBlocks, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 'buddies merged back to two max-order blocks');
  assert.equal(s.allocatedPages, 0);
});

test('never hands out reserved memory; scratch only for movable allocations', () => {
  const scratch = { addr: 16n * MiB, size: 8n * MiB };
  const { pa } = machine(64n * MiB, (mb) => {
    mb.reserve(0n, MiB); // low memory
    mb.reserve(4n * MiB + 0x800n, 0x1000n); // straddles two pages: both are out
    mb.reserve(40n * MiB, 3n * MiB); // "kernel image"
    mb.markScratch([scratch]);
  });
  const reserved = (pfn: number) => pfn < 256 || pfn === 1024 || pfn === 1025 || (pfn >= 10240 && pfn < 10240 + 768);
  const inScratch = (pfn: number) => pfn >= pfnOf(scratch.addr) && pfn < pfnOf(scratch.addr + scratch.size);
  const normal: number[] = [];
  for (;;) {
    try {
      normal.push(pa.allocFolio(0));
    } catch {
      break;
    }
  }
  assert.equal(normal.length, 16384 - 256 - 2 - 768 - 2048);
  for (const p of normal) assert.ok(!reserved(p) && !inScratch(p), `pfn ${p}`);
  assert.throws(() => pa.allocPages(2), (e: unknown) => isLuoError(e, 'ENOMEM') && /outside KHO scratch/.test((e as Error).message));
  assert.equal(pa.freePagesCount(), 0);
  assert.equal(pa.freePagesCount({ movable: true }), 2048);
  const m = pa.allocFolio(9, { movable: true });
  assert.ok(inScratch(m) && inScratch(m + 511));
  const run = pa.allocPages(1024, { movable: true });
  assert.ok(inScratch(run) && inScratch(run + 1023));
  assert.ok(!pa.isManaged(0) && !pa.isAllocated(0));
  pa.freeFolio(m, 9);
  pa.freePages(run, 1024);
  assert.equal(pa.freePagesCount({ movable: true }), 2048);
});

test('random alloc/free sequences agree with a page-set model (property)', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('folio' as const), order: fc.integer({ min: 0, max: MAX_PAGE_ORDER }), movable: fc.boolean() }),
    fc.record({ kind: fc.constant('pages' as const), n: fc.integer({ min: 1, max: 3000 }), movable: fc.boolean() }),
    fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const scratch = { addr: 20n * MiB, size: 4n * MiB };
      const { pa } = machine(32n * MiB, (mb) => {
        mb.reserve(0n, 0x3000n);
        mb.reserve(9n * MiB + 0x10n, 0x5000n);
        mb.markScratch([scratch]);
      });
      const reserved = (p: number) => p < 3 || (p >= 2304 && p <= 2309);
      const inScratch = (p: number) => p >= 5120 && p < 6144;
      const owner = new Map<number, number>(); // page -> allocation id
      const live: { id: number; pfn: number; n: number; folio: boolean; order: number }[] = [];
      let nextId = 0;
      const startFree = pa.freePagesCount({ movable: true });
      for (const o of ops) {
        if (o.kind === 'free') {
          if (live.length === 0) continue;
          const [a] = live.splice(o.pick % live.length, 1);
          if (a!.folio) pa.freeFolio(a!.pfn, a!.order);
          else pa.freePages(a!.pfn, a!.n);
          for (let p = a!.pfn; p < a!.pfn + a!.n; p++) owner.delete(p);
          continue;
        }
        let pfn: number;
        const n = o.kind === 'folio' ? 1 << o.order : o.n;
        try {
          pfn = o.kind === 'folio' ? pa.allocFolio(o.order, { movable: o.movable }) : pa.allocPages(o.n, { movable: o.movable });
        } catch (e) {
          assert.ok(isLuoError(e, 'ENOMEM'));
          continue;
        }
        const align = o.kind === 'folio' ? n : n <= 1024 ? 2 ** Math.floor(Math.log2(n)) : 1024;
        assert.equal(pfn % align, 0, `alignment of ${n} pages at ${pfn}`);
        const id = nextId++;
        for (let p = pfn; p < pfn + n; p++) {
          assert.ok(!owner.has(p), `page ${p} handed out twice`);
          assert.ok(!reserved(p), `reserved page ${p} handed out`);
          if (!o.movable) assert.ok(!inScratch(p), `scratch page ${p} for an unmovable allocation`);
          assert.ok(pa.isAllocated(p));
          owner.set(p, id);
        }
        live.push({ id, pfn, n, folio: o.kind === 'folio', order: o.kind === 'folio' ? o.order : 0 });
      }
      assert.equal(pa.freePagesCount({ movable: true }), startFree - owner.size);
      assert.equal(pa.stats().allocatedPages, owner.size);
      for (let p = 0; p < 8192; p += 7) assert.equal(pa.isAllocated(p), owner.has(p), `isAllocated(${p})`);
    }),
    { numRuns: 200 },
  );
});

test('1 GiB runs are 1 GiB aligned; adopted blocks free into the allocator', () => {
  const { pa } = machine(8n * GiB, (mb) => mb.reserve(0n, 64n * MiB));
  const runs = [pa.allocPages(262144), pa.allocPages(262144), pa.allocPages(262144)];
  for (const r of runs) assert.equal(r % 262144, 0);
  assert.equal(new Set(runs).size, 3);
  assert.ok(!runs.includes(0), 'the first GiB is partly reserved');
  const odd = pa.allocPages(262144 + 5);
  assert.equal(odd % 262144, 0);
  assert.ok(pa.isAllocated(odd + 262144 + 4) && !pa.isAllocated(odd + 262144 + 5), 'the tail of the last block went back');
  for (const r of runs) pa.freePages(r, 262144);
  pa.freePages(odd, 262144 + 5);
  // Adopting reserved memory (a restored KHO folio), then freeing it, grows the allocator.
  const before = pa.freePagesCount();
  pa.adoptFolio(512, 9);
  assert.throws(() => pa.adoptFolio(512, 9), (e: unknown) => isLuoError(e, 'EBUSY'));
  assert.throws(() => pa.adoptFolio(3, 2), (e: unknown) => isLuoError(e, 'EINVAL'));
  assert.ok(pa.isAllocated(512));
  pa.freeFolio(512, 9);
  pa.adoptPages(1024, 3);
  pa.freePages(1024, 3);
  assert.equal(pa.freePagesCount(), before + 515);
});

test('1 TiB: 262 144 2-MiB folios, 1-GiB runs and 100 000 single pages, then frees, with small bookkeeping', () => {
  const { pa } = machine(TiB, (mb) => mb.reserve(0n, 64n * MiB));
  const folios: number[] = [];
  for (let i = 0; i < 262_144; i++) folios.push(pa.allocFolio(9));
  const runs: number[] = [];
  for (let i = 0; i < 511; i++) runs.push(pa.allocPages(262_144));
  assert.throws(() => pa.allocPages(262_144), (e: unknown) => isLuoError(e, 'ENOMEM'));
  const singles: number[] = [];
  for (let i = 0; i < 15_000; i++) singles.push(pa.allocFolio(0));
  for (let i = 0; i < folios.length; i += 2) pa.freeFolio(folios[i]!, 9);
  for (let i = 0; i < 85_000; i++) singles.push(pa.allocFolio(0));
  for (let i = 0; i < runs.length; i += 2) pa.freePages(runs[i]!, 262_144);
  for (let i = 0; i < singles.length; i += 3) pa.freeFolio(singles[i]!, 0);
  const s = pa.stats();
  assert.equal(s.managedPages, 2 ** 28 - 16384);
  assert.equal(s.allocatedPages + s.normal.freePages, s.managedPages);
});
