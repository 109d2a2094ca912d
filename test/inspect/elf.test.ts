/**
 * The ELF64 core reader's layouts: PN_XNUM program header counts, p_memsz beyond p_filesz read
 * as zeros, vmcore kernel-text aliases, segments in any order; and the root FDT scan choosing the
 * live root over a stale copy; a flat raw memory file (--kind raw).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openElfCore } from '../../src/inspect/elf.ts';
import { inspectInput, inspectPath } from '../../src/inspect/inspect.ts';
import { Problems, isFault } from '../../src/inspect/report.ts';
import { memInput, realPages, tmp, writeElfCore } from './helpers.ts';

const segs = () => [...realPages()].map(([pa, bytes]) => ({ pa, bytes }));

test('PN_XNUM: the program header count comes from section header 0', () => {
  const e = writeElfCore(segs());
  const dv = new DataView(e.buffer);
  const n = dv.getUint16(56, true);
  const out = new Uint8Array(e.length + 64);
  out.set(e);
  const ov = new DataView(out.buffer);
  ov.setUint16(56, 0xffff, true);
  ov.setBigUint64(40, BigInt(e.length), true); // e_shoff
  ov.setUint16(58, 64, true);
  ov.setUint16(60, 1, true);
  ov.setUint32(e.length + 44, n, true); // sh_info
  const p = new Problems();
  const core = openElfCore(out, p);
  assert.deepEqual(p.list, []);
  assert.equal(core.loads.length, n - 1);
  const r = inspectInput({ kind: 'elf', path: 'x', view: core.view, close: core.close }, {}, p);
  assert.deepEqual(r.problems.filter(isFault), []);
  assert.equal(r.sessions.length, 3);
});

test('p_memsz beyond p_filesz reads as zeros; a truncated PN_XNUM section header is an error', () => {
  const e = writeElfCore([{ pa: 0x10000n, bytes: new Uint8Array(4096).fill(9) }]);
  const dv = new DataView(e.buffer);
  dv.setBigUint64(64 + 56 + 40, 3n * 4096n, true); // p_memsz of the PT_LOAD
  const core = openElfCore(e, new Problems());
  assert.deepEqual(core.view.read(0x10ff0n, 32), Uint8Array.from([...new Array(16).fill(9), ...new Array(16).fill(0)]));
  assert.deepEqual(core.view.ranges(), [{ start: 0x10000n, end: 0x13000n }]);
  assert.throws(() => core.view.read(0x13000n, 1), /outside the memory view/);
  dv.setUint16(56, 0xffff, true);
  const p = new Problems();
  openElfCore(e, p);
  assert.match(p.list[0]!.message, /PN_XNUM but section header 0 at 0x0/);
});

test('a stale copy of the root FDT below the live one: the scan uses the root its tracker preserves', () => {
  const pages = realPages();
  pages.set(0x100000n, pages.get(0x1f0000n)!.slice());
  const r = inspectInput(memInput(pages), {});
  assert.equal(r.root!.pa, 0x1f0000n);
  assert.ok(r.problems.some((p) => /2 KHO root FDT candidates \(0x100000, 0x1f0000\); using 0x1f0000/.test(p.message)));
  assert.deepEqual(r.problems.filter(isFault), []);
});

test('an FDT at an unaligned address is found by the 8-byte pass', () => {
  const pages = realPages();
  const fdt = pages.get(0x1f0000n)!;
  pages.delete(0x1f0000n);
  const moved = new Uint8Array(8192);
  moved.set(fdt.subarray(0, 4096 - 8), 0x808);
  pages.set(0x2000000n, moved.subarray(0, 4096));
  pages.set(0x2001000n, moved.subarray(4096));
  const r = inspectInput(memInput(pages), {});
  assert.equal(r.root!.pa, 0x2000808n);
  // That root page is not where the tracker says it should be: reported.
  assert.ok(r.problems.some((p) => p.where === 'root FDT @0x2000808' && /not preserved/.test(p.message)));
  assert.equal(r.sessions.length, 3);
});

test('--kind raw: a flat file of physical memory from 0 (QEMU pmemsave), root found by scan', async () => {
  const dir = tmp();
  const path = join(dir, 'mem.bin');
  const fd = openSync(path, 'w');
  ftruncateSync(fd, 1 << 30); // sparse: like pmemsave 0 0x40000000 of the real run
  for (const [pa, b] of realPages()) writeSync(fd, b, 0, b.length, Number(pa));
  closeSync(fd);
  try {
    const t0 = performance.now();
    const r = await inspectPath(path, { kind: 'raw' });
    assert.ok(performance.now() - t0 < 20000);
    assert.equal(r.root!.pa, 0x1f0000n);
    assert.deepEqual(r.problems.filter(isFault), []);
    assert.equal(r.sessions.length, 3);
    assert.equal(r.tracker!.blocks, 23);
  } finally {
    rmSync(dir, { recursive: true });
  }
});
