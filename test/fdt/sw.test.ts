/**
 * FdtSw against libfdt's sequential writer: random trees built by both into the same arena, every
 * return value and every byte of the buffer compared after every step (too-small buffers, wrong
 * call order and fdt_resize included); then the blobs read back with dtc and fdtget.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { FdtSw, FDT_CREATE_FLAG_NO_NAME_DEDUP } from '../../src/fdt/sw.ts';
import { FdtError, FDT_MAGIC } from '../../src/fdt/format.ts';
import { type Op, runLibfdt, runLuo, runTool, firstDifference } from './helpers/libfdt.ts';
import { type TNode, buildOps, flatten, nodeName, propName, propValue, rsvEntries, tree } from './helpers/trees.ts';

/** Adds a checksum of [0, region) after every op and a full dump at the end. */
function instrument(ops: Op[], region: number, fill: number): Op[] {
  const out: Op[] = [['arena', 65536, fill]];
  for (const op of ops) out.push(op, ['sum', 0, region]);
  out.push(['dump', 0, region]);
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

/** The totalsize luo needs for a tree (used to aim buffer sizes at the boundary). */
function neededSize(t: TNode, rsv: Array<[bigint, bigint]>, flags: number): number {
  const sw = new FdtSw(1 << 20, flags);
  for (const [a, s] of rsv) sw.addReservemapEntry(a, s);
  sw.finishReservemap();
  const walk = (n: TNode): void => {
    sw.beginNode(n.name);
    for (const [k, v] of n.props) sw.property(k, v);
    n.children.forEach(walk);
    sw.endNode();
  };
  walk(t);
  sw.finish();
  return sw.blob().length;
}

const swCase = fc.record({
  tree,
  rsv: rsvEntries,
  flags: fc.constantFrom(0, 0, 0, FDT_CREATE_FLAG_NO_NAME_DEDUP),
  at: fc.constantFrom(0, 8, 64, 1000),
  size: fc.oneof(
    { weight: 3, arbitrary: fc.record({ rel: fc.integer({ min: -64, max: 64 }) }) },
    { weight: 1, arbitrary: fc.record({ abs: fc.integer({ min: 0, max: 4096 }) }) },
  ),
  fill: fc.constantFrom(0, 0xa5, 0xff),
});

test('FdtSw: random trees are byte-identical to libfdt, buffer sizes around the boundary (NOSPACE at the same step)', () => {
  fc.assert(
    fc.property(swCase, (c) => {
      const need = neededSize(c.tree, c.rsv, c.flags);
      const bufsize = 'rel' in c.size ? Math.max(0, need + c.size.rel) : c.size.abs;
      const region = c.at + Math.max(bufsize, 64) + 64;
      compare([instrument(buildOps(c.tree, c.rsv, c.at, bufsize, c.flags), region, c.fill)]);
    }),
    { numRuns: 250, includeErrorInReport: true },
  );
});

/** Ops inserted at random places: calls in the wrong state, and fdt_resize moves. */
const stray = fc.oneof(
  fc.constant<Op>(['finishrsv']),
  fc.constant<Op>(['end']),
  fc.constant<Op>(['finish']),
  fc.tuple(fc.bigInt({ min: 0n, max: 1n << 40n }), fc.bigInt({ min: 0n, max: 1n << 40n })).map(([a, s]): Op => ['rsv', a, s]),
  nodeName.map((n): Op => ['begin', n]),
  fc.tuple(propName, propValue).map(([k, v]): Op => ['prop', k, v]),
  fc.tuple(fc.constantFrom(0, 16, 2048, 4096, 6000), fc.integer({ min: 40, max: 3000 })).map(([to, n]): Op => ['resize', to, n]),
);

test('FdtSw: wrong call order gives BADSTATE/BADMAGIC, and fdt_resize moves the tree, as libfdt does', () => {
  fc.assert(
    fc.property(tree, rsvEntries, fc.array(fc.tuple(fc.nat(), stray), { maxLength: 6 }), (t, rsv, inserts) => {
      const ops = buildOps(t, rsv, 0, 4096);
      for (const [pos, op] of inserts) ops.splice(1 + (pos % ops.length), 0, op);
      compare([instrument(ops, 9000, 0x5a)]);
    }),
    { numRuns: 150, includeErrorInReport: true },
  );
});

test('FdtSw: targeted edge cases match libfdt (name rolled back then reused, empty names, exact fits)', () => {
  const v = (n: number): Uint8Array => new Uint8Array(n).fill(0x11);
  const scripts: Op[][] = [];
  for (let size = 120; size <= 200; size += 4) {
    scripts.push([['create', 0, size], ['finishrsv'], ['begin', ''],
      ['prop', 'first-name', v(64)], // the name fits, the value does not: the name is rolled back
      ['prop', 'zz', v(1)], // takes the rolled-back name's place
      ['prop', 'first-name', v(1)], // must be added again, below "zz"
      ['prop', '', v(0)], ['prop', 'name', v(2)], ['prop', 'e', v(3)], ['begin', 'child@1'], ['prop', '', v(1)], ['end'], ['end'], ['finish']]);
  }
  compare(scripts.map((ops) => instrument(ops, 260, 0x3c)));
});

test('FdtSw: the buffer libfdt leaves (reservation map at 48, strings reversed, stale tail) for a fixed tree', () => {
  const sw = new FdtSw(512);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', 'kho-v4');
  sw.propertyLeU64('preserved-memory-map', 0x1ef000n);
  sw.beginNode('a@1');
  sw.propertyU32('size', 7);
  sw.propertyU64('blob-size', 0x0102030405060708n);
  sw.propertyEmpty('e');
  sw.endNode();
  sw.endNode();
  const whole = sw.finish();
  assert.equal(whole.length, 512);
  const blob = sw.blob();
  const dv = new DataView(blob.buffer, blob.byteOffset);
  assert.equal(dv.getUint32(0), FDT_MAGIC);
  assert.equal(dv.getUint32(16), 48, 'off_mem_rsvmap: the header rounded up to a reservation entry');
  assert.equal(dv.getUint32(8), 64, 'off_dt_struct follows the one terminating entry');
  assert.equal(dv.getUint32(24), 16, 'last_comp_version');
  // strings in reverse order of first use; "e" is found as the tail of "blob-size" and not added
  const strings = Buffer.from(blob.subarray(dv.getUint32(12))).toString('latin1');
  assert.equal(strings, 'blob-size\0size\0preserved-memory-map\0compatible\0');
  // the old copy of the strings is still at the end of the buffer
  assert.equal(Buffer.from(whole.subarray(512 - strings.length)).toString('latin1'), strings);
  compare([instrument([
    ['create', 0, 512], ['finishrsv'], ['begin', ''],
    ['prop', 'compatible', Buffer.from('kho-v4\0')], ['prop', 'preserved-memory-map', Buffer.from('00f01e0000000000', 'hex')],
    ['begin', 'a@1'], ['prop', 'size', Buffer.from('00000007', 'hex')], ['prop', 'blob-size', Buffer.from('0102030405060708', 'hex')],
    ['prop', 'e', new Uint8Array(0)], ['end'], ['end'], ['finish'],
  ], 512, 0)]);
  assert.deepEqual(runLuo([['arena', 65536, 0], ['create', 0, 512], ['finishrsv'], ['begin', ''],
    ['prop', 'compatible', Buffer.from('kho-v4\0')], ['prop', 'preserved-memory-map', Buffer.from('00f01e0000000000', 'hex')],
    ['begin', 'a@1'], ['prop', 'size', Buffer.from('00000007', 'hex')], ['prop', 'blob-size', Buffer.from('0102030405060708', 'hex')],
    ['prop', 'e', new Uint8Array(0)], ['end'], ['end'], ['finish'], ['dump', 0, 512]]).at(-1), Buffer.from(whole).toString('hex'));
});

test('FdtSw: errors are typed FdtErrors with libfdt codes', () => {
  const code = (f: () => unknown): string => {
    try { f(); } catch (e) { assert.ok(e instanceof FdtError, String(e)); return e.code; }
    return 'none';
  };
  assert.equal(code(() => new FdtSw(47)), 'NOSPACE');
  assert.equal(code(() => new FdtSw(4096, 2)), 'BADFLAGS');
  const sw = new FdtSw(64);
  assert.equal(code(() => sw.beginNode('')), 'BADSTATE');
  assert.equal(code(() => sw.blob()), 'BADSTATE');
  sw.finishReservemap();
  assert.equal(code(() => sw.addReservemapEntry(1n, 1n)), 'BADSTATE');
  assert.equal(code(() => sw.beginNode('')), 'NOSPACE', 'no room after a 64-byte reservation map');
  const big = new FdtSw(100);
  big.finishReservemap();
  big.beginNode('');
  assert.equal(code(() => big.property('p', new Uint8Array(64))), 'NOSPACE');
  big.endNode();
  big.finish();
  assert.equal(code(() => big.endNode()), 'BADSTATE');
  assert.equal(code(() => big.finish()), 'BADSTATE');
  // the caller's buffer is used in place (a page of simulated RAM)
  const page = new Uint8Array(4096).fill(0xee);
  const inPlace = new FdtSw(page.subarray(1024, 2048));
  assert.equal(page[1024 + 100], 0, 'fdt_create zeroes the whole buffer');
  assert.equal(page[2048], 0xee, 'and nothing past it');
  inPlace.finishReservemap();
  inPlace.beginNode('');
  inPlace.endNode();
  assert.equal(inPlace.finish().byteOffset, 1024);
});

test('FdtSw blobs read back the same with dtc and fdtget', () => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-fdt-sw-'));
  try {
    const safeName = fc.stringMatching(/^[a-z][a-z0-9,._+-]{0,12}(@[0-9a-f]{1,4})?$/);
    const safeTree: fc.Arbitrary<TNode> = fc.letrec<{ node: TNode }>((tie) => ({
      node: fc.record({
        name: safeName,
        props: fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9,._+-]{0,12}$/), fc.uint8Array({ minLength: 1, maxLength: 24 })), { selector: (p) => p[0], maxLength: 4 }),
        children: fc.oneof({ depthSize: 'small' }, fc.constant<TNode[]>([]), fc.uniqueArray(tie('node'), { selector: (n) => n.name, maxLength: 3 })),
      }),
    })).node.map((r) => ({ ...r, name: '' }));
    const samples = fc.sample(safeTree, { numRuns: 25, seed: 17 });
    samples.forEach((t, i) => {
      const sw = new FdtSw(65536);
      sw.finishReservemap();
      const walk = (n: TNode): void => {
        sw.beginNode(n.name);
        for (const [k, v] of n.props) sw.property(k, v);
        n.children.forEach(walk);
        sw.endNode();
      };
      walk(t);
      sw.finish();
      const file = join(dir, `t${i}.dtb`);
      writeFileSync(file, sw.blob());
      const dts = runTool('dtc', ['-q', '-I', 'dtb', '-O', 'dts', file]);
      assert.match(dts, /^\/dts-v1\/;/);
      const nodes = flatten(t);
      const args: string[] = [];
      const want: string[] = [];
      for (const { path, node } of nodes) {
        for (const [k, v] of node.props) {
          args.push(path, k);
          want.push([...v].map((b) => b.toString(16)).join(' '));
        }
        const children = runTool('fdtget', ['-l', file, path]).split('\n').filter(Boolean);
        assert.deepEqual(children, node.children.map((c) => c.name), `subnodes of ${path}`);
      }
      if (args.length) {
        const got = runTool('fdtget', ['-t', 'bx', file, ...args]).split('\n').slice(0, want.length);
        assert.deepEqual(got, want);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
