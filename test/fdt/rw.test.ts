/**
 * FdtRw and the wip overwrites against libfdt's fdt_rw.c/fdt_wip.c: random edit sequences on random
 * trees (open_into in place and across overlapping buffers, add/del node, setprop growing and
 * shrinking, appendprop, delprop, set_name, pack, memory reservations), every return value and every
 * byte compared after every step; misordered and v16 trees reordered by open_into; the edited blobs
 * read back with dtc/fdtget; and the real kernel's KHO root FDT reproduced byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { FdtSw } from '../../src/fdt/sw.ts';
import { FdtRw } from '../../src/fdt/rw.ts';
import { FdtError } from '../../src/fdt/format.ts';
import { nopNode, nopProperty, setPropInplace, setPropInplacePartial } from '../../src/fdt/wip.ts';
import { type Op, type Sel, firstDifference, runLibfdt, runLuo, runTool } from './helpers/libfdt.ts';
import { buildOps, nodeName, propName, propValue, rsvEntries, tree } from './helpers/trees.ts';

const here = dirname(fileURLToPath(import.meta.url));
const REGION = 12288;

function instrument(ops: Op[], fill: number): Op[] {
  const out: Op[] = [['arena', 65536, fill]];
  for (const op of ops) out.push(op, ['sum', 0, REGION]);
  out.push(['dump', 0, REGION]);
  return out;
}

function compare(scripts: Op[][]): void {
  const want = runLibfdt(scripts);
  scripts.forEach((s, i) => {
    const got = runLuo(s);
    const diff = firstDifference(s, want[i]!, got);
    if (diff) assert.fail(`luo differs from libfdt at ${diff}`);
  });
}

const sel: fc.Arbitrary<Sel> = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 12 }).map((k): Sel => `#${k}`) },
  { weight: 1, arbitrary: fc.constantFrom<Sel>(-1, 3, 4, 8, 12, 16, 1000) },
);
const smallValue = fc.oneof(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ minLength: 8, maxLength: 8 }));
const pathArb = fc.oneof(
  fc.array(nodeName, { maxLength: 3 }).map((a) => `/${a.join('/')}`),
  fc.constantFrom('', '/', '//', 'alias', 'x/y'),
);

const rwOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.tuple(
    // buffers never overlap (0 and 8192 are further apart than any tree here), so a later open_into
    // never reads a blob a move has half overwritten: libfdt 1.6 does not survive that (seed
    // 1467760446: after a move 0 -> 64, an open_into from 0 finds a reservation map running into the
    // moved header; fdt_num_mem_rsv's -FDT_ERR_TRUNCATED is used as a count, the negative sizes pass
    // the NOSPACE check and it writes offsets of -72, returning 0 — luo returns -FDT_ERR_TRUNCATED).
    // Overlapping moves have their own cases in the reorder test.
    fc.constantFrom([0, 0], [0, 0], [0, 0], [0, 8192], [8192, 0]),
    fc.oneof(fc.constantFrom(4096, 1024, 512, 400, 300, 200, 150), fc.integer({ min: 0, max: 4096 })),
  ).map(([[s, d], n]): Op => ['openinto', s!, d!, n]) },
  { weight: 4, arbitrary: fc.tuple(sel, nodeName).map(([n, name]): Op => ['addnode', n, name]) },
  { weight: 6, arbitrary: fc.tuple(sel, propName, propValue).map(([n, k, v]): Op => ['setprop', n, k, v]) },
  { weight: 2, arbitrary: fc.tuple(sel, propName, smallValue).map(([n, k, v]): Op => ['appendprop', n, k, v]) },
  { weight: 3, arbitrary: fc.tuple(sel, propName).map(([n, k]): Op => ['delprop', n, k]) },
  { weight: 2, arbitrary: sel.map((n): Op => ['delnode', n]) },
  { weight: 1, arbitrary: fc.tuple(sel, nodeName).map(([n, name]): Op => ['setname', n, name]) },
  { weight: 2, arbitrary: fc.constant<Op>(['pack']) },
  { weight: 1, arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 1n << 50n }), fc.bigInt({ min: 0n, max: 1n << 50n })).map(([a, s]): Op => ['addmemrsv', a, s]) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }).map((n): Op => ['delmemrsv', n]) },
  { weight: 1, arbitrary: fc.tuple(sel, propName).map(([n, k]): Op => ['nopprop', n, k]) },
  { weight: 1, arbitrary: sel.map((n): Op => ['nopnode', n]) },
  { weight: 1, arbitrary: fc.tuple(sel, propName, smallValue).map(([n, k, v]): Op => ['setpropinplace', n, k, v]) },
  { weight: 2, arbitrary: fc.tuple(sel, propName).map(([n, k]): Op => ['getprop', n, k]) },
  { weight: 2, arbitrary: fc.tuple(sel, nodeName).map(([n, name]): Op => ['subnode', n, name]) },
  { weight: 1, arbitrary: pathArb.map((p): Op => ['path', p]) },
  { weight: 1, arbitrary: fc.tuple(fc.oneof(sel, fc.constant<Sel>(-1)), propName, smallValue).map(([n, k, v]): Op => ['nodebyprop', n, k, v]) },
);

test('FdtRw: random edit sequences on random trees are byte-identical to libfdt after every step', () => {
  fc.assert(
    fc.property(tree, rsvEntries, fc.constantFrom(4096, 2048, 0), fc.array(rwOp, { minLength: 1, maxLength: 30 }), fc.constantFrom(0, 0x5a, 0xff),
      (t, rsv, bufsize, ops, fill) => {
        // bufsize 0: the blob fills its buffer exactly (as after fdt_pack)
        const size = bufsize || exactSize(t, rsv);
        compare([instrument([...buildOps(t, rsv, 0, size), ['openinto', 0, 0, 4096], ...ops], fill)]);
      }),
    { numRuns: 300, includeErrorInReport: true },
  );
});

function exactSize(t: Parameters<typeof buildOps>[0], rsv: Array<[bigint, bigint]>): number {
  const out = runLuo([['arena', 65536, 0], ...buildOps(t, rsv, 0, 65536), ['dump', 0, 8]]);
  return Buffer.from(out.at(-1)!, 'hex').readUInt32BE(4);
}

test('FdtRw: the KHO pattern (open_into a page, add_subnode, two setprops, pack) repeated, as libfdt', () => {
  const kho = fc.array(fc.tuple(nodeName, fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.uint8Array({ minLength: 8, maxLength: 8 })), { minLength: 1, maxLength: 60 });
  fc.assert(
    fc.property(kho, fc.integer({ min: 0, max: 8 }), (subtrees, removeEvery) => {
      const ops: Op[] = [['create', 0, 4096], ['finishrsv'], ['begin', ''], ['prop', 'compatible', Buffer.from('kho-v4\0')],
        ['prop', 'preserved-memory-map', new Uint8Array(8)], ['end'], ['finish']];
      subtrees.forEach(([name, pa, size], i) => {
        ops.push(['openinto', 0, 0, 4096], ['addnode', 0, name], ['subnode', 0, name],
          ['setprop', '#1', 'preserved-data', pa], ['setprop', '#1', 'blob-size', size], ['pack']);
        if (removeEvery && i % removeEvery === 0) ops.push(['openinto', 0, 0, 4096], ['nodebyprop', -1, 'preserved-data', pa], ['delnode', '#1'], ['pack']);
      });
      compare([instrument(ops, 0)]);
    }),
    { numRuns: 60, includeErrorInReport: true },
  );
});

test('FdtRw: targeted edge cases match libfdt (string rollback on NOSPACE, version 18, root edits, bad parents)', () => {
  const base: Op[] = [['create', 0, 4096], ['finishrsv'], ['begin', ''], ['prop', 'compatible', Buffer.from('kho-v4\0')],
    ['begin', 'cpu@0'], ['prop', 'reg', new Uint8Array(4)], ['end'], ['begin', 'cpus'], ['end'], ['end'], ['finish']];
  const t = exactSize({ name: '', props: [['compatible', Buffer.from('kho-v4\0')]], children: [
    { name: 'cpu@0', props: [['reg', new Uint8Array(4)]], children: [] }, { name: 'cpus', props: [], children: [] }] }, []);
  const scripts: Op[][] = [];
  // a new name fits in the strings block but the property does not: the name is rolled back
  for (let room = 0; room <= 40; room += 4) {
    scripts.push([...base, ['openinto', 0, 0, t + room], ['setprop', '#0', 'brand-new-name', new Uint8Array(16).fill(7)],
      ['setprop', '#1', 'brand-new-name', new Uint8Array(1)], ['appendprop', '#2', 'other-name', new Uint8Array(9)],
      ['addnode', '#2', 'child-with-long-name'], ['setname', '#1', 'a-much-longer-node-name@1234']]);
  }
  // a version 18 tree is edited as 17 (and downgraded); a v16 one cannot be edited in place
  const v18 = runLuo([['arena', 65536, 0], ...base, ['dump', 0, t]]).at(-1)!;
  const patched = (v: number): Uint8Array => { const b = Buffer.from(v18, 'hex'); b.writeUInt32BE(v, 20); return b; };
  scripts.push([['load', 0, patched(18)], ['use', 0], ['delprop', '#1', 'reg'], ['getprop', '#0', 'compatible']]);
  scripts.push([['load', 0, patched(16)], ['use', 0], ['delprop', '#1', 'reg'], ['openinto', 0, 0, 4096], ['delprop', '#1', 'reg']]);
  // root and bad-parent edits
  scripts.push([...base, ['openinto', 0, 0, 4096], ['setname', 0, 'root-name'], ['addnode', '#9', 'x'], ['addnode', -1, 'x'],
    ['addnode', 4, 'x'], ['appendprop', '#9', 'p', new Uint8Array(3)], ['subnode', 0, 'cpu'], ['subnode', 0, 'cpu@0'],
    ['subnode', 0, 'cpu@1'], ['subnode', 0, 'cpus'], ['addnode', 0, 'cpu'], ['path', '/cpu'], ['path', 'cpu'],
    ['nodebyprop', '#1', 'reg', new Uint8Array(4)], ['nodebyprop', -1, 'reg', new Uint8Array(4)], ['delnode', 0], ['addnode', 0, 'y'], ['pack']]);
  // a tree that is not 8-byte aligned: ALIGNMENT from every call that probes the header
  scripts.push([['create', 4, 512], ['finishrsv'], ['begin', ''], ['prop', 'p', new Uint8Array(4)], ['begin', 'a'], ['end'], ['end'],
    ['finish'], ['subnode', 0, 'a'], ['getprop', 0, 'p'], ['setpropinplace', 0, 'p', new Uint8Array(4).fill(9)], ['nopprop', 0, 'p'],
    ['openinto', 4, 4, 512], ['addnode', 0, 'b'], ['pack'], ['path', '/a'], ['nopnode', '#1'], ['openinto', 4, 1024, 512], ['subnode', 0, 'a']]);
  compare(scripts.map((s) => instrument(s, 0x42)));
});

/** Rebuilds a finished blob with its blocks in another order (and optionally as a v16 header). */
function scramble(blob: Uint8Array, order: Array<'rsv' | 'struct' | 'strings'>, gap: number, v16: boolean): Uint8Array {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const rsvOff = dv.getUint32(16);
  const structOff = dv.getUint32(8);
  const stringsOff = dv.getUint32(12);
  const blocks = {
    rsv: blob.subarray(rsvOff, structOff),
    struct: blob.subarray(structOff, structOff + dv.getUint32(36)),
    strings: blob.subarray(stringsOff, stringsOff + dv.getUint32(32)),
  };
  const out = new Uint8Array(40 + gap * 3 + blob.length).fill(0x77);
  out.set(blob.subarray(0, 40));
  const odv = new DataView(out.buffer);
  let at = 40;
  for (const b of order) {
    at = (at + gap + 7) & ~7;
    out.set(blocks[b], at);
    odv.setUint32(b === 'rsv' ? 16 : b === 'struct' ? 8 : 12, at);
    at += blocks[b].length;
  }
  odv.setUint32(4, at);
  if (v16) {
    odv.setUint32(20, 16);
    odv.setUint32(24, 16);
    odv.setUint32(36, 0x5a5a5a5a);
  }
  return out.subarray(0, at);
}

test('FdtRw.openInto: misordered and v16 trees are reordered like libfdt, in place, overlapping and apart', () => {
  const order = fc.constantFrom<Array<'rsv' | 'struct' | 'strings'>>(
    ['rsv', 'struct', 'strings'], ['strings', 'struct', 'rsv'], ['struct', 'rsv', 'strings'], ['rsv', 'strings', 'struct'],
  );
  fc.assert(
    fc.property(tree, rsvEntries, order, fc.integer({ min: 0, max: 40 }), fc.boolean(),
      fc.constantFrom([0, 0], [0, 16], [16, 0], [1024, 0], [0, 8192], [64, 96]), fc.constantFrom(4096, 600, 300),
      fc.array(rwOp.filter((op) => op[0] !== 'openinto'), { maxLength: 6 }),
      (t, rsv, ord, gap, v16, [src, dst], bufsize, more) => {
        const sw = new FdtSw(8192);
        for (const [a, s] of rsv) sw.addReservemapEntry(a, s);
        sw.finishReservemap();
        const walk = (n: typeof t): void => {
          sw.beginNode(n.name);
          for (const [k, v] of n.props) sw.property(k, v);
          n.children.forEach(walk);
          sw.endNode();
        };
        walk(t);
        sw.finish();
        const blob = scramble(sw.blob(), ord, gap, v16);
        if (src! + blob.length > 12000) return;
        compare([instrument([['load', src!, blob], ['use', src!], ['openinto', src!, dst!, bufsize], ...more], 0x33)]);
      }),
    { numRuns: 200, includeErrorInReport: true },
  );
});

/**
 * The real kernel's KHO root (Linux 7.3.4, test/fixtures/real-kernel/handover-memory): built at
 * boot with the sequential writer — fdt_create(page, PAGE_SIZE), fdt_finish_reservemap,
 * fdt_begin_node(""), fdt_property_string("compatible", "kho-v4"),
 * fdt_property("preserved-memory-map", &radix_root_pa /+ native u64 +/, 8), fdt_end_node, fdt_finish
 * — then one kho_add_subtree per subtree, each as fdt_open_into(page, page, PAGE_SIZE),
 * fdt_add_subnode(page, 0, name), fdt_setprop(.. "preserved-data", &pa, 8),
 * fdt_setprop(.. "blob-size", &size, 8), fdt_pack(page). The order that reproduces the bytes is
 * "kexec-metadata" first and "LUO" second: fdt_add_subnode puts a new node before the existing
 * subnodes (so "LUO" ends up first), and fdt_setprop puts a new property right after the node
 * name (so "blob-size" ends up before "preserved-data"); the strings block is
 * "preserved-memory-map", "compatible" (the writer's reverse order), then "preserved-data",
 * "blob-size" (appended by the first kho_add_subtree). fdt_pack moves the reservation map from the
 * writer's offset 48 to 40.
 */
function khoRoot(subtrees: Array<[string, bigint, bigint]>, propOrder: 'data-first' | 'size-first' = 'data-first'): Uint8Array {
  const page = new Uint8Array(4096).fill(0xcc);
  const sw = new FdtSw(page);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', 'kho-v4');
  sw.propertyLeU64('preserved-memory-map', 0x1ef000n);
  sw.endNode();
  sw.finish();
  for (const [name, pa, size] of subtrees) {
    const fdt = FdtRw.openInto(page, page, 4096);
    const off = fdt.addSubnode(0, name);
    if (propOrder === 'data-first') {
      fdt.setPropLeU64(off, 'preserved-data', pa);
      fdt.setPropLeU64(off, 'blob-size', size);
    } else {
      fdt.setPropLeU64(off, 'blob-size', size);
      fdt.setPropLeU64(off, 'preserved-data', pa);
    }
    fdt.pack();
  }
  return page;
}

test('the real kernel KHO root FDT (kho-v4, LUO + kexec-metadata) is reproduced byte for byte', () => {
  const real = readFileSync(join(here, '../fixtures/real-kernel/handover-memory/kho-fdt-at-kexec.dtb'));
  const page = khoRoot([['kexec-metadata', 0x1f7000n, 73n], ['LUO', 0x3ac000n, 32n]]);
  const totalsize = new DataView(page.buffer).getUint32(4);
  assert.equal(totalsize, real.length);
  assert.equal(Buffer.from(page.subarray(0, totalsize)).toString('hex'), real.toString('hex'));
  // the other orders give different bytes
  const swapped = khoRoot([['LUO', 0x3ac000n, 32n], ['kexec-metadata', 0x1f7000n, 73n]]);
  assert.notEqual(Buffer.from(swapped.subarray(0, totalsize)).toString('hex'), real.toString('hex'));
  const sizeFirst = khoRoot([['kexec-metadata', 0x1f7000n, 73n], ['LUO', 0x3ac000n, 32n]], 'size-first');
  assert.notEqual(Buffer.from(sizeFirst.subarray(0, totalsize)).toString('hex'), real.toString('hex'));
  // and the whole page (stale bytes past totalsize included) is what libfdt leaves
  const le = (v: bigint): Uint8Array => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, v, true); return b; };
  const [want] = runLibfdt([[['arena', 65536, 0xcc], ['create', 0, 4096], ['finishrsv'], ['begin', ''],
    ['prop', 'compatible', Buffer.from('kho-v4\0')], ['prop', 'preserved-memory-map', le(0x1ef000n)], ['end'], ['finish'],
    ['openinto', 0, 0, 4096], ['addnode', 0, 'kexec-metadata'], ['setprop', '#1', 'preserved-data', le(0x1f7000n)], ['setprop', '#1', 'blob-size', le(73n)], ['pack'],
    ['openinto', 0, 0, 4096], ['addnode', 0, 'LUO'], ['setprop', '#1', 'preserved-data', le(0x3ac000n)], ['setprop', '#1', 'blob-size', le(32n)], ['pack'],
    ['dump', 0, 4096]]]);
  assert.equal(want!.at(-1), Buffer.from(page).toString('hex'));
  // adding an existing subtree name is EXISTS (the kernel's EEXIST), leaving the page untouched
  const before = page.slice();
  const fdt = FdtRw.openInto(page, page, 4096);
  assert.throws(() => fdt.addSubnode(0, 'LUO'), (e: unknown) => e instanceof FdtError && e.code === 'EXISTS');
  fdt.pack();
  assert.deepEqual(page, before);
  // kho_remove_subtree: find the node by its preserved-data value, delete it, pack
  const rw = FdtRw.openInto(page, page, 4096);
  const luo = rw.nodeOffsetByProp('preserved-data', le(0x3ac000n));
  assert.equal(luo, rw.subnodeOffset(0, 'LUO'));
  rw.delNode(luo);
  rw.pack();
  assert.equal(rw.subnodeOffset(0, 'LUO'), -1);
  assert.equal(rw.nodeOffsetByProp('preserved-data', le(0x3ac000n)), -1);
  assert.deepEqual(rw.getProp(rw.subnodeOffset(0, 'kexec-metadata'), 'blob-size'), le(73n));
});

test('FdtRw: lookups and errors follow libfdt (unit addresses, EXISTS, NOTFOUND, NOSPACE, BADOFFSET, BADLAYOUT)', () => {
  const code = (f: () => unknown): string => {
    try { f(); } catch (e) { assert.ok(e instanceof FdtError, String(e)); return e.code; }
    return 'none';
  };
  const sw = new FdtSw(1024);
  sw.finishReservemap();
  sw.beginNode('');
  sw.beginNode('cpu@0');
  sw.propertyU32('reg', 0);
  sw.endNode();
  sw.endNode();
  sw.finish();
  const buf = new Uint8Array(512);
  const rw = FdtRw.openInto(sw.blob(), buf);
  assert.equal(rw.totalsize, 512);
  const cpu = rw.subnodeOffset(0, 'cpu');
  assert.equal(cpu, rw.subnodeOffset(0, 'cpu@0'), '"cpu" finds "cpu@0"');
  assert.equal(rw.pathOffset('/cpu@0'), cpu);
  assert.equal(code(() => rw.addSubnode(0, 'cpu')), 'EXISTS', 'a unit-address node blocks the bare name');
  assert.equal(rw.subnodeOffset(0, 'cpu@1'), -1);
  assert.equal(rw.getProp(cpu, 'nope'), undefined);
  assert.equal(code(() => rw.getProp(cpu + 4, 'reg')), 'BADOFFSET');
  assert.equal(code(() => rw.pathOffset('/nope')), 'NOTFOUND');
  assert.equal(code(() => rw.delProp(cpu, 'nope')), 'NOTFOUND');
  assert.equal(code(() => rw.setProp(2, 'x', new Uint8Array(1))), 'BADOFFSET');
  assert.equal(code(() => rw.delNode(cpu + 4)), 'BADOFFSET');
  assert.equal(code(() => rw.setProp(cpu, 'big', new Uint8Array(600))), 'NOSPACE');
  assert.equal(code(() => FdtRw.openInto(sw.blob(), new Uint8Array(64))), 'NOSPACE');
  assert.equal(code(() => FdtRw.openInto(new Uint8Array(64), new Uint8Array(64))), 'BADMAGIC');
  assert.equal(code(() => new FdtRw(sw.buffer).addSubnode(0, 'x')), 'NOSPACE', 'a finished tree has no room until opened into a bigger buffer');
  const misordered = sw.blob().slice();
  new DataView(misordered.buffer).setUint32(16, 8); // rsvmap inside the header
  assert.equal(code(() => new FdtRw(misordered).pack()), 'BADLAYOUT');
  // values are live views; grown and shrunk in place
  rw.setPropString(cpu, 'status', 'okay');
  assert.equal(Buffer.from(rw.getProp(cpu, 'status')!).toString('latin1'), 'okay\0');
  rw.appendProp(cpu, 'status', Buffer.from('x'));
  assert.equal(rw.getProp(cpu, 'status')?.length, 6);
  rw.setPropU64(cpu, 'reg', 0x0102030405060708n);
  assert.equal(Buffer.from(rw.getProp(cpu, 'reg')!).toString('hex'), '0102030405060708');
  rw.setPropU32(cpu, 'reg', 9);
  assert.equal(Buffer.from(rw.getProp(cpu, 'reg')!).toString('hex'), '00000009');
  rw.setName(cpu, 'processor@10');
  assert.equal(rw.pathOffset('/processor'), cpu);
  rw.addMemRsv(0x1000n, 0x2000n);
  assert.equal(rw.numMemRsv(), 1);
  rw.delMemRsv(0);
  assert.equal(code(() => rw.delMemRsv(0)), 'NOTFOUND');
  // the wip overwrites
  const reg = rw.subnodeOffset(0, 'processor');
  setPropInplace(buf, reg, 'reg', Buffer.from('0000000a', 'hex'));
  assert.equal(code(() => setPropInplace(buf, reg, 'reg', new Uint8Array(8))), 'NOSPACE');
  setPropInplacePartial(buf, reg, 'reg', 3, Buffer.from('0b', 'hex'));
  assert.equal(Buffer.from(rw.getProp(reg, 'reg')!).toString('hex'), '0000000b');
  nopProperty(buf, reg, 'status');
  assert.equal(rw.getProp(reg, 'status'), undefined);
  nopNode(buf, reg);
  assert.equal(rw.subnodeOffset(0, 'processor'), -1);
  rw.pack();
  assert.ok(rw.totalsize < 512);
});

test('FdtRw: edited blobs read back the same with dtc and fdtget', () => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-fdt-rw-'));
  try {
    const sw = new FdtSw(4096);
    sw.finishReservemap();
    sw.beginNode('');
    sw.propertyString('compatible', 'kho-v4');
    sw.endNode();
    sw.finish();
    const page = sw.buffer;
    const want = new Map<string, Uint8Array>();
    for (let i = 0; i < 40; i++) {
      const rw = FdtRw.openInto(page, page, 4096);
      const name = `sub${i}@${(i * 7).toString(16)}`;
      const off = rw.addSubnode(0, name);
      const v = new Uint8Array(8 + (i % 5)).map((_, j) => (i * 31 + j) & 0xff);
      rw.setProp(off, 'preserved-data', v);
      rw.setPropLeU64(off, 'blob-size', BigInt(i));
      if (i % 3 === 0) rw.delProp(off, 'blob-size');
      else want.set(`/${name} blob-size`, new Uint8Array(8).fill(0).map((_, j) => (j === 0 ? i : 0)));
      want.set(`/${name} preserved-data`, v);
      if (i % 4 === 1) {
        rw.delNode(rw.subnodeOffset(0, `sub${i - 1}`));
        want.delete(`/sub${i - 1}@${((i - 1) * 7).toString(16)} preserved-data`);
        want.delete(`/sub${i - 1}@${((i - 1) * 7).toString(16)} blob-size`);
      }
      rw.pack();
    }
    const file = join(dir, 'kho.dtb');
    writeFileSync(file, new FdtRw(page).blob());
    assert.match(runTool('dtc', ['-q', '-I', 'dtb', '-O', 'dts', file]), /compatible = "kho-v4";/);
    const args = [...want.keys()].flatMap((k) => k.split(' '));
    const got = runTool('fdtget', ['-t', 'bx', file, ...args]).split('\n');
    [...want.values()].forEach((v, i) => assert.equal(got[i], [...v].map((b) => b.toString(16)).join(' ')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
