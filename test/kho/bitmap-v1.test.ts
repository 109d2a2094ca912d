/** kho-v1 bitmap chunks: hand-checked bytes, re-entrant serialization, and corrupt chunk lists. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { BitmapTracker, walkIncomingChunks } from '../../src/kho/bitmap-v1.ts';
import { buildRootFdt, addSubtreeNode, setMemoryMap } from '../../src/kho/root-fdt.ts';
import { isLuoError } from '../../src/errno.ts';
import { BumpAllocator, FakeMemory } from '../helpers/fake-machine.ts';

const u64 = (p: Uint8Array, off: number) => new DataView(p.buffer, p.byteOffset).getBigUint64(off, true);
const u32 = (p: Uint8Array, off: number) => new DataView(p.buffer, p.byteOffset).getUint32(off, true);

test('golden chunk bytes: one chunk per order, {phys_start, bitmap} elements, bits at (pa - start) >> (order + 12)', () => {
  const mem = new FakeMemory(1 << 22);
  const alloc = new BumpAllocator(0x100000);
  const t = new BitmapTracker(mem, alloc);
  t.add(0x10, 0); // pa 0x10000, order 0: bitmap 0, bit 16
  t.add(0x8000 + 3, 0); // pa 0x8003000: bitmap 1 (32768 pages each), bit 3
  t.add(0x400, 9); // pa 0x400000 order 9: pfn >> 9 = 2 -> bitmap 0, bit 2
  const first = t.serialize();
  const c0 = mem.page(Number(first >> 12n));
  // chunk 0: order 0, two elements
  assert.equal(u32(c0, 8), 0, 'order');
  assert.equal(u32(c0, 12), 2, 'num_elms');
  assert.equal(u64(c0, 16), 0n, 'elm 0 phys_start');
  assert.equal(u64(c0, 32), 0x8000000n, 'elm 1 phys_start = 32768 << 12');
  const bmp0 = mem.page(Number(u64(c0, 24) >> 12n));
  assert.equal(bmp0[2], 0x01, 'bit 16 is byte 2 bit 0');
  const bmp1 = mem.page(Number(u64(c0, 40) >> 12n));
  assert.equal(bmp1[0], 0x08, 'bit 3');
  // chunk 1: order 9, one element
  const c1 = mem.page(Number(u64(c0, 0) >> 12n));
  assert.deepEqual([u32(c1, 8), u32(c1, 12), u64(c1, 16)], [9, 1, 0n]);
  assert.equal(mem.page(Number(u64(c1, 24) >> 12n))[0], 0x04, 'bit 2');
  assert.equal(u64(c1, 0), 0n, 'end of list');
  const got: Array<[number, number]> = [];
  walkIncomingChunks(mem, first, { ramPages: 1 << 22 }, (pfn, order) => got.push([pfn, order]));
  assert.deepEqual(got, [[0x10, 0], [0x8003, 0], [0x400, 9]]);
  // Re-entrant: a second serialize frees the old chunks and writes fresh ones.
  const live = alloc.live.size;
  t.del(0x10, 0);
  const again = t.serialize();
  assert.equal(alloc.live.size, live, 'the old chunks were given back');
  const got2: number[] = [];
  walkIncomingChunks(mem, again, { ramPages: 1 << 22 }, (pfn) => got2.push(pfn));
  assert.deepEqual(got2, [0x8003, 0x400]);
});

test('a chunk fills at 255 elements and the next one continues the same order', () => {
  const mem = new FakeMemory(1 << 30);
  const t = new BitmapTracker(mem, new BumpAllocator(1 << 29));
  for (let i = 0; i < 300; i++) t.add(i * 32768, 0); // one bit in each of 300 bitmaps
  const first = t.serialize();
  const c0 = mem.page(Number(first >> 12n));
  assert.equal(u32(c0, 12), 255);
  const c1 = mem.page(Number(u64(c0, 0) >> 12n));
  assert.deepEqual([u32(c1, 8), u32(c1, 12)], [0, 45]);
});

test('incoming chunk lists: cycles, bad pointers, counts and orders are refused', () => {
  const build = () => {
    const mem = new FakeMemory(1 << 20);
    const t = new BitmapTracker(mem, new BumpAllocator(0x80000));
    t.add(0x10, 0);
    t.add(0x400, 9);
    return { mem, first: t.serialize() };
  };
  const cases: Array<[string, (mem: FakeMemory, first: bigint) => void, RegExp]> = [
    ['cycle', (m, f) => { const c1 = u64(m.page(Number(f >> 12n)), 0); new DataView(m.page(Number(c1 >> 12n)).buffer).setBigUint64(0, f, true); }, /cycle/],
    ['next outside RAM', (m, f) => new DataView(m.page(Number(f >> 12n)).buffer).setBigUint64(0, 1n << 40n, true), /outside RAM/],
    ['too many elements', (m, f) => new DataView(m.page(Number(f >> 12n)).buffer).setUint32(12, 256, true), /claims 256 elements/],
    ['impossible order', (m, f) => new DataView(m.page(Number(f >> 12n)).buffer).setUint32(8, 60, true), /impossible order/],
    ['unaligned phys_start', (m, f) => new DataView(m.page(Number(f >> 12n)).buffer).setBigUint64(16, 0x1000n, true), /not a multiple/],
    ['bitmap outside RAM', (m, f) => new DataView(m.page(Number(f >> 12n)).buffer).setBigUint64(24, 1n << 41n, true), /outside RAM/],
  ];
  for (const [name, corrupt, re] of cases) {
    const { mem, first } = build();
    corrupt(mem, first);
    assert.throws(() => walkIncomingChunks(mem, first, { ramPages: 1 << 20 }, () => {}), (e) => isLuoError(e, 'EINVAL') && re.test((e as Error).message), name);
  }
});

test('kho-v1 root FDT: "kho-v1", preserved-memory-map updated in place, "fdt" subnode property; dtc agrees', () => {
  const page = new Uint8Array(4096);
  buildRootFdt(page, 'kho-v1', 0n);
  addSubtreeNode(page, 'kho-v1', 'memblock', 0x7000n, 4096);
  setMemoryMap(page, 0x123000n);
  const dir = mkdtempSync(join(tmpdir(), 'luo-v1-'));
  const total = new DataView(page.buffer).getUint32(4, false);
  writeFileSync(join(dir, 'r.dtb'), page.subarray(0, total));
  const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', join(dir, 'r.dtb')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /compatible = "kho-v1";/);
  assert.match(r.stdout, /preserved-memory-map = <0x301200 0x00>;/, 'native little-endian u64 0x123000');
  assert.match(r.stdout, /memblock \{\s+fdt = <0x700000 0x00>;\s+\};/);
});
