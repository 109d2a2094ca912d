/** The KHO root FDT: the kernel's libfdt call sequences reproduce the real 7.3.4 page byte for byte. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { addSubtreeNode, buildRootFdt, readIncomingRoot, removeSubtreeNode, setMemoryMap, subtreeOf } from '../../src/kho/root-fdt.ts';
import { isLuoError } from '../../src/errno.ts';

const fixture = (p: string) => new Uint8Array(readFileSync(new URL(`../fixtures/real-kernel/handover-memory/${p}`, import.meta.url)));

test('boot-time root + kexec-metadata + LUO equals the real kernel page, all 4096 bytes', () => {
  const page = new Uint8Array(4096);
  buildRootFdt(page, 'kho-v4', 0x1ef000n);
  addSubtreeNode(page, 'kho-v4', 'kexec-metadata', 0x1f7000n, 73);
  // At this point the real debugfs out/fdt (233 bytes) was captured.
  const totalAtInit = new DataView(page.buffer).getUint32(4, false);
  assert.equal(totalAtInit, 233);
  addSubtreeNode(page, 'kho-v4', 'LUO', 0x3ac000n, 32);
  const real = fixture('pages/kho_fdt@0x1f0000.bin');
  assert.deepEqual(Buffer.from(page), Buffer.from(real));
  assert.deepEqual(Buffer.from(page.subarray(0, 285)), Buffer.from(fixture('kho-fdt-at-kexec.dtb')));
});

test('incoming root: compat, memory map, subtrees and their errors', () => {
  const real = fixture('pages/kho_fdt@0x1f0000.bin');
  const root = readIncomingRoot(real, 'kho-v4');
  assert.equal(root.memMapPa, 0x1ef000n);
  assert.deepEqual(root.subtreeNames, ['LUO', 'kexec-metadata']); // libfdt puts a new subnode first
  assert.deepEqual(subtreeOf(root, 'LUO', 'kho-v4'), { pa: 0x3ac000n, size: 32 });
  assert.throws(() => subtreeOf(root, 'nope', 'kho-v4'), (e) => isLuoError(e, 'ENOENT'));
  assert.throws(() => readIncomingRoot(real, 'kho-v1'), (e) => isLuoError(e, 'EINVAL') && /incompatible with 'kho-v1'/.test((e as Error).message));
  const zeroMap = new Uint8Array(4096);
  buildRootFdt(zeroMap, 'kho-v4', 0n);
  assert.throws(() => readIncomingRoot(zeroMap, 'kho-v4'), /preserved-memory-map is 0/);
  const garbage = real.slice();
  garbage[0] = 0;
  assert.throws(() => readIncomingRoot(garbage, 'kho-v4'), /handover FDT is invalid/);
});

test('duplicate subtree is EEXIST and leaves the root unchanged; remove by address', () => {
  const page = new Uint8Array(4096);
  buildRootFdt(page, 'kho-v4', 0x1000n);
  addSubtreeNode(page, 'kho-v4', 'a', 0x5000n, 10);
  const before = page.slice();
  assert.throws(() => addSubtreeNode(page, 'kho-v4', 'a', 0x6000n, 10), (e) => isLuoError(e, 'EEXIST'));
  assert.deepEqual(page, before);
  addSubtreeNode(page, 'kho-v4', 'b', 0x6000n, 20);
  removeSubtreeNode(page, 'kho-v4', 0x5000n);
  const root = readIncomingRoot(page, 'kho-v4');
  assert.deepEqual(root.subtreeNames, ['b']);
});

test('kho-v1: "fdt" property and in-place memory-map update', () => {
  const page = new Uint8Array(4096);
  buildRootFdt(page, 'kho-v1', 0n);
  addSubtreeNode(page, 'kho-v1', 'memblock', 0x7000n, 4096);
  setMemoryMap(page, 0x9000n);
  const root = readIncomingRoot(page, 'kho-v1');
  assert.equal(root.memMapPa, 0x9000n);
  assert.deepEqual(subtreeOf(root, 'memblock', 'kho-v1'), { pa: 0x7000n, size: 4096 });
});

test('the root page fills up: ENOMEM, and what was there survives', () => {
  const page = new Uint8Array(4096);
  buildRootFdt(page, 'kho-v4', 0x1000n);
  let n = 0;
  try {
    for (;; n++) addSubtreeNode(page, 'kho-v4', `subtree-with-a-long-name-${n}`, BigInt(0x10000 + n * 0x1000), 8);
  } catch (e) {
    assert.ok(isLuoError(e, 'ENOMEM'), String(e));
  }
  assert.ok(n > 20);
  const root = readIncomingRoot(page, 'kho-v4');
  assert.equal(root.subtreeNames.length, n);
});
