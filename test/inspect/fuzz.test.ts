/**
 * fast-check properties: random byte and u64 mutations of a hand-over (the real 7.3.4 pages, as
 * pages and as an ELF core; a luo machine's ELF core), random truncations, and random ELF header
 * fields never make `luo inspect` throw or hang: it always returns a report.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Machine } from '../../src/kernel/machine.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { inspectInput } from '../../src/inspect/inspect.ts';
import { openElfCore } from '../../src/inspect/elf.ts';
import { toHuman, toJson } from '../../src/inspect/format.ts';
import { Problems, type Report } from '../../src/inspect/report.ts';
import { captureAtKexec, memInput, realPages, writeElfCore } from './helpers.ts';
import { scaled } from '../helpers/scale.ts';

const TIME_LIMIT_MS = 5000;

function checked(run: () => Report): Report {
  const t0 = performance.now();
  const r = run();
  const ms = performance.now() - t0;
  assert.ok(ms < TIME_LIMIT_MS, `inspect took ${ms} ms`);
  assert.ok(Array.isArray(r.problems));
  // A decoder bug shows up as an "internal error" problem: there must be none.
  const internal = r.problems.find((p) => p.where === 'inspect');
  assert.equal(internal, undefined, internal?.message);
  // Both printers work on whatever was decoded.
  assert.ok(toHuman(r).length > 0);
  JSON.parse(toJson(r));
  return r;
}

function inspectElfBytes(bytes: Uint8Array): Report {
  const problems = new Problems();
  const core = openElfCore(bytes, problems);
  return inspectInput({ kind: 'elf', path: 'fuzz.elf', view: core.view, close: core.close }, { memfdContents: 8 }, problems);
}

const base = realPages();
const pageList = [...base.keys()];
/** u64 values that steer walks into interesting places: other pages, loops, edges, garbage. */
const interesting = fc.oneof(
  fc.constantFrom(...pageList),
  fc.constantFrom(0n, 1n, 51n, 52n, 63n, 64n, 0xfffn, 0x1000n, 0xffffffffn, 0xffffffffffffffffn, 1n << 52n, 1n << 63n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);
const mutation = fc.record({
  page: fc.integer({ min: 0, max: pageList.length - 1 }),
  offset: fc.integer({ min: 0, max: 4095 }),
  kind: fc.constantFrom('byte', 'u64'),
  byte: fc.integer({ min: 0, max: 255 }),
  value: interesting,
});

test('random mutations of the real pages: always a report, never a throw or a hang', () => {
  fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 12 }), (muts) => {
    const pages = new Map([...base].map(([pa, b]) => [pa, b.slice()]));
    for (const m of muts) {
      const b = pages.get(pageList[m.page]!)!;
      // u64 writes land on 8-byte boundaries, where the ABI keeps its pointers and counts.
      if (m.kind === 'u64') new DataView(b.buffer).setBigUint64(m.offset & ~7, BigInt.asUintN(64, m.value), true);
      else b[m.offset] = m.byte;
    }
    checked(() => inspectInput(memInput(pages), { memfdContents: 8 }));
  }), { numRuns: scaled(300, 6000) });
});

test('random byte mutations and truncations of an ELF core: always a report', () => {
  const elf = writeElfCore([...base].map(([pa, bytes]) => ({ pa, bytes })));
  const headerBytes = 64 + 56 * new DataView(elf.buffer).getUint16(56, true);
  fc.assert(fc.property(
    fc.array(fc.record({ at: fc.oneof(fc.integer({ min: 0, max: headerBytes - 1 }), fc.integer({ min: 0, max: elf.length - 1 })), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 16 }),
    fc.option(fc.integer({ min: 0, max: elf.length }), { nil: undefined }),
    (muts, cut) => {
      let b = elf.slice();
      for (const m of muts) b[m.at] = m.byte;
      if (cut !== undefined) b = b.slice(0, cut);
      checked(() => inspectElfBytes(b));
    },
  ), { numRuns: scaled(300, 6000) });
});

test('random mutations of a luo machine\'s ELF core at kexec: always a report', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const k = m.kernel;
  k.luo!.open();
  for (let s = 0; s < 3; s++) {
    const sess = k.luo!.createSession(`s${s}`);
    for (let f = 0; f < 2; f++) {
      const fd = memfdCreate(k.memfd, 'x', 0);
      fd.pwrite(new Uint8Array(3 * 4096 + s).fill(s + f), 0);
      k.luo!.sessions.preserveFile(sess, BigInt(s * 10 + f), fd);
    }
  }
  const cap = captureAtKexec(m);
  const elf = writeElfCore(cap.segs);
  const clean = inspectElfBytes(elf);
  assert.equal(clean.sessions.length, 3);
  // Mutate the pages the decoder reads most: headers of every captured page.
  const dv = new DataView(elf.buffer);
  const dataStart = Number(dv.getBigUint64(64 + 56 + 8, true));
  fc.assert(fc.property(
    fc.array(fc.record({ page: fc.nat(), word: fc.integer({ min: 0, max: 31 }), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }), { minLength: 1, maxLength: 8 }),
    (muts) => {
      const b = elf.slice();
      const v = new DataView(b.buffer);
      const pages = (b.length - dataStart) / 4096;
      for (const x of muts) v.setBigUint64(dataStart + (x.page % pages) * 4096 + x.word * 8, x.value, true);
      checked(() => inspectElfBytes(b));
    },
  ), { numRuns: scaled(200, 4000) });
});
