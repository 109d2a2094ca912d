/** Linked-block sets: grow/shrink, iterators, and every way an incoming chain can be corrupt. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Machine } from '../../src/kernel/machine.ts';
import { BlockSet } from '../../src/luo/blocks.ts';
import { isLuoError } from '../../src/errno.ts';
import { KHO_MAX_BLOCKS } from '../../src/abi/luo.ts';

const GiB = 1n << 30n;

function setup(entrySize = 80) {
  const m = new Machine({ ramSize: GiB, cmdline: 'kho=on' });
  const kho = m.kernel.kho!;
  return { m, kho, bs: new BlockSet(kho, m.memory, entrySize) };
}

test('capacities: 51 sessions or 63 files per block', () => {
  assert.equal(setup(80).bs.countPerBlock, 51);
  assert.equal(setup(64).bs.countPerBlock, 63);
});

test('grow ahead of need, shrink from the end, preserved pages accounted exactly', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 20 }), (counts) => {
    const { kho, bs } = setup(80);
    const base = kho.preservedPages;
    let n = 0;
    for (const c of counts) {
      if (c >= n) bs.grow(c);
      else bs.shrink(c);
      n = c;
      const want = Math.ceil(n / 51);
      // grow only adds; shrink drops to ceil(count / 51)
      assert.ok(bs.nblocks >= want);
      if (c < n || bs.nblocks > want) { /* after a grow to a smaller count nothing is freed */ }
      assert.equal(kho.preservedPages, base + bs.nblocks);
    }
    bs.shrink(0);
    assert.equal(bs.nblocks, 0);
    assert.equal(bs.headPa, 0n);
    assert.equal(kho.preservedPages, base);
  }), { numRuns: 40 });
});

test('iterators: reserve fills blocks in order, read respects counts, prev steps back', () => {
  const { m, bs } = setup(80);
  bs.grow(120);
  const it = bs.iterator();
  for (let i = 0; i < 120; i++) {
    const s = it.reserveEntry()!;
    m.memory.writeU32(BigInt(s.pa), i);
  }
  assert.ok(it.reserveEntry(), 'three blocks hold 153 entries');
  for (let i = 120; i < 153 - 1; i++) it.reserveEntry();
  assert.equal(it.reserveEntry(), undefined, 'full');
  const back = it.prev()!;
  assert.equal(back.offset, 16 + 50 * 80);
  bs.clear();
  for (const pa of bs.blockAddresses()) {
    assert.equal(m.memory.readU64(pa + 8n), 0n, 'cleared blocks have count 0');
    assert.ok(m.memory.read(pa + 16n, 4080).every((b) => b === 0), 'and zeroed entries');
  }
  bs.shrink(60);
  assert.equal(bs.nblocks, 2);
  const w = bs.iterator();
  for (let i = 0; i < 60; i++) m.memory.writeU32(w.reserveEntry()!.pa, 1000 + i);
  const rd = bs.iterator();
  const seen: number[] = [];
  for (let s = rd.readEntry(); s; s = rd.readEntry()) seen.push(m.memory.readU32(s.pa));
  assert.deepEqual(seen, Array.from({ length: 60 }, (_, i) => 1000 + i));
});

test('the 10 000-block cap: ENOSPC and nothing changes', () => {
  const { kho, bs } = setup(4080); // one entry per block keeps the test small
  assert.equal(bs.countPerBlock, 1);
  bs.grow(KHO_MAX_BLOCKS);
  const pages = kho.preservedPages;
  assert.throws(() => bs.grow(KHO_MAX_BLOCKS + 5), (e) => isLuoError(e, 'ENOSPC'));
  assert.equal(bs.nblocks, KHO_MAX_BLOCKS);
  assert.equal(kho.preservedPages, pages);
});

/** Writes a raw chain of `counts.length` blocks in fresh pages and returns their addresses. */
function rawChain(m: Machine, counts: number[], link = (i: number, pas: bigint[]) => pas[i + 1] ?? 0n): bigint[] {
  const pas = counts.map(() => BigInt(m.kernel.alloc.allocFolio(0)) << 12n);
  counts.forEach((c, i) => {
    m.memory.writeU64(pas[i]!, link(i, pas));
    m.memory.writeU64(pas[i]! + 8n, BigInt(c));
  });
  return pas;
}

test('restore refuses corrupt chains with the kernel errno, naming the problem', () => {
  const cases: Array<[string, number[], ((i: number, p: bigint[]) => bigint) | undefined, 'EINVAL' | 'ENOSPC', RegExp]> = [
    ['a count of 0 (the 7.3.4 defect)', [51, 0], undefined, 'EINVAL', /invalid entry count: 0 \(an empty block/],
    ['a count above capacity', [52], undefined, 'EINVAL', /invalid entry count: 52/],
    ['a cycle', [1, 1, 1, 1], (i, p) => p[(i + 1) % 4]!, 'EINVAL', /loops back|corrupted/],
    ['a self loop', [1], (_i, p) => p[0]!, 'EINVAL', /loops back|corrupted/],
    ['a pointer outside RAM', [1, 1], (i) => (i === 0 ? 1n << 40n : 0n), 'EINVAL', /not a page inside RAM/],
    ['an unaligned pointer', [1, 1], (i, p) => (i === 0 ? p[1]! + 8n : 0n), 'EINVAL', /not a page inside RAM/],
  ];
  for (const [name, counts, link, errno, re] of cases) {
    const { m, kho } = setup(80);
    const pas = rawChain(m, counts, link);
    const bs = new BlockSet(kho, m.memory, 80);
    assert.throws(() => bs.restore(pas[0]!, m.memory.nrPages), (e) => isLuoError(e, errno) && re.test((e as Error).message), name);
    assert.equal(bs.nblocks, 0, name);
  }
});

test('more than 10 000 blocks is refused (the kernel fails with ENOSPC past the cycle check)', () => {
  const { m, kho } = setup(80);
  const pas = rawChain(m, new Array(KHO_MAX_BLOCKS + 1).fill(1));
  const bs = new BlockSet(kho, m.memory, 80);
  assert.throws(() => bs.restore(pas[0]!, m.memory.nrPages), (e) => isLuoError(e, 'ENOSPC'));
  const long = rawChain(m, new Array(2 * KHO_MAX_BLOCKS + 2).fill(1));
  assert.throws(() => new BlockSet(kho, m.memory, 80).restore(long[0]!, m.memory.nrPages), (e) => isLuoError(e, 'EINVAL') && /corrupted/.test((e as Error).message));
  const ok = rawChain(m, new Array(KHO_MAX_BLOCKS).fill(1));
  const good = new BlockSet(kho, m.memory, 80);
  good.restore(ok[0]!, m.memory.nrPages);
  assert.equal(good.nblocks, KHO_MAX_BLOCKS);
  assert.equal(good.entryCount(), KHO_MAX_BLOCKS);
});
