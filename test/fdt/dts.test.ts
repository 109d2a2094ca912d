/**
 * toDts against the real `dtc -I dtb -O dts` (Debian 1.6.1): the real-kernel fixtures, hand-picked
 * value-guessing edge cases, and hundreds of random trees built by libfdt's sequential writer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { toDts, guessValueType, formatValue } from '../../src/fdt/dts.ts';
import { checkFdt } from '../../src/fdt/check.ts';
import { toJson } from '../../src/fdt/json.ts';

const FIX = new URL('../fixtures/real-kernel/', import.meta.url);
const fixture = (p: string): Buffer => readFileSync(new URL(p, FIX));

function tool(cmd: string, args: string[], input?: string): { status: number; stdout: Buffer; stderr: string } {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 28 });
  if (r.error) assert.fail(`cannot run ${cmd} (install Debian's device-tree-compiler and python3-libfdt): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** dtc's DTS for each blob: [exit status, stdout as Latin-1]. */
function dtc(blobs: Uint8Array[], force: boolean): Array<[number, string]> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-dts-'));
  try {
    return blobs.map((b, i) => {
      const f = join(dir, `${i}.dtb`);
      writeFileSync(f, b);
      const r = tool('dtc', ['-I', 'dtb', '-O', 'dts', ...(force ? ['-f'] : []), f]);
      return [r.status, r.stdout.toString('latin1')];
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- random trees, built by libfdt's FdtSw in one python process ----

type Item = ['p', string, string] | ['n', Spec];
interface Spec { name: string; items: Item[] }
interface Tree { rsv: Array<[string, string]>; root: Spec }

const PY_BUILD = `
import json, sys, libfdt
def emit(sw, node):
    sw.begin_node(node['name'])
    for it in node['items']:
        if it[0] == 'p': sw.property(it[1], bytes.fromhex(it[2]))
        else: emit(sw, it[1])
    sw.end_node()
for t in json.load(sys.stdin):
    sw = libfdt.FdtSw()
    for a, s in t['rsv']: sw.add_reservemap_entry(int(a, 16), int(s, 16))
    sw.finish_reservemap()
    emit(sw, t['root'])
    print(bytes(sw.as_fdt().as_bytearray()).hex())
`;

function build(trees: Tree[]): Uint8Array[] {
  const r = tool('/usr/bin/python3', ['-c', PY_BUILD], JSON.stringify(trees));
  assert.equal(r.status, 0, `python3 libfdt builder failed: ${r.stderr}`);
  return r.stdout.toString().trim().split('\n').map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytesOf = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

const PROP_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,._+*#?-';
const NODE_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789,._+-';
const name = (chars: string, max: number) =>
  fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: max });

/** Values that exercise every branch of dtc's type guess. */
const valueArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ minLength: 1, maxLength: 24 }),
  fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 5 }).map((ws) => {
    const b = new Uint8Array(ws.length * 4);
    const dv = new DataView(b.buffer);
    ws.forEach((w, i) => dv.setUint32(i * 4, w));
    return b;
  }),
  // strings and string lists from printable, escape-worthy and a few non-string characters
  fc.array(fc.string({ unit: fc.constantFrom('a', 'Z', '0', ' ', '"', '\\', '\t', '\n', '\r', '\x07', '\b', '\v', '\f', '\x7f', '\x1b', '\xe9', '\x80', '?', '\''), maxLength: 8 }), { minLength: 1, maxLength: 4 })
    .map((ss) => bytesOf(ss.join('\0') + '\0')),
  // printable text with NUL runs, leading/trailing NULs
  fc.array(fc.constantFrom('ab', 'x', '\0', '\0\0', 'hello'), { minLength: 1, maxLength: 6 }).map((ps) => bytesOf(ps.join(''))),
);

const specArb: fc.Arbitrary<Spec> = fc.letrec<{ node: Spec }>((tie) => ({
  node: fc.record({
    name: fc.oneof(name(NODE_CHARS, 8), fc.tuple(name(NODE_CHARS, 6), name('0123456789abcdef', 4)).map(([a, b]) => `${a}@${b}`)),
    items: fc.array(
      fc.oneof(
        { weight: 5, arbitrary: fc.tuple(fc.constant('p' as const), name(PROP_CHARS, 10), valueArb.map(hex)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant('n' as const), tie('node')) },
      ),
      { maxLength: 5 },
    ),
  }),
})).node.map((s) => dedupe(s));

/** Unique names per node (random names rarely collide, but dtc refuses duplicates without -f). */
function dedupe(s: Spec): Spec {
  const seen = new Set<string>();
  const items = s.items.filter((it) => {
    const key = it[0] + (it[0] === 'p' ? it[1] : it[1].name);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  }).map((it): Item => (it[0] === 'n' ? ['n', dedupe(it[1])] : it));
  return { name: s.name, items };
}

const treeArb: fc.Arbitrary<Tree> = fc.record({
  rsv: fc.array(fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }))
    .map(([a, s]): [string, string] => [a.toString(16), s.toString(16)]), { maxLength: 3 }),
  root: specArb.map((r) => ({ ...r, name: '' })),
});

/** Trees dtc's checks object to: odd characters, '@@', duplicates, "name" and phandle properties. */
const hostileArb: fc.Arbitrary<Tree> = fc.letrec<{ node: Spec }>((tie) => ({
  node: fc.record({
    name: fc.oneof(name(NODE_CHARS + '@!# ', 6), fc.constantFrom('a', 'a@1', 'b@1@2', 'x')),
    items: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: fc.tuple(fc.constant('p' as const), fc.oneof(name(PROP_CHARS + '@ !', 5), fc.constantFrom('name', 'phandle', 'linux,phandle', 'p')), fc.oneof(valueArb, fc.constantFrom(bytesOf('a\0'), bytesOf('x\0'), new Uint8Array([0, 0, 0, 1]), new Uint8Array([0, 0, 0, 2]))).map(hex)) },
        { weight: 1, arbitrary: fc.tuple(fc.constant('n' as const), tie('node')) },
      ),
      { maxLength: 5 },
    ),
  }),
})).node.map((r) => ({ rsv: [], root: { ...r, name: '' } }));

// ---- tests ----

test('real-kernel KHO FDTs print exactly as dtc prints them (and as the captured .dts files)', () => {
  const files = ['handover-memory/kho-fdt-at-kexec.dtb', 'debugfs/s2-boot/in/fdt', 'debugfs/s2-after-finish/in/fdt'];
  const blobs = files.map(fixture);
  const ref = dtc(blobs, false);
  files.forEach((f, i) => {
    assert.equal(ref[i]![0], 0);
    assert.equal(toDts(blobs[i]!), ref[i]![1], f);
  });
  assert.equal(toDts(fixture('debugfs/s2-boot/in/fdt')), fixture('debugfs/s2-boot/in/fdt.dts').toString('latin1'));
  assert.equal(toDts(fixture('handover-memory/kho-fdt-at-kexec.dtb')), fixture('handover-memory/kho-fdt-at-kexec.dts').toString('latin1'));
});

test('value type guess: the edge cases of dtc 1.6.1', () => {
  const cases: Array<[string, string]> = [
    ['ab\0', '"ab"'],
    ['a\0b\0', '"a\\0b"'], // a string list prints as one string with \0, not "a", "b"
    ['a\0\0', '[61 00 00]'], // more NULs than other bytes
    ['ab\0\0', '"ab\\0"'], // as many NULs as other bytes still counts as a string
    ['\0', '[00]'],
    ['\0\0\0\0', '<0x00>'],
    ['\0ab\0', '"\\0ab"'],
    ['a\0\0\0', '<0x61000000>'],
    ['a\tb\x07\\"\0', '"a\\tb\\a\\\\\\""'],
    ['\x7f\0', '[7f 00]'], // DEL is not printable
    ['a\x1b\0', '[61 1b 00]'], // neither is ESC: no \x escapes ever appear
    ['\xe9\0', '[e9 00]'],
    ['abc', '[61 62 63]'],
    ['\xff\0\x01\x02\x03\x04\x05\x06', '<0xff000102 0x3040506>'],
    ['\r\n\v\f\b\0', '"\\r\\n\\v\\f\\b"'],
  ];
  for (const [v, want] of cases) assert.equal(formatValue(bytesOf(v)), want, JSON.stringify(v));
  assert.equal(guessValueType(new Uint8Array(0)), 'empty');
});

test('hand-picked trees: name properties, empty names, memreserve, properties after subnodes', () => {
  const trees: Tree[] = [
    { rsv: [['1000', '2000'], ['0', '10']], root: { name: '', items: [['p', '#address-cells', '00000001'], ['n', { name: 'a@1', items: [['p', 'x', '']] }]] } },
    { rsv: [], root: { name: '', items: [['n', { name: 'foo@1', items: [['p', 'name', hex(bytesOf('foo\0'))], ['p', 'q', '']] }], ['p', 'name', '00']] } },
    { rsv: [], root: { name: '', items: [['n', { name: 'k', items: [] }], ['p', 'late', '01020304']] } },
    { rsv: [], root: { name: 'notroot', items: [['n', { name: 'dev', items: [['p', 'name', hex(bytesOf('zzz\0'))]] }]] } },
    // a failing check that runs before name_properties keeps the redundant "name" property
    { rsv: [], root: { name: '', items: [['n', { name: 'a!b', items: [['p', 'name', hex(bytesOf('a!b\0'))]] }]] } },
    { rsv: [], root: { name: '', items: [['p', 'dup', '01'], ['p', 'dup', '02'], ['n', { name: 's', items: [['p', 'name', hex(bytesOf('s\0'))]] }]] } },
    { rsv: [], root: { name: '', items: [['p', 'phandle', '00000000'], ['n', { name: 's', items: [['p', 'name', hex(bytesOf('s\0'))]] }]] } },
  ];
  const blobs = build(trees);
  const ref = dtc(blobs, true);
  blobs.forEach((b, i) => assert.equal(toDts(b), ref[i]![1], `tree ${i}`));
});

test('hundreds of random trees print exactly as dtc prints them; checkFdt-clean trees pass dtc unforced', () => {
  const trees = fc.sample(treeArb, { numRuns: 300, seed: 0x10ad });
  const blobs = build(trees);
  const forced = dtc(blobs, true);
  const plain = dtc(blobs, false);
  let clean = 0;
  blobs.forEach((b, i) => {
    assert.equal(forced[i]![0], 0, `dtc -f failed on tree ${i}`);
    assert.equal(toDts(b), forced[i]![1], `tree ${i}: ${JSON.stringify(trees[i])}`);
    const problems = checkFdt(b);
    if (problems.length === 0) {
      clean++;
      assert.equal(plain[i]![0], 0, `checkFdt accepts tree ${i} but dtc refuses it`);
      assert.equal(plain[i]![1], forced[i]![1]);
    }
    if (plain[i]![0] !== 0) assert.ok(problems.length > 0, `dtc refuses tree ${i} but checkFdt finds nothing`);
  });
  assert.ok(clean > 100, `only ${clean} random trees were clean`);
});

test('toJson decodes the KHO root: strings, little-endian u64s, children', () => {
  const j = toJson(fixture('handover-memory/kho-fdt-at-kexec.dtb'));
  assert.equal(j.header.totalsize, 285);
  assert.deepEqual(j.reserveMap, []);
  const compat = j.root.properties.find((p) => p.name === 'compatible')!;
  assert.equal(compat.string, 'kho-v4');
  assert.equal(compat.hex, '6b686f2d763400');
  const mm = j.root.properties.find((p) => p.name === 'preserved-memory-map')!;
  assert.equal(mm.u64le, '0x1ef000');
  assert.deepEqual(j.root.children.map((c) => c.path), ['/LUO', '/kexec-metadata']);
  const luo = j.root.children[0]!;
  assert.equal(luo.properties.find((p) => p.name === 'preserved-data')!.u64le, '0x3ac000');
  assert.equal(luo.properties.find((p) => p.name === 'blob-size')!.u64le, '0x20');
  assert.doesNotThrow(() => JSON.stringify(j));
});

test('random trees that break dtc rules: forced output matches, and checkFdt flags exactly what dtc refuses', () => {
  const trees = fc.sample(hostileArb, { numRuns: 250, seed: 0xbad });
  const blobs = build(trees);
  const forced = dtc(blobs, true);
  const plain = dtc(blobs, false);
  let refused = 0;
  blobs.forEach((b, i) => {
    assert.equal(forced[i]![0], 0, `dtc -f failed on tree ${i}`);
    assert.equal(toDts(b), forced[i]![1], `tree ${i}: ${JSON.stringify(trees[i])}`);
    const problems = checkFdt(b);
    if (plain[i]![0] !== 0) refused++;
    if (problems.length === 0) assert.equal(plain[i]![0], 0, `checkFdt accepts tree ${i} but dtc refuses it`);
    else if (!problems.some((p) => p.message.includes('empty name'))) assert.notEqual(plain[i]![0], 0, `dtc accepts tree ${i} but checkFdt says ${JSON.stringify(problems)}`);
  });
  assert.ok(refused > 50 && refused < 240, `${refused} of 250 hostile trees refused`);
});
