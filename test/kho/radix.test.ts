/** The radix-tree tracker: key encoding, add/del/walk, and the real 7.3.4 kernel's tree. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { RadixTracker, decodeKey, encodeKey, leafIndex, tableIndex, walkIncomingTree } from '../../src/kho/radix.ts';
import { isLuoError } from '../../src/errno.ts';
import { BumpAllocator, FakeMemory, loadRealPages, realKernelMemory } from '../helpers/fake-machine.ts';

test('key encoding: the spec worked examples', () => {
  const k1 = encodeKey(0x1, 0); // pa 0x1000 order 0
  assert.equal(k1, 2 ** 52 + 1);
  assert.deepEqual([5, 4, 3, 2, 1].map((l) => tableIndex(k1, l)), [2, 0, 0, 0, 0]);
  assert.equal(leafIndex(k1), 1);
  const k2 = encodeKey(0x200, 9); // pa 0x200000 order 9
  assert.equal(k2, 2 ** 43 + 1);
  assert.deepEqual([5, 4, 3, 2, 1].map((l) => tableIndex(k2, l)), [0, 2, 0, 0, 0]);
  assert.equal(leafIndex(k2), 1);
});

test('key encoding round trips for every order and aligned pfn', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 2 ** 28 }), (order, idx) => {
    const pfn = idx * 2 ** order;
    fc.pre(pfn < 2 ** 40);
    assert.deepEqual(decodeKey(encodeKey(pfn, order)), { pfn, order });
  }));
});

const realWalk = readFileSync(new URL('../fixtures/real-kernel/handover-memory/walk.txt', import.meta.url), 'utf8');
const realKeys = [...realWalk.matchAll(/preserved pa=0x([0-9a-f]+) order=(\d+) key=0x([0-9a-f]+)/g)]
  .map((m) => ({ pa: BigInt('0x' + m[1]!), order: Number(m[2]), key: BigInt('0x' + m[3]!) }));

test('the real kernel tree decodes to exactly the 23 keys walk.txt lists', () => {
  assert.equal(realKeys.length, 23);
  const mem = realKernelMemory();
  const got: Array<{ pa: bigint; order: number }> = [];
  const res = walkIncomingTree(mem, 0x1ef000n, { ramPages: (1 << 30) / 4096 }, (pfn, order) => got.push({ pa: BigInt(pfn) << 12n, order }));
  assert.equal(res.nodes, 7);
  assert.deepEqual(got, realKeys.map(({ pa, order }) => ({ pa, order })));
  for (const k of realKeys) assert.equal(BigInt(encodeKey(Number(k.pa >> 12n), k.order)), k.key);
});

test('luo builds byte-identical leaves and the same table shape from the real keys', () => {
  const pages = loadRealPages();
  const realMem = realKernelMemory();
  const mem = new FakeMemory(1 << 20);
  const tracker = new RadixTracker(mem, new BumpAllocator(0x80000));
  for (const k of realKeys) tracker.add(Number(k.pa >> 12n), k.order);
  // Follow both trees level by level along the same indices.
  const realRoot = pages.find((p) => p.role === 'kho_radix_L5')!;
  const shape = (m: { page(pfn: number): Uint8Array }, pfn: number, level: number): unknown => {
    const p = m.page(pfn);
    if (level === 0) return Buffer.from(p).toString('hex');
    const dv = new DataView(p.buffer, p.byteOffset, 4096);
    const out: Record<number, unknown> = {};
    for (let i = 0; i < 512; i++) {
      const c = dv.getBigUint64(i * 8, true);
      if (c) out[i] = shape(m, Number(c >> 12n), level - 1);
    }
    return out;
  };
  assert.deepEqual(shape(mem, tracker.rootPfn, 5), shape(realMem, Number(realRoot.pa >> 12n), 5));
  assert.equal(tracker.nodeCount, 7);
  const ours: bigint[] = [];
  tracker.walk((pfn) => ours.push(BigInt(pfn) << 12n));
  assert.deepEqual(ours, realKeys.map((k) => k.pa));
});

test('random add/del sequences: walk equals a reference set, in ascending key order', () => {
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 18 }), fc.integer({ min: 0, max: 5000 })), { maxLength: 200 }),
    (ops) => {
      const mem = new FakeMemory(2 ** 40);
      const tracker = new RadixTracker(mem, new BumpAllocator(2 ** 39));
      const ref = new Map<number, { pfn: number; order: number }>();
      for (const [add, order, idx] of ops) {
        const pfn = idx * 2 ** order;
        const key = encodeKey(pfn, order);
        if (add) { tracker.add(pfn, order); ref.set(key, { pfn, order }); }
        else { assert.equal(tracker.del(pfn, order), ref.delete(key)); }
      }
      const got: Array<{ pfn: number; order: number }> = [];
      tracker.walk((pfn, order) => got.push({ pfn, order }));
      const want = [...ref.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
      assert.deepEqual(got, want);
    },
  ), { numRuns: 60 });
});

test('allocation failure part way leaves the tree as it was', () => {
  const mem = new FakeMemory(2 ** 30);
  const alloc = new BumpAllocator(0x1000, 0x1003); // root + 2 more pages only
  const tracker = new RadixTracker(mem, alloc);
  assert.throws(() => tracker.add(0x1234, 0), (e) => isLuoError(e, 'ENOMEM'));
  assert.equal(tracker.nodeCount, 1);
  assert.equal(alloc.live.size, 1);
  assert.ok(mem.page(tracker.rootPfn).every((b) => b === 0));
});

function corruptTree() {
  const mem = new FakeMemory(1 << 18);
  const tracker = new RadixTracker(mem, new BumpAllocator(0x100));
  tracker.add(0x10, 0);
  tracker.add(0x200, 9);
  return { mem, tracker };
}

test('incoming tree: pointers outside RAM, unaligned, loops and impossible orders are refused', () => {
  const ram = { ramPages: 1 << 18 };
  const cases: Array<[string, (m: FakeMemory, root: number) => void, RegExp]> = [
    ['outside RAM', (m, r) => new DataView(m.page(r).buffer).setBigUint64(2 * 8, 1n << 40n, true), /outside RAM/],
    ['unaligned', (m, r) => new DataView(m.page(r).buffer).setBigUint64(2 * 8, 0x123n, true), /unaligned/],
    ['loop to root', (m, r) => new DataView(m.page(r).buffer).setBigUint64(3 * 8, BigInt(r) << 12n, true), /second time/],
    ['negative order', (m, r) => new DataView(m.page(r).buffer).setBigUint64(9 * 8, BigInt(r + 1) << 12n, true), /negative order|second time/],
  ];
  for (const [name, mutate, re] of cases) {
    const { mem, tracker } = corruptTree();
    mutate(mem, tracker.rootPfn);
    assert.throws(() => walkIncomingTree(mem, tracker.rootPa, ram, () => {}), (e) => isLuoError(e, 'EINVAL') && re.test((e as Error).message), name);
  }
  const { mem, tracker } = corruptTree();
  assert.throws(() => walkIncomingTree(mem, tracker.rootPa, { ramPages: 0x100 }, () => {}), /outside RAM/);
  assert.throws(
    () => walkIncomingTree(mem, tracker.rootPa, { ...ram, forbidden: [{ startPfn: 0x200, endPfn: 0x400, what: 'scratch area 1' }] }, () => {}),
    /overlaps scratch area 1/,
  );
  assert.deepEqual(walkIncomingTree(mem, tracker.rootPa, ram, () => {}), { nodes: 11, blocks: 2 });
});
