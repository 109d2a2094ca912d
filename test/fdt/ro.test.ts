/**
 * The Fdt reader: the real kernel's KHO FDTs, lookups with libfdt's semantics, and conformance with
 * C libfdt (through python3-libfdt) on random trees compiled by dtc from random DTS text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { Fdt } from '../../src/fdt/ro.ts';
import { FdtError } from '../../src/fdt/format.ts';

const FIX = new URL('../fixtures/real-kernel/', import.meta.url);
const COMPLETE = ['handover-memory/kho-fdt-at-kexec.dtb', 'debugfs/s2-boot/in/fdt', 'debugfs/s2-after-finish/in/fdt'];

function run(cmd: string, args: string[], input: string | Uint8Array): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 28 });
  if (r.error) assert.fail(`cannot run ${cmd} (install Debian's device-tree-compiler and python3-libfdt): ${r.error.message}`);
  assert.equal(r.status, 0, `${cmd} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

const isFdtError = (code: string) => (e: unknown) => e instanceof FdtError && e.code === code;

test('the real KHO FDT: kho-v4 root, preserved-memory-map, LUO and kexec-metadata subtrees', () => {
  // values from handover-memory/walk.txt
  for (const f of COMPLETE) {
    const fdt = Fdt.open(readFileSync(new URL(f, FIX)));
    assert.equal(fdt.totalSize, 285);
    assert.equal(fdt.header.version, 17);
    assert.equal(fdt.header.last_comp_version, 16);
    assert.ok(fdt.nodeCheckCompatible(0, 'kho-v4'));
    assert.ok(!fdt.nodeCheckCompatible(0, 'kho-v3'));
    assert.ok(!fdt.nodeCheckCompatible(0, 'kho'));
    assert.equal(fdt.getPropString(0, 'compatible'), 'kho-v4');
    assert.deepEqual(fdt.getPropStrings(0, 'compatible'), ['kho-v4']);
    assert.equal(fdt.getPropU64(0, 'preserved-memory-map', 'le'), 0x1ef000n);
    assert.equal(fdt.getPropU64(0, 'preserved-memory-map', 'be'), 0x00f01e0000000000n);
    assert.deepEqual([...fdt.subnodes(0)].map((o) => fdt.getName(o)), ['LUO', 'kexec-metadata']);
    const luo = fdt.subnodeOffset(0, 'LUO');
    assert.equal(fdt.getPropU64(luo, 'preserved-data', 'le'), 0x3ac000n);
    assert.equal(fdt.getPropU64(luo, 'blob-size', 'le'), 32n);
    const km = fdt.pathOffset('/kexec-metadata');
    assert.equal(fdt.getPropU64(km, 'preserved-data', 'le'), 0x1f7000n);
    assert.equal(fdt.getPropU64(km, 'blob-size', 'le'), 73n);
    assert.equal(fdt.parentOffset(km), 0);
    assert.equal(fdt.parentOffset(0), -1);
    assert.equal(fdt.nextSubnode(km), -1);
    assert.equal(fdt.firstSubnode(km), -1);
    assert.equal(fdt.getPath(km), '/kexec-metadata');
    assert.deepEqual(fdt.reserveMap(), []);
    assert.deepEqual([...fdt.walk()].map((n) => [n.path, n.depth]), [['/', 0], ['/LUO', 1], ['/kexec-metadata', 1]]);
    assert.deepEqual([...fdt.properties(luo)].map((p) => p.name), ['blob-size', 'preserved-data']);
    // the value is a view into the blob, not a copy
    const v = fdt.getProp(luo, 'blob-size')!;
    assert.equal(v.buffer, fdt.blob.buffer);
    assert.throws(() => fdt.getPropU64(luo, 'missing', 'le'), isFdtError('NOTFOUND'));
    assert.throws(() => fdt.getPropU32(luo, 'blob-size'), isFdtError('BADVALUE'));
    assert.throws(() => fdt.getPropU64(0, 'compatible', 'le'), isFdtError('BADVALUE'));
    assert.equal(fdt.getProp(0, 'missing'), undefined);
    assert.throws(() => fdt.pathOffset('/LUO/nothing'), isFdtError('NOTFOUND'));
    assert.throws(() => fdt.pathOffset('noalias'), isFdtError('BADPATH'));
    assert.throws(() => fdt.getName(4), isFdtError('BADOFFSET'));
    assert.throws(() => fdt.getName(-4), isFdtError('BADOFFSET'));
    assert.throws(() => fdt.getName(5000), isFdtError('BADOFFSET'));
  }
});

const SAMPLE = `/dts-v1/;
/memreserve/ 0x1000 0x2000;
/memreserve/ 0xffffffff00000000 0x10;
/ {
	compatible = "acme,board", "acme,soc";
	#address-cells = <1>;
	aliases { serial0 = "/soc/uart@1000"; soc = "/soc"; };
	soc {
		le64 = /bits/ 64 <0x1122334455667788>;
		bytes = [01 02 03];
		bad-string = [61 62];
		uart@1000 { compatible = "ns16550a"; reg = <0x1000 0x100>; clock-frequency = <1843200>; };
		uart@2000 { compatible = "acme,uart", "ns16550a"; };
		uart { empty; };
	};
};`;

test('lookups follow libfdt: unit addresses, aliases, string lists, reservation map, u32/u64', () => {
  const fdt = Fdt.open(run('dtc', ['-I', 'dts', '-O', 'dtb', '-'], SAMPLE));
  assert.deepEqual(fdt.reserveMap(), [{ address: 0x1000n, size: 0x2000n }, { address: 0xffffffff00000000n, size: 0x10n }]);
  assert.deepEqual(fdt.getPropStrings(0, 'compatible'), ['acme,board', 'acme,soc']);
  assert.equal(fdt.getPropString(0, 'compatible'), 'acme,board');
  assert.ok(fdt.nodeCheckCompatible(0, 'acme,soc'));
  assert.ok(!fdt.nodeCheckCompatible(0, 'acme'));
  assert.equal(fdt.getPropU32(0, '#address-cells'), 1);
  assert.equal(fdt.getPropU32(0, '#address-cells', 'le'), 0x01000000);
  const soc = fdt.pathOffset('/soc');
  // a name without '@' matches the first child with that base name
  const first = fdt.subnodeOffset(soc, 'uart');
  assert.equal(fdt.getName(first), 'uart@1000');
  assert.equal(fdt.getName(fdt.subnodeOffset(soc, 'uart@2000')), 'uart@2000');
  assert.equal(fdt.subnodeOffset(soc, 'uart@3000'), -1);
  assert.equal(fdt.subnodeOffset(soc, 'uar'), -1);
  assert.equal(fdt.subnodeOffset(soc, 'ü'), -1);
  assert.equal(fdt.pathOffset('serial0'), first);
  assert.equal(fdt.pathOffset('soc/uart@2000'), fdt.subnodeOffset(soc, 'uart@2000'));
  assert.equal(fdt.pathOffset('//soc///uart@1000/'), first);
  assert.equal(fdt.pathOffset('/'), 0);
  assert.equal(fdt.getPropU32(first, 'clock-frequency'), 1843200);
  assert.equal(fdt.getPropU64(soc, 'le64', 'be'), 0x1122334455667788n);
  assert.ok(fdt.nodeCheckCompatible(fdt.subnodeOffset(soc, 'uart@2000'), 'ns16550a'));
  assert.throws(() => fdt.getPropString(soc, 'bad-string'), isFdtError('BADVALUE'));
  assert.throws(() => fdt.getPropStrings(soc, 'bytes'), isFdtError('BADVALUE'));
  assert.equal(fdt.getPath(fdt.subnodeOffset(soc, 'uart')), '/soc/uart@1000');
  assert.equal(fdt.nodeDepth(first), 2);
  assert.deepEqual(fdt.tree().children.map((c) => c.name), ['aliases', 'soc']);
  let visits = 0;
  fdt.walkNodes(() => { visits++; return visits < 2; });
  assert.equal(visits, 2, 'a walk stops when the callback returns false');
});

// ---- conformance with C libfdt on random trees ----

interface RNode { name: string; props: Array<[string, string]>; kids: RNode[] }
const NAMES = ['n', 'n@1', 'n@2', 'm', 'm@0', 'node-x', 'a,b'];
const PROPS = ['p', 'q', 'compatible', 'reg', 'x-y'];
const valueArb = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 3 }).map((ws) => `<${ws.map((w) => '0x' + w.toString(16)).join(' ')}>`),
  fc.array(fc.constantFrom('a', 'b,c', 'zz', ''), { minLength: 1, maxLength: 3 }).map((ss) => ss.map((s) => `"${s}"`).join(', ')),
  fc.uint8Array({ maxLength: 9 }).map((b) => `[${Buffer.from(b).toString('hex')}]`),
);
const rnodeArb = (depth: number): fc.Arbitrary<RNode> => fc.record({
  name: fc.constantFrom(...NAMES),
  props: fc.uniqueArray(fc.tuple(fc.constantFrom(...PROPS), valueArb), { selector: (p) => p[0], maxLength: 3 }),
  kids: depth === 0 ? fc.constant([]) : fc.uniqueArray(rnodeArb(depth - 1), { selector: (k) => k.name, maxLength: 4 }),
});

function dts(n: RNode, root = false): string {
  const props = n.props.map(([k, v]) => `${k} = ${v};`).join(' ');
  return `${root ? '/' : n.name} { ${props} ${n.kids.map((k) => dts(k)).join(' ')} };`;
}

const PY_WALK = `
import json, sys, libfdt
out = []
for h in sys.stdin.read().split():
    f = libfdt.Fdt(bytearray.fromhex(h))
    nodes = []
    off, depth = 0, 0
    stack = []
    while depth >= 0:
        props = []
        p = f.first_property_offset(off, (libfdt.NOTFOUND,))
        while p >= 0:
            pr = f.get_property_by_offset(p)
            props.append([p, pr.name, bytes(pr).hex()])
            p = f.next_property_offset(p, (libfdt.NOTFOUND,))
        name = f.get_name(off)
        base = name.split('@')[0]
        parent = f.parent_offset(off, (libfdt.NOTFOUND,))
        stack[depth:] = [name]
        path = '/' + '/'.join(stack[1:])
        nodes.append({'off': off, 'depth': depth, 'name': name, 'parent': parent,
                      'first': f.first_subnode(off, (libfdt.NOTFOUND,)),
                      'next': f.next_subnode(off, (libfdt.NOTFOUND,)) if off else -1,
                      'byBase': f.subnode_offset(parent, base, (libfdt.NOTFOUND,)) if parent >= 0 else -1,
                      'path': path, 'byPath': f.path_offset(path, (libfdt.NOTFOUND,)), 'props': props})
        off, depth = f.next_node(off, depth, (libfdt.NOTFOUND,))
        if off < 0: break
    out.append(nodes)
print(json.dumps(out))
`;

test('random trees: nodes, names, parents, subnodes, unit-address lookup and properties agree with C libfdt', () => {
  const trees = fc.sample(rnodeArb(3), { numRuns: 60, seed: 42 });
  const blobs = trees.map((t) => run('dtc', ['-q', '-I', 'dts', '-O', 'dtb', '-'], `/dts-v1/;\n${dts(t, true)}\n`));
  const ref = JSON.parse(run('/usr/bin/python3', ['-c', PY_WALK], blobs.map((b) => b.toString('hex')).join('\n')).toString()) as Array<Array<{
    off: number; depth: number; name: string; path: string; byPath: number; parent: number; first: number; next: number; byBase: number; props: Array<[number, string, string]>;
  }>>;
  blobs.forEach((blob, i) => {
    const fdt = Fdt.open(blob);
    const walked = [...fdt.walk()];
    assert.deepEqual(walked.map((n) => [n.offset, n.depth, n.name]), ref[i]!.map((n) => [n.off, n.depth, n.name]), `tree ${i}`);
    for (const n of ref[i]!) {
      assert.equal(fdt.parentOffset(n.off), n.parent);
      assert.equal(fdt.firstSubnode(n.off), n.first);
      if (n.off) assert.equal(fdt.nextSubnode(n.off), n.next);
      if (n.parent >= 0) assert.equal(fdt.subnodeOffset(n.parent, n.name.split('@')[0]!), n.byBase);
      assert.deepEqual(fdt.propertyList(n.off).map((p) => [p.offset, p.name, Buffer.from(p.value).toString('hex')]), n.props);
      for (const [, name, hex] of n.props) assert.equal(Buffer.from(fdt.getProp(n.off, name)!).toString('hex'), hex);
      assert.equal(fdt.getPath(n.off), n.path);
      assert.equal(walked.find((w) => w.offset === n.off)!.path, n.path);
      // not always n.off: "/n" also matches an earlier "n@1", which may lack the rest of the path
      if (n.byPath >= 0) assert.equal(fdt.pathOffset(n.path), n.byPath);
      else assert.throws(() => fdt.pathOffset(n.path), isFdtError('NOTFOUND'));
    }
  });
});

test('a v16 blob (no size_dt_struct) is readable; older versions are refused', () => {
  const b = Uint8Array.from(readFileSync(new URL(COMPLETE[0]!, FIX)));
  const dv = new DataView(b.buffer);
  dv.setUint32(20, 16);
  const fdt = Fdt.open(b);
  assert.equal(fdt.header.version, 16);
  assert.equal(fdt.header.size_dt_struct, 0);
  assert.equal(fdt.getPropU64(fdt.pathOffset('/LUO'), 'blob-size', 'le'), 32n);
  dv.setUint32(20, 15);
  dv.setUint32(24, 15);
  assert.throws(() => Fdt.open(b), isFdtError('BADVERSION'));
});
