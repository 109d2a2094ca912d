/** memfd-v2 under failure: every preserve step failing unwinds completely; corrupt hand-overs are clean errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LuoError, isLuoError } from '../../src/errno.ts';
import type { Kho } from '../../src/kho/kho.ts';
import type { KhoAllocator } from '../../src/kho/memory.ts';
import { MemfdLuoSer } from '../../src/abi/luo.ts';
import {
  F_SEAL_GROW,
  MFD_ALLOW_SEALING,
  type MemfdContext,
  type MemfdFile,
  type MemfdSer,
  createMemfdHandler,
  decodeMemfdSer,
  encodeMemfdSer,
  memfdCreate,
} from '../../src/handlers/index.ts';
import { PG, boot, dec, newArgs, pattern, preserveAndKexec, retrieve, throwsErrno, viewOf } from './helpers.ts';

/** Wraps `target` so that the `nth` call (1-based) of `method` throws ENOMEM. */
function failOn<T extends object>(target: T, method: string, nth: number): T {
  let calls = 0;
  return new Proxy(target, {
    get(t, p) {
      const v = Reflect.get(t, p, t) as unknown;
      if (typeof v !== 'function') return v;
      return (...a: unknown[]) => {
        if (p === method && ++calls === nth) throw new LuoError('ENOMEM', `injected failure of ${method} call ${nth}`);
        return (v as (...x: unknown[]) => unknown).apply(t, a);
      };
    },
  });
}

/** A memfd with written pages, holes and a fallocated page: 8 pages, 4 of them holes. */
function holey(c: MemfdContext): MemfdFile {
  const f = memfdCreate(c, 'holey', MFD_ALLOW_SEALING);
  f.pwrite(new Uint8Array(PG).fill(0x41), 0);
  f.pwrite(new Uint8Array(PG).fill(0x44), 3 * PG);
  f.pwrite(new Uint8Array(PG).fill(0x46), 5 * PG);
  f.fallocate(6 * PG, PG);
  f.ftruncate(8 * PG - 5);
  f.lseek(77, 0);
  f.addSeals(F_SEAL_GROW);
  return f;
}

test('fault injection: a failure at any preserve step leaves KHO and the allocator as before (holes the pin step filled stay cached, as in the kernel)', () => {
  const { m, k, c } = boot();
  const kho = k.kho!;
  // The memfd's page-cache allocations go through this switchable allocator.
  let failPage = 0;
  let pageCalls = 0;
  const memfdAlloc: KhoAllocator = {
    allocFolio: (o) => {
      if (++pageCalls === failPage) throw new LuoError('ENOMEM', `injected failure of page allocation ${failPage}`);
      return c.alloc.allocFolio(o);
    },
    freeFolio: (p, o) => c.alloc.freeFolio(p, o),
  };
  const mc: MemfdContext = { ...c, alloc: memfdAlloc };
  const plans: Array<{ name: string; kho?: [string, number]; alloc?: number; page?: number; filled: number }> = [
    { name: 'kho_alloc_preserve', kho: ['allocPreserve', 1], filled: 0 },
    { name: 'pinning hole 1', page: 1, filled: 0 },
    { name: 'pinning hole 3', page: 3, filled: 2 },
    { name: 'vcalloc of the folio array', alloc: 1, filled: 4 },
    { name: 'kho_preserve_folio of folio 1', kho: ['preserveFolio', 1], filled: 4 },
    { name: 'kho_preserve_folio of folio 5', kho: ['preserveFolio', 5], filled: 4 },
    { name: 'kho_preserve_folio of the last folio', kho: ['preserveFolio', 8], filled: 4 },
    { name: 'kho_preserve_vmalloc', kho: ['preserveVmalloc', 1], filled: 4 },
  ];
  for (const plan of plans) {
    const f = holey(mc);
    const before = viewOf(f);
    const pages = kho.preservedPages;
    const blocks = kho.preservedBlocks;
    const allocated = k.alloc.stats().allocatedPages;
    const cached = f.inode.cachedPages;
    const h = createMemfdHandler({
      kho: plan.kho ? failOn(kho, plan.kho[0], plan.kho[1]) : kho,
      mem: m.memory,
      alloc: plan.alloc ? failOn(k.alloc as KhoAllocator, 'allocFolio', plan.alloc) : k.alloc,
      memfd: mc,
    });
    pageCalls = 0;
    failPage = plan.page ?? 0;
    const a = newArgs(h, f);
    assert.throws(() => h.ops.preserve(a), (e: unknown) => isLuoError(e, 'ENOMEM') && /injected/.test((e as Error).message), plan.name);
    failPage = 0;
    assert.equal(a.serializedData, 0n, `${plan.name}: no serialized data`);
    assert.equal(kho.preservedPages, pages, `${plan.name}: preserved pages`);
    assert.equal(kho.preservedBlocks, blocks, `${plan.name}: preserved blocks`);
    assert.equal(f.inode.cachedPages - cached, plan.filled, `${plan.name}: holes filled before the failure`);
    assert.equal(k.alloc.stats().allocatedPages, allocated + plan.filled, `${plan.name}: allocated pages`);
    assert.equal(f.inode.frozen, false, `${plan.name}: unfrozen`);
    assert.ok(f.inode.folios().every((x) => x.pins === 0), `${plan.name}: unpinned`);
    const after = viewOf(f);
    assert.deepEqual([after.size, after.pos, after.seals], [before.size, before.pos, before.seals]);
    assert.ok(Buffer.from(after.bytes).equals(Buffer.from(before.bytes)), `${plan.name}: contents`);
    assert.equal(f.pwrite(new Uint8Array(10), 8 * PG - 15), 10, 'still writable');
    // A healthy handler then preserves the same file, and unpreserve undoes that too.
    const good = createMemfdHandler({ kho, mem: m.memory, alloc: k.alloc, memfd: mc });
    const b = newArgs(good, f);
    good.ops.preserve(b);
    good.ops.unpreserve(b);
    assert.equal(kho.preservedPages, pages);
    f.close();
  }
});

test('fault injection: a folio array of two pages failing at its second page', () => {
  const { m, k, c } = boot();
  const f = memfdCreate(c, 'two-pages', 0);
  f.write(pattern(9, 300 * PG));
  const pages = k.kho!.preservedPages;
  const allocated = k.alloc.stats().allocatedPages;
  const h = createMemfdHandler({ kho: k.kho!, mem: m.memory, alloc: failOn(k.alloc as KhoAllocator, 'allocFolio', 2), memfd: c });
  throwsErrno(() => h.ops.preserve(newArgs(h, f)), 'ENOMEM');
  assert.equal(k.kho!.preservedPages, pages);
  assert.equal(k.alloc.stats().allocatedPages, allocated);
});

// ---------------------------------------------------------------- corrupt hand-overs

interface Incoming {
  m: ReturnType<typeof boot>['m'];
  k: ReturnType<typeof preserveAndKexec>['k'];
  h: ReturnType<typeof preserveAndKexec>['h'];
  pa: bigint;
  ser: MemfdSer;
  arrayPa: bigint;
}

/** A 4-page memfd preserved and kexec'd, ready to be corrupted before retrieve. */
function incoming(): Incoming {
  const { m, c, h } = boot();
  const f = memfdCreate(c, 'victim', 0);
  for (let i = 0; i < 4; i++) f.pwrite(new Uint8Array(PG).fill(0x61 + i), i * PG);
  const next = preserveAndKexec(m, h, [f]);
  const pa = next.data[0]!;
  const ser = decodeMemfdSer(m.memory.read(pa, MemfdLuoSer.size));
  const arrayPa = m.memory.readU64(ser.folios.first + 8n);
  return { m, k: next.k, h: next.h, pa, ser, arrayPa };
}

const writeSer = (x: Incoming, s: MemfdSer): void => x.m.memory.write(x.pa, encodeMemfdSer(s));
const entryPa = (x: Incoming, i: number): bigint => x.arrayPa + BigInt(i * 16);

function expectRetrieveError(x: Incoming, errno: LuoError['errno'], re: RegExp): void {
  assert.throws(() => x.h.ops.retrieve(newArgs(x.h, undefined, x.pa)), (e: unknown) => {
    if (!(e instanceof LuoError)) throw e;
    assert.equal(e.errno, errno, e.message);
    assert.match(e.message, re);
    return true;
  });
}

test('corrupt memfd_luo_ser: nr_folios, the folios descriptor and the seals are checked before anything is restored', () => {
  const cases: Array<{ name: string; edit: (s: MemfdSer, x: Incoming) => void; errno: LuoError['errno']; re: RegExp }> = [
    { name: 'nr_folios beyond the file', edit: (s) => { s.nr_folios = 5n; }, errno: 'EINVAL', re: /nr_folios 5 is more than the 4 page/ },
    { name: 'nr_folios huge', edit: (s) => { s.nr_folios = 1n << 62n; }, errno: 'EINVAL', re: /nr_folios/ },
    { name: 'array too small for nr_folios', edit: (s) => { s.size = 1n << 30n; s.nr_folios = 300n; }, errno: 'EINVAL', re: /nr_folios 300 needs 4800 bytes, the array has 1 page/ },
    { name: 'folios.first unaligned', edit: (s) => { s.folios.first += 8n; }, errno: 'EINVAL', re: /chunk 0x[0-9a-f]+ is not a page inside RAM/ },
    { name: 'folios.first outside RAM', edit: (s) => { s.folios.first = 1n << 40n; }, errno: 'EINVAL', re: /not a page inside RAM/ },
    { name: 'folios.first zero', edit: (s) => { s.folios.first = 0n; }, errno: 'EINVAL', re: /chunks list 0 page/ },
    { name: 'total_pages wrong', edit: (s) => { s.folios.total_pages = 2; }, errno: 'EINVAL', re: /chunks list 1 page/ },
    { name: 'unknown kho_vmalloc flags', edit: (s) => { s.folios.flags = 0x10; }, errno: 'EINVAL', re: /flags 0x10/ },
    { name: 'chunk list loops', edit: (_s, x) => x.m.memory.writeU64(x.ser.folios.first, x.ser.folios.first), errno: 'EINVAL', re: /loops back/ },
    { name: 'run outside RAM', edit: (_s, x) => x.m.memory.writeU64(x.ser.folios.first + 8n, 1n << 40n), errno: 'EINVAL', re: /run 0x10000000000/ },
    { name: 'seals memfd-v2 does not know', edit: (s) => { s.seals = 0x41; }, errno: 'EOPNOTSUPP', re: /seals 0x41/ },
    { name: 'size beyond any file', edit: (s) => { s.size = 1n << 63n; }, errno: 'EINVAL', re: /size/ },
  ];
  for (const c of cases) {
    const x = incoming();
    const s = structuredClone(x.ser);
    c.edit(s, x);
    writeSer(x, s);
    const blocks = x.k.kho!.unrestoredBlocks;
    const allocated = x.k.alloc.stats().allocatedPages;
    expectRetrieveError(x, c.errno, c.re);
    assert.equal(x.k.kho!.unrestoredBlocks, blocks - 1, `${c.name}: only the descriptor was given back; the folios stay reserved, as in the kernel`);
    assert.equal(x.k.alloc.stats().allocatedPages, allocated, `${c.name}: nothing allocated is left over`);
    // The failed retrieve stays failed: finish with a negative status does nothing more.
    const f = newArgs(x.h, undefined, x.pa);
    f.retrieveStatus = -22;
    x.h.ops.finish(f);
    assert.equal(x.k.kho!.unrestoredBlocks, blocks - 1);
  }
});

test('corrupt folio entries: pfn outside RAM, unpreserved pfn, index beyond the size, duplicates; every restorable folio is given back', () => {
  const cases: Array<{ name: string; edit: (x: Incoming) => void; errno: LuoError['errno']; re: RegExp; lost: number }> = [
    { name: 'pfn outside RAM', edit: (x) => x.m.memory.writeU64(entryPa(x, 2), (3n << 52n) | (1n << 40n)), errno: 'EIO', re: /folio\[2\] \(array offset 32\): pfn 0x10000000000 lies outside RAM/, lost: 1 },
    { name: 'pfn never preserved', edit: (x) => x.m.memory.writeU64(entryPa(x, 1), (3n << 52n) | 0x1000n), errno: 'EIO', re: /folio\[1\]: Unable to restore folio at physical address: 0x1000000/, lost: 1 },
    { name: 'index beyond the size', edit: (x) => x.m.memory.writeU64(entryPa(x, 3) + 8n, 4n), errno: 'EINVAL', re: /folio\[3\].*page index 4 lies beyond the file's 4 page/, lost: 0 },
    { name: 'index listed twice', edit: (x) => x.m.memory.writeU64(entryPa(x, 3) + 8n, 1n), errno: 'EEXIST', re: /page index 1 is listed twice/, lost: 0 },
    { name: 'pfn listed twice', edit: (x) => x.m.memory.writeU64(entryPa(x, 3), x.m.memory.readU64(entryPa(x, 0))), errno: 'EIO', re: /is listed twice/, lost: 1 },
    // an index no number holds exactly: named exactly
    { name: 'index of 2^60 + 1', edit: (x) => x.m.memory.writeU64(entryPa(x, 2) + 8n, (1n << 60n) + 1n), errno: 'EINVAL', re: /folio\[2\].*page index 1152921504606846977 lies beyond/, lost: 0 },
    // two problems: the first in array order is the one reported
    {
      name: 'index twice at 1, beyond at 3',
      edit: (x) => {
        x.m.memory.writeU64(entryPa(x, 1) + 8n, 0n);
        x.m.memory.writeU64(entryPa(x, 3) + 8n, 9n);
      },
      errno: 'EEXIST', re: /folio\[1\].*page index 0 is listed twice/, lost: 0,
    },
  ];
  for (const c of cases) {
    const x = incoming();
    c.edit(x);
    const blocks = x.k.kho!.unrestoredBlocks;
    const free = x.k.alloc.freePagesCount();
    const allocated = x.k.alloc.stats().allocatedPages;
    expectRetrieveError(x, c.errno, c.re);
    // Gone: the descriptor, the array page and its chunk, and every folio that could be restored.
    assert.equal(x.k.kho!.unrestoredBlocks, blocks - 7 + c.lost, `${c.name}: unrestored blocks`);
    assert.equal(x.k.alloc.freePagesCount(), free + 7 - c.lost, `${c.name}: free pages`);
    assert.equal(x.k.alloc.stats().allocatedPages, allocated, `${c.name}: nothing stays allocated`);
  }
});

test('corrupt serialized data: zero, unaligned or outside RAM', () => {
  const x = incoming();
  for (const [data, re] of [[0n, /serialized data is 0/], [x.pa + 8n, /not a page inside RAM/], [1n << 40n, /not a page inside RAM/]] as const) {
    assert.throws(() => x.h.ops.retrieve(newArgs(x.h, undefined, data)), (e: unknown) => isLuoError(e, 'EINVAL') && re.test((e as Error).message));
    x.h.ops.finish(newArgs(x.h, undefined, data));
  }
  // The real one still works after all that.
  const f = retrieve(x.h, x.pa);
  assert.equal(dec(f.pread(3, 2 * PG)), 'ccc');
});

test('property: random damage to the descriptor or the folio array gives a LuoError or a sane file, never a crash or a leak', () => {
  fc.assert(fc.property(
    fc.array(fc.record({ where: fc.constantFrom('ser', 'array', 'chunk'), off: fc.nat({ max: 63 }), byte: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 4 }),
    (edits) => {
      const x = incoming();
      for (const e of edits) {
        const base = e.where === 'ser' ? x.pa + BigInt(e.off % 48) : e.where === 'array' ? x.arrayPa + BigInt(e.off) : x.ser.folios.first + BigInt(e.off % 24);
        x.m.memory.write(base, Uint8Array.of(e.byte));
      }
      const allocated = x.k.alloc.stats().allocatedPages;
      const a = newArgs(x.h, undefined, x.pa);
      try {
        x.h.ops.retrieve(a);
      } catch (err) {
        if (!(err instanceof LuoError)) throw err;
        assert.equal(x.k.alloc.stats().allocatedPages, allocated, `after ${err.message}`);
        return;
      }
      const f = a.file as MemfdFile;
      assert.ok(f.stat().size >= 0);
      f.pread(1 << 20, 0);
      f.close();
    },
  ), { numRuns: 60 });
});
