/** memblock: region lists (merge, split, flags), top-down allocation, scratch-only mode, free ranges. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  Memblock,
  MEMBLOCK_KHO_SCRATCH,
  MEMBLOCK_NONE,
  MEMBLOCK_RSRV_KERN,
  MEMBLOCK_RSRV_NOINIT,
} from '../../src/machine/memblock.ts';
import { isLuoError } from '../../src/errno.ts';

const MiB = 1n << 20n;
const GiB = 1n << 30n;

const regions = (list: { base: bigint; size: bigint; flags: number }[]) => list.map((r) => [r.base, r.size, r.flags]);

test('reserve merges touching regions with equal flags and keeps others apart', () => {
  const mb = new Memblock();
  mb.addMemory(0n, GiB);
  mb.reserve(0x3000n, 0x1000n);
  mb.reserve(0x1000n, 0x1000n);
  mb.reserve(0x2000n, 0x1000n); // fills the hole: one region
  mb.reserve(0x4000n, 0x1000n, MEMBLOCK_RSRV_KERN); // touching, other flags: separate
  assert.deepEqual(regions(mb.reservedRegions()), [
    [0x1000n, 0x3000n, MEMBLOCK_NONE],
    [0x4000n, 0x1000n, MEMBLOCK_RSRV_KERN],
  ]);
  // Overlapping reserve only adds the uncovered parts; covered parts keep their flags.
  mb.reserve(0x800n, 0x5000n, MEMBLOCK_RSRV_KERN);
  assert.deepEqual(regions(mb.reservedRegions()), [
    [0x800n, 0x800n, MEMBLOCK_RSRV_KERN],
    [0x1000n, 0x3000n, MEMBLOCK_NONE],
    [0x4000n, 0x1800n, MEMBLOCK_RSRV_KERN],
  ]);
  assert.equal(mb.reservedSize(), 0x5000n);
  assert.equal(mb.reservedSize({ start: 0x1800n, end: 0x4800n }), 0x3000n);
  assert.equal(mb.reservedKernSize(0xffffffffn), 0x2000n);
  mb.reserve(0x9000n, 0n); // size 0: nothing
  assert.equal(mb.reservedCount, 3);
});

test('free splits regions; isReserved checks overlap; markNoInit sets the flag on a sub-range', () => {
  const mb = new Memblock();
  mb.addMemory(0n, GiB);
  mb.reserve(0x10000n, 0x10000n);
  mb.free(0x14000n, 0x4000n);
  assert.deepEqual(regions(mb.reservedRegions()), [
    [0x10000n, 0x4000n, 0],
    [0x18000n, 0x8000n, 0],
  ]);
  assert.ok(mb.isReserved(0x13fffn));
  assert.ok(!mb.isReserved(0x14000n));
  assert.ok(mb.isReserved(0x14000n, 0x4001n));
  assert.ok(!mb.isReserved(0x14000n, 0x4000n));
  mb.markNoInit(0x19000n, 0x1000n);
  assert.deepEqual(regions(mb.reservedRegions()), [
    [0x10000n, 0x4000n, 0],
    [0x18000n, 0x1000n, 0],
    [0x19000n, 0x1000n, MEMBLOCK_RSRV_NOINIT],
    [0x1a000n, 0x6000n, 0],
  ]);
  mb.free(0n, GiB);
  assert.equal(mb.reservedCount, 0);
});

test('reserved list matches a byte-level model (property)', () => {
  const op = fc.record({
    kind: fc.constantFrom('reserve', 'free', 'noinit'),
    base: fc.integer({ min: 0, max: 200 }),
    size: fc.integer({ min: 0, max: 60 }),
    kern: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const mb = new Memblock();
      mb.addMemory(0n, 4096n);
      const model = new Int32Array(300).fill(-1); // flags per byte, -1 = free
      for (const o of ops) {
        const end = o.base + o.size;
        for (let i = o.base; i < end; i++) {
          if (o.kind === 'reserve' && model[i] === -1) model[i] = o.kern ? MEMBLOCK_RSRV_KERN : 0;
          if (o.kind === 'free') model[i] = -1;
          if (o.kind === 'noinit' && model[i]! >= 0) model[i]! |= MEMBLOCK_RSRV_NOINIT;
        }
        if (o.kind === 'reserve') mb.reserve(BigInt(o.base), BigInt(o.size), o.kern ? MEMBLOCK_RSRV_KERN : 0);
        else if (o.kind === 'free') mb.free(BigInt(o.base), BigInt(o.size));
        else mb.markNoInit(BigInt(o.base), BigInt(o.size));
      }
      const got = new Int32Array(300).fill(-1);
      let prevEnd = -1n;
      let prevFlags = -2;
      for (const r of mb.reservedRegions()) {
        assert.ok(r.size > 0n);
        assert.ok(r.base >= prevEnd, 'sorted and disjoint');
        assert.ok(!(r.base === prevEnd && r.flags === prevFlags), 'touching regions with equal flags are merged');
        for (let i = Number(r.base); i < Number(r.base + r.size); i++) got[i] = r.flags;
        prevEnd = r.base + r.size;
        prevFlags = r.flags;
      }
      assert.deepEqual(got, model);
    }),
    { numRuns: 300 },
  );
});

test('alloc is top-down, aligned, reserves as RSRV_KERN and honours low/max', () => {
  const mb = new Memblock();
  mb.addMemory(0n, 8n * GiB);
  mb.reserve(8n * GiB - 3n * MiB, 3n * MiB); // firmware at the top
  const a = mb.alloc(MiB, 2n * MiB);
  assert.equal(a, 8n * GiB - 4n * MiB, 'highest 2 MiB-aligned fit below the reservation');
  const b = mb.alloc(0x100n, 0x1000n);
  assert.equal(b, a - 0x1000n);
  assert.ok(mb.reservedRegions().some((r) => r.base === a && r.size === MiB && r.flags === MEMBLOCK_RSRV_KERN));
  const low = mb.alloc(MiB, 2n * MiB, { low: true });
  assert.equal(low, 0xffe00000n, 'below ARCH_LOW_ADDRESS_LIMIT, top-down');
  assert.equal(mb.alloc(0n, 2n * MiB, { max: 3n * MiB }), 2n * MiB, 'size 0 returns an address and reserves nothing');
  assert.ok(!mb.isReserved(2n * MiB));
  assert.throws(() => mb.alloc(MiB, 3n), (e: unknown) => isLuoError(e, 'EINVAL'));
  assert.throws(() => mb.alloc(16n * GiB, 4096n), (e: unknown) => isLuoError(e, 'ENOMEM') && /no free 0x400000000 bytes/.test((e as Error).message));
  // The first page is never handed out.
  const tiny = new Memblock();
  tiny.addMemory(0n, 0x2000n);
  assert.equal(tiny.alloc(0x1000n, 0x1000n), 0x1000n);
  assert.throws(() => tiny.alloc(0x1000n, 0x1000n), (e: unknown) => isLuoError(e, 'ENOMEM'));
});

test('scratch-only mode: allocations land only in KHO scratch memory', () => {
  const mb = new Memblock();
  mb.addMemory(0n, 4n * GiB);
  const areas = [
    { addr: 1n * GiB, size: 64n * MiB },
    { addr: 2n * GiB, size: 16n * MiB },
  ];
  mb.markScratch(areas);
  assert.deepEqual(
    mb.memoryRegions().map((r) => [r.base, r.size, r.flags]),
    [
      [0n, GiB, 0],
      [GiB, 64n * MiB, MEMBLOCK_KHO_SCRATCH],
      [GiB + 64n * MiB, GiB - 64n * MiB, 0],
      [2n * GiB, 16n * MiB, MEMBLOCK_KHO_SCRATCH],
      [2n * GiB + 16n * MiB, 2n * GiB - 16n * MiB, 0],
    ],
  );
  mb.setScratchOnly(true);
  const inScratch = (pa: bigint, size: bigint) => areas.some((a) => pa >= a.addr && pa + size <= a.addr + a.size);
  const first = mb.alloc(4n * MiB, 4096n);
  assert.equal(first, 2n * GiB + 12n * MiB, 'top-down inside the highest scratch area');
  for (let i = 0; i < 30; i++) {
    const pa = mb.alloc(MiB, 4096n);
    assert.ok(inScratch(pa, MiB), `0x${pa.toString(16)} is in scratch`);
  }
  assert.throws(() => mb.alloc(128n * MiB, 4096n), (e: unknown) => isLuoError(e, 'ENOMEM') && /inside KHO scratch/.test((e as Error).message));
  mb.setScratchOnly(false);
  assert.equal(mb.alloc(128n * MiB, 4096n), 4n * GiB - 128n * MiB);
  // Free ranges carry the scratch flag of their memory region.
  const free = [...mb.iterateFree()];
  assert.ok(free.some((f) => f.flags & MEMBLOCK_KHO_SCRATCH));
  assert.ok(free.every((f) => f.end > f.base));
  const scratchFree = [...mb.iterateFree({ scratchOnly: true })];
  assert.ok(scratchFree.length > 0 && scratchFree.every((f) => inScratch(f.base, f.end - f.base)));
  mb.clearScratch(areas);
  assert.equal(mb.memoryRegions().length, 1);
});

test('iterateFree yields memory minus reserved, ascending', () => {
  const mb = new Memblock();
  mb.addMemory(0x1000n, 0x9e000n);
  mb.addMemory(0x100000n, 0x1000000n);
  mb.reserve(0n, 0x100000n);
  mb.reserve(0x200000n, 0x1000n);
  mb.reserve(0x1000000n, 0x200000n);
  assert.deepEqual(
    [...mb.iterateFree()].map((f) => [f.base, f.end]),
    [
      [0x100000n, 0x200000n],
      [0x201000n, 0x1000000n],
    ],
  );
  assert.equal(mb.memorySize(), 0x9e000n + 0x1000000n);
});

test('reservedKernSize clips at the limit like the kernel', () => {
  const mb = new Memblock();
  mb.addMemory(0n, 8n * GiB);
  mb.reserve(0xfff00000n, 0x200000n, MEMBLOCK_RSRV_KERN);
  mb.reserve(0x1000000n, 0x100000n); // not RSRV_KERN: never counted
  assert.equal(mb.reservedKernSize(0xffffffffn), 0xfffffn, 'size = limit - base');
  assert.equal(mb.reservedKernSize((1n << 64n) - 1n), 0x200000n);
  assert.equal(mb.reservedKernSize(0xfff00000n - 1n), 0n);
});

test('thousands of ascending reserve + markNoInit calls stay fast (KHO reserving preserved blocks)', () => {
  const mb = new Memblock();
  mb.addMemory(0n, 1n << 40n);
  for (let i = 0n; i < 50_000n; i++) {
    const base = i * 0x400000n;
    mb.reserve(base, 0x200000n);
    mb.markNoInit(base, 0x200000n);
  }
  assert.equal(mb.reservedCount, 50_000);
  assert.ok(mb.reservedRegions().every((r) => r.flags === MEMBLOCK_RSRV_NOINIT));
});

test('reserveBatch gives exactly what reserve + markNoInit per block gives', async () => {
  const fc = (await import('fast-check')).default;
  const { Memblock, MEMBLOCK_RSRV_NOINIT } = await import('../../src/machine/memblock.ts');
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.integer({ min: 0, max: 4000 }), fc.integer({ min: 1, max: 40 })), { maxLength: 60 }),
    fc.array(fc.tuple(fc.integer({ min: 0, max: 4000 }), fc.integer({ min: 1, max: 40 })), { maxLength: 10 }),
    (blocks, existing) => {
      const a = new Memblock();
      const b = new Memblock();
      for (const mb of [a, b]) {
        mb.addMemory(0n, 1n << 30n);
        for (const [p, n] of existing) mb.reserve(BigInt(p) * 4096n, BigInt(n) * 4096n);
      }
      const list = blocks.map(([p, n]) => ({ base: BigInt(p) * 4096n, size: BigInt(n) * 4096n }));
      for (const x of list) { a.reserve(x.base, x.size, MEMBLOCK_RSRV_NOINIT); }
      b.reserveBatch(list, MEMBLOCK_RSRV_NOINIT);
      const norm = (mb: InstanceType<typeof Memblock>) => mb.reservedRegions().map((r) => `${r.base}+${r.size}:${r.flags}`);
      if (JSON.stringify(norm(a)) !== JSON.stringify(norm(b))) throw new Error(`${norm(a)} != ${norm(b)}`);
    },
  ), { numRuns: 300 });
});

test('reservePageBlocks equals reserving each block, sorted or not, touching or overlapping', async () => {
  const fc = (await import('fast-check')).default;
  const { Memblock, MEMBLOCK_RSRV_NOINIT } = await import('../../src/machine/memblock.ts');
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 3 })), { maxLength: 80 }), fc.boolean(), (blocks, sort) => {
    const list = blocks.map(([p, o]) => [p * 2 ** o, o] as const);
    if (sort) list.sort((a, b) => a[0] - b[0]);
    const a = new Memblock();
    const b = new Memblock();
    for (const mb of [a, b]) { mb.addMemory(0n, 1n << 30n); mb.reserve(0x20000n, 0x3000n); }
    for (const [pfn, o] of list) a.reserve(BigInt(pfn) * 4096n, 4096n << BigInt(o), MEMBLOCK_RSRV_NOINIT);
    b.reservePageBlocks(list.map((x) => x[0]), list.map((x) => x[1]), list.length, MEMBLOCK_RSRV_NOINIT);
    const norm = (mb: InstanceType<typeof Memblock>) => JSON.stringify(mb.reservedRegions().map((r) => [String(r.base), String(r.size), r.flags]));
    if (norm(a) !== norm(b)) throw new Error(`${norm(a)} != ${norm(b)}`);
  }), { numRuns: 300 });
});
