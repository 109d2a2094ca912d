/**
 * Property tests on mutated blobs (bit flips, byte and u32 overwrites, header words, truncations):
 * checkFdt never throws, the reader either refuses with FdtError or walks the whole tree, and what
 * checkFdt accepts is accepted by C libfdt's fdt_check_full and by dtc, which prints it as toDts does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { checkFdt } from '../../src/fdt/check.ts';
import { Fdt } from '../../src/fdt/ro.ts';
import { toDts } from '../../src/fdt/dts.ts';
import { toJson } from '../../src/fdt/json.ts';
import { FDT_ERR, FdtError } from '../../src/fdt/format.ts';
import { scaled } from '../helpers/scale.ts';

function run(cmd: string, args: string[], input?: string | Uint8Array): { status: number; stdout: Buffer } {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 28 });
  if (r.error) assert.fail(`cannot run ${cmd} (install Debian's device-tree-compiler and python3-libfdt): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout };
}

const SOURCES = [
  `/ { compatible = "kho-v4"; preserved-memory-map = [00 f0 1e 00 00 00 00 00];
     LUO { blob-size = [20 00 00 00 00 00 00 00]; preserved-data = [00 c0 3a 00 00 00 00 00]; };
     kexec-metadata { blob-size = [49 00 00 00 00 00 00 00]; preserved-data = [00 70 1f 00 00 00 00 00]; }; };`,
  `/memreserve/ 0x1000 0x2000;
   / { #address-cells = <2>; model = "m"; names = "a", "bb", "";
     cpus { cpu@0 { reg = <0 0>; phandle = <1>; }; cpu@1 { reg = <0 1>; }; };
     mem@80000000 { reg = <0 0x80000000 0 0x1000>; bytes = [01 02 03 04 05]; empty; };
     deep { a { b { c { d { x = "y"; }; }; }; }; }; };`,
  `/ { s = "a\\tb\\n\\\\\\"q"; n = [00 00 00 00]; t = "x", "y"; u = /bits/ 64 <1 2>; v = [ff];
     node-1 { p; }; node-2 { p = <1 2 3>; q = "r"; }; };`,
];

const BASES: Uint8Array[] = [
  ...SOURCES.map((s) => {
    const r = run('dtc', ['-q', '-I', 'dts', '-O', 'dtb', '-'], `/dts-v1/;\n${s}\n`);
    assert.equal(r.status, 0, s);
    return Uint8Array.from(r.stdout);
  }),
  Uint8Array.from(readFileSync(new URL('../fixtures/real-kernel/handover-memory/kho-fdt-at-kexec.dtb', import.meta.url))),
];

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'byte'; at: number; v: number }
  | { kind: 'u32'; at: number; v: number }
  | { kind: 'header'; word: number; v: number }
  | { kind: 'cut'; at: number };

const u32Arb = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 400 }), fc.constantFrom(0, 1, 2, 3, 4, 9, 16, 17, 0x7fffffff, 0x80000000, 0xffffffff, 0xd00dfeed));
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), v: u32Arb }),
  fc.record({ kind: fc.constant('header' as const), word: fc.integer({ min: 0, max: 9 }), v: u32Arb }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
);

function mutate(base: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = Uint8Array.from(base);
  for (const m of ms) {
    if (b.length === 0) break;
    const dv = new DataView(b.buffer);
    switch (m.kind) {
      case 'flip': b[m.at % b.length]! ^= 1 << m.bit; break;
      case 'byte': b[m.at % b.length] = m.v; break;
      case 'u32': if (b.length >= 4) dv.setUint32((m.at % (b.length >> 2)) * 4, m.v); break;
      case 'header': if (b.length >= 40) dv.setUint32(m.word * 4, m.v); break;
      case 'cut': b = b.slice(0, m.at % b.length); break;
    }
  }
  return b;
}

/** Reads everything the reader offers; returns normally or throws FdtError, never anything else. */
function readAll(b: Uint8Array): void {
  const fdt = Fdt.open(b);
  fdt.reserveMap();
  let nodes = 0;
  fdt.walkNodes((off) => {
    nodes++;
    fdt.getName(off);
    for (const p of fdt.properties(off)) fdt.getProp(off, p.name);
    fdt.subnodeList(off);
  });
  assert.ok(nodes <= b.length / 8);
  fdt.tree();
  toDts(b);
  toJson(b);
}

const CODES = new Set(Object.keys(FDT_ERR));

test('mutated blobs: checkFdt returns problems, the reader throws only FdtError, acceptance agrees with libfdt and dtc', () => {
  const accepted: Uint8Array[] = [];
  const openable: Uint8Array[] = [];
  const rejected: Uint8Array[] = [];
  fc.assert(
    fc.property(fc.integer({ min: 0, max: BASES.length - 1 }), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (i, ms) => {
      const b = mutate(BASES[i]!, ms);
      const problems = checkFdt(b);
      for (const p of problems) {
        assert.ok(CODES.has(p.code) && Number.isInteger(p.offset) && p.offset >= 0 && p.message.length > 0, JSON.stringify(p));
      }
      let opened = false;
      try {
        readAll(b);
        opened = true;
      } catch (e) {
        if (!(e instanceof FdtError)) throw e;
        assert.ok(problems.length > 0, `the reader refused a blob checkFdt accepts: ${e.message}`);
      }
      if (problems.length === 0) accepted.push(b);
      else (opened ? openable : rejected).push(b);
    }),
    { numRuns: scaled(3000, 60000), seed: 7 },
  );
  console.log(`fuzz: ${accepted.length} accepted, ${openable.length} openable, ${rejected.length} rejected`);
  assert.ok(accepted.length > 100 && rejected.length > 500, `${accepted.length} accepted, ${rejected.length} rejected`);

  // C libfdt: whatever checkFdt accepts passes fdt_check_full; a header libfdt refuses, Fdt.open refuses
  const sample = [...accepted.slice(0, 300), ...rejected.slice(0, 700), ...openable.slice(0, 300)];
  const py = run('/usr/bin/python3', ['-c', `
import sys, libfdt
for h in sys.stdin.read().split():
    b = bytearray.fromhex(h)
    pad = b + bytearray(64)
    full = libfdt.fdt_check_full(b, len(b)) if len(b) >= 4 else -8
    hdr = libfdt.fdt_check_header(pad)
    print(full, hdr)
`], sample.map((b) => Buffer.from(b).toString('hex') || '00').join('\n'));
  assert.equal(py.status, 0);
  const verdicts = py.stdout.toString().trim().split('\n').map((l) => l.split(' ').map(Number) as [number, number]);
  sample.forEach((b, k) => {
    const [full, hdr] = verdicts[k]!;
    if (k < Math.min(300, accepted.length)) assert.equal(full, 0, `libfdt refuses accepted blob ${Buffer.from(b).toString('hex')}`);
    const total = b.length >= 8 ? new DataView(b.buffer).getUint32(4) : Infinity;
    if (hdr !== 0 || b.length < total) assert.throws(() => Fdt.open(b), FdtError);
  });

  // dtc: accepted blobs decompile without -f, exactly as toDts prints them
  const dir = mkdtempSync(join(tmpdir(), 'luo-fuzz-'));
  try {
    for (const b of accepted.slice(0, 120)) {
      const f = join(dir, 'x.dtb');
      writeFileSync(f, b);
      const r = run('dtc', ['-I', 'dtb', '-O', 'dts', f]);
      assert.equal(r.status, 0, `dtc refuses a blob checkFdt accepts: ${Buffer.from(b).toString('hex')}`);
      assert.equal(toDts(b), r.stdout.toString('latin1'));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('random garbage and random headers never crash or hang the check or the reader', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(u32Arb, { minLength: 10, maxLength: 10 }), fc.boolean(), (bytes, words, withHeader) => {
      const b = Uint8Array.from(bytes);
      if (withHeader && b.length >= 40) {
        const dv = new DataView(b.buffer);
        words.forEach((w, i) => dv.setUint32(i * 4, i === 0 ? 0xd00dfeed : w));
      }
      checkFdt(b);
      try { readAll(b); } catch (e) { if (!(e instanceof FdtError)) throw e; }
    }),
    { numRuns: scaled(3000, 60000), seed: 11 },
  );
});
