/**
 * checkFdt / assertValidFdt and Fdt.open on bad input: every header field out of range, truncation at
 * every length, and hand-assembled structure blocks with one defect each — code and byte offset.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checkFdt, assertValidFdt, type FdtProblem } from '../../src/fdt/check.ts';
import { Fdt } from '../../src/fdt/ro.ts';
import { FdtError, type FdtErrCode } from '../../src/fdt/format.ts';

const FIX = new URL('../fixtures/real-kernel/', import.meta.url);
const kho = (): Uint8Array => Uint8Array.from(readFileSync(new URL('handover-memory/kho-fdt-at-kexec.dtb', FIX)));

const put32 = (b: Uint8Array, off: number, v: number): Uint8Array => {
  new DataView(b.buffer, b.byteOffset).setUint32(off, v >>> 0);
  return b;
};
const withWord = (off: number, v: number): Uint8Array => put32(kho(), off, v);

function expectFirst(blob: Uint8Array, code: FdtErrCode, offset: number, what?: RegExp): FdtProblem {
  const problems = checkFdt(blob);
  assert.ok(problems.length > 0, `expected ${code}@${offset}, got no problem`);
  const [p] = problems;
  assert.equal(p!.code, code, JSON.stringify(problems));
  assert.equal(p!.offset, offset, JSON.stringify(problems));
  if (what) assert.match(p!.message, what);
  assert.throws(() => assertValidFdt(blob), (e: unknown) => e instanceof FdtError && e.code === code && e.offset === offset);
  return p!;
}

// ---- a tiny assembler for hand-made structure blocks ----

const FDT_BEGIN_NODE = 1, FDT_END_NODE = 2, FDT_PROP = 3, FDT_NOP = 4, FDT_END = 9;
type Tok = number | { name: string } | { prop: number; value: Uint8Array | number[]; len?: number } | { raw: number[] };
const u32 = (v: number): number[] => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const pad4 = (a: number[]): number[] => { while (a.length % 4) a.push(0); return a; };

function struct(toks: Tok[]): number[] {
  const out: number[] = [];
  for (const t of toks) {
    if (typeof t === 'number') out.push(...u32(t));
    else if ('name' in t) { out.push(...u32(FDT_BEGIN_NODE), ...Array.from(t.name, (c) => c.charCodeAt(0)), 0); pad4(out); }
    else if ('prop' in t) { out.push(...u32(FDT_PROP), ...u32(t.len ?? t.value.length), ...u32(t.prop), ...t.value); pad4(out); }
    else out.push(...t.raw);
  }
  return out;
}

/** A v17 blob: header, an empty reservation map at 40, the structure block, the strings block. */
function assemble(st: number[], strings: string, patch: Record<number, number> = {}): Uint8Array {
  const strBytes = Array.from(strings, (c) => c.charCodeAt(0));
  const sOff = 56;
  const strOff = sOff + st.length;
  const total = strOff + strBytes.length;
  const b = new Uint8Array(total);
  [0xd00dfeed, total, sOff, strOff, 40, 17, 16, 0, strBytes.length, st.length].forEach((v, i) => put32(b, i * 4, v));
  b.set(st, sOff);
  b.set(strBytes, strOff);
  for (const [off, v] of Object.entries(patch)) put32(b, Number(off), v);
  return b;
}

const S = 56; // where assemble() puts the structure block
const STR = 'compatible\0reg\0';

test('the real KHO FDTs are valid; the truncated debugfs out/fdt is reported at header offset 4', () => {
  for (const f of ['handover-memory/kho-fdt-at-kexec.dtb', 'debugfs/s2-boot/in/fdt', 'debugfs/s2-after-finish/in/fdt']) {
    assert.deepEqual(checkFdt(readFileSync(new URL(f, FIX))), [], f);
  }
  for (const f of ['debugfs/s1-boot/out/fdt', 'debugfs/s1-after-preserve/out/fdt']) {
    const blob = readFileSync(new URL(f, FIX));
    assert.equal(blob.length, 233);
    const problems = checkFdt(blob);
    assert.deepEqual(problems.map((p) => [p.code, p.offset]), [['TRUNCATED', 4]]);
    assert.match(problems[0]!.message, /totalsize 285 > 233 available bytes/);
    assert.throws(() => Fdt.open(blob), (e: unknown) => e instanceof FdtError && e.code === 'TRUNCATED' && e.offset === 4);
  }
});

test('truncated at every length: TRUNCATED at 0 inside the header, at 4 (totalsize) after it', () => {
  const blob = kho();
  for (let n = 0; n < blob.length; n++) {
    const cut = blob.subarray(0, n);
    expectFirst(cut, 'TRUNCATED', n < 40 ? 0 : 4);
    assert.throws(() => Fdt.open(cut), FdtError);
  }
  assert.deepEqual(checkFdt(blob), []);
  assert.deepEqual(checkFdt(Uint8Array.from([...blob, 1, 2, 3])), [], 'bytes after totalsize are ignored');
});

test('header fields: magic, versions, totalsize, block offsets and sizes, alignment, overlap', () => {
  expectFirst(withWord(0, 0xfeedd00d), 'BADMAGIC', 0);
  expectFirst(withWord(20, 15), 'BADVERSION', 20, /version 15/);
  expectFirst(withWord(24, 18), 'BADVERSION', 24);
  expectFirst(put32(withWord(20, 16), 24, 17), 'BADVERSION', 20, /older than its last_comp_version/);
  expectFirst(withWord(4, 0xffffffff), 'TRUNCATED', 4, /totalsize 4294967295/);
  expectFirst(withWord(4, 0x80000000), 'TRUNCATED', 4);
  expectFirst(withWord(4, 20), 'TRUNCATED', 4);
  expectFirst(withWord(4, 1 << 30), 'TRUNCATED', 4, /available/); // a 1 GiB claim, nothing allocated
  expectFirst(withWord(16, 0), 'TRUNCATED', 16); // reservation map inside the header
  expectFirst(withWord(16, 300), 'TRUNCATED', 16);
  expectFirst(withWord(8, 300), 'TRUNCATED', 8);
  expectFirst(withWord(36, 0xffffffff), 'TRUNCATED', 36); // size_dt_struct wraps
  expectFirst(withWord(36, 1000), 'TRUNCATED', 36);
  expectFirst(withWord(12, 290), 'TRUNCATED', 12);
  expectFirst(withWord(32, 58), 'TRUNCATED', 32);
  expectFirst(withWord(32, 0xfffffff0), 'TRUNCATED', 32);
  expectFirst(withWord(16, 44), 'ALIGNMENT', 16);
  expectFirst(withWord(8, 58), 'ALIGNMENT', 8);
  expectFirst(withWord(36, 170), 'ALIGNMENT', 36);
  expectFirst(withWord(12, 200), 'BADLAYOUT', 12, /overlaps/);
  // every header problem at once, in libfdt's order
  const many = withWord(8, 300);
  put32(many, 12, 300);
  assert.deepEqual(checkFdt(many).map((p) => [p.code, p.offset]), [['TRUNCATED', 8], ['TRUNCATED', 12]]);
});

test('reservation map: unterminated inside totalsize, overlapping another block', () => {
  const blob = kho();
  expectFirst(withWord(16, 280), 'TRUNCATED', 280, /no terminating entry/);
  const over = assemble(struct([{ name: '' }, FDT_END_NODE, FDT_END]), '\0'.repeat(16));
  put32(over, 16, 72); // the map now sits on the strings block
  assert.equal(over.length, 88);
  expectFirst(over, 'BADLAYOUT', 72, /strings block/);
  assert.deepEqual(checkFdt(blob), []);
});

test('structure block defects, each at its byte offset', () => {
  const ok = assemble(struct([{ name: '' }, { prop: 0, value: [0x61, 0] }, { name: 'a@1' }, FDT_END_NODE, FDT_END_NODE, FDT_END]), STR);
  assert.deepEqual(checkFdt(ok), []);

  // node name runs to the end of the structure block
  expectFirst(assemble(struct([{ name: '' }, { raw: [...u32(FDT_BEGIN_NODE), 0x61, 0x62, 0x63, 0x64] }]), STR), 'BADSTRUCTURE', S + 12, /not NUL-terminated/);
  // property name offset outside the strings block
  expectFirst(assemble(struct([{ name: '' }, { prop: 1000, value: [] }, FDT_END_NODE, FDT_END]), STR), 'BADOFFSET', S + 8 + 8, /outside the 15-byte strings block/);
  // property name not terminated inside the strings block
  expectFirst(assemble(struct([{ name: '' }, { prop: 11, value: [] }, FDT_END_NODE, FDT_END]), 'compatible\0reg'), 'TRUNCATED', S + 28 + 11, /not NUL-terminated/);
  // unbalanced nesting: FDT_END with a node open
  expectFirst(assemble(struct([{ name: '' }, { name: 'a' }, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S + 20, /FDT_END inside node/);
  // END_NODE above the root
  expectFirst(assemble(struct([{ name: '' }, FDT_END_NODE, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S + 12, /above the root/);
  // no FDT_END at all
  expectFirst(assemble(struct([{ name: '' }, FDT_END_NODE]), STR), 'TRUNCATED', S + 12, /without FDT_END/);
  // property length past the block, and a 4 GiB one
  expectFirst(assemble(struct([{ name: '' }, { prop: 0, value: [1, 2, 3, 4], len: 0x7fffffff }, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S + 12, /length 2147483647 runs past/);
  expectFirst(assemble(struct([{ name: '' }, { prop: 0, value: [], len: 0xffffffff }, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S + 12);
  // a property header cut by the end of the block
  expectFirst(assemble(struct([{ name: '' }, { raw: [...u32(FDT_PROP), 0, 0, 0, 0] }]), STR), 'BADSTRUCTURE', S + 8, /header runs past/);
  // unknown token
  expectFirst(assemble(struct([{ name: '' }, 5, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S + 8, /invalid token 0x5/);
  // something after FDT_END
  expectFirst(assemble(struct([{ name: '' }, FDT_END_NODE, FDT_END, FDT_NOP]), STR), 'BADSTRUCTURE', S + 16, /follow FDT_END/);
  // no root first; NOP at top level; two roots
  expectFirst(assemble(struct([FDT_NOP, { name: '' }, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S, /starts with token 0x4/);
  expectFirst(assemble(struct([FDT_END]), STR), 'BADSTRUCTURE', S);
  expectFirst(assemble(struct([{ name: '' }, FDT_END_NODE, FDT_NOP, FDT_END]), STR), 'BADSTRUCTURE', S + 12, /NOP outside the root/);
  expectFirst(assemble(struct([{ name: '' }, FDT_END_NODE, { name: 'x' }, FDT_END_NODE, FDT_END]), STR), 'BADSTRUCTURE', S + 12, /second top-level node/);
  // NOPs inside a node are fine
  assert.deepEqual(checkFdt(assemble(struct([{ name: '' }, FDT_NOP, { name: 'a' }, FDT_NOP, FDT_END_NODE, FDT_END_NODE, FDT_END]), STR)), []);
});

test('names and values dtc refuses: duplicates, characters, "@@", empty names, "name" and phandle', () => {
  const one = (toks: Tok[], strings = STR): Uint8Array => assemble(struct([{ name: '' }, ...toks, FDT_END_NODE, FDT_END]), strings);
  expectFirst(one([{ prop: 0, value: [] }, { prop: 0, value: [1] }]), 'BADSTRUCTURE', S + 8 + 12, /duplicate property name "compatible"/);
  expectFirst(one([{ name: 'a' }, FDT_END_NODE, { name: 'a' }, FDT_END_NODE]), 'BADSTRUCTURE', S + 8 + 8 + 4, /duplicate node name "a"/);
  expectFirst(one([{ name: 'a!b' }, FDT_END_NODE]), 'BADSTRUCTURE', S + 8 + 4 + 1, /bad character '!' in node name/);
  expectFirst(one([{ name: 'a@1@2' }, FDT_END_NODE]), 'BADSTRUCTURE', S + 8 + 4, /multiple '@'/);
  expectFirst(one([{ name: '' }, FDT_END_NODE]), 'BADSTRUCTURE', S + 8 + 4, /empty name/);
  expectFirst(one([{ prop: 0, value: [] }], 'bad name\0'), 'BADSTRUCTURE', S + 8, /bad character ' ' in property name/);
  const names = 'name\0phandle\0linux,phandle\0';
  expectFirst(one([{ name: 'x@1' }, { prop: 0, value: [0x79, 0] }, FDT_END_NODE], names), 'BADVALUE', S + 16, /differs from the node's base name/);
  expectFirst(one([{ name: 'x' }, { prop: 0, value: [0x78] }, FDT_END_NODE], names), 'BADVALUE', S + 16, /not a string/);
  assert.deepEqual(checkFdt(one([{ name: 'x@1' }, { prop: 0, value: [0x78, 0] }, FDT_END_NODE], names)), []);
  expectFirst(one([{ prop: 5, value: [0, 0, 0, 0] }], names), 'BADVALUE', S + 8, /bad value \(0x0\)/);
  expectFirst(one([{ prop: 5, value: [0, 0, 1] }], names), 'BADVALUE', S + 8, /bad length \(3\)/);
  expectFirst(one([{ prop: 5, value: [0, 0, 0, 1] }, { prop: 13, value: [0, 0, 0, 2] }], names), 'BADVALUE', S, /mismatching/);
  expectFirst(one([{ prop: 5, value: [0, 0, 0, 1] }, { name: 'a' }, { prop: 5, value: [0, 0, 0, 1] }, FDT_END_NODE], names), 'BADVALUE', S + 24, /duplicated phandle 0x1/);
});

test('nesting deeper than 64 is refused without recursion', () => {
  const deep = (n: number): Uint8Array => assemble(struct([{ name: '' }, ...Array.from({ length: n }, () => ({ name: 'd' })), ...Array(n + 1).fill(FDT_END_NODE), FDT_END]), STR);
  assert.deepEqual(checkFdt(deep(64)), []);
  expectFirst(deep(65), 'BADSTRUCTURE', S + 8 + 64 * 8, /deeper than 64/);
  const huge = deep(20000);
  assert.equal(checkFdt(huge)[0]!.code, 'BADSTRUCTURE');
  const fdt = Fdt.open(huge);
  assert.throws(() => fdt.walkNodes(() => {}), (e: unknown) => e instanceof FdtError && e.code === 'BADSTRUCTURE');
});
