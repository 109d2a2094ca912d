/**
 * `luo inspect` on broken hand-overs: each corruption of the real 7.3.4 pages (a loop, the 7.3.4
 * empty trailing block, counts, pointers, file counts, handler compat, folio indexes, unpreserved
 * pages) and of ELF headers is reported with its location, while everything else still decodes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspectInput, inspectPath } from '../../src/inspect/inspect.ts';
import { openElfCore } from '../../src/inspect/elf.ts';
import { Problems, isFault, type Problem, type Report } from '../../src/inspect/report.ts';
import { memInput, realPages, setU64, tmp, writeElfCore } from './helpers.ts';

const SESSIONS = 0x3f83d000n;
const FILES_A = 0x3ef000n;
const FOLIOS_2B = 0x3f829000n;

function inspectPages(mutate: (p: Map<bigint, Uint8Array>) => void): Report {
  const pages = realPages();
  mutate(pages);
  return inspectInput(memInput(pages), {});
}

function expectProblem(r: Report, where: string | RegExp, message: RegExp): Problem {
  const hit = r.problems.find((p) => p.severity === 'error' && (typeof where === 'string' ? p.where === where : where.test(p.where)) && message.test(p.message));
  assert.ok(hit, `no error at ${String(where)} matching ${message}; got:\n${r.problems.map((p) => `${p.severity} ${p.where}: ${p.message}`).join('\n')}`);
  return hit;
}

test('a loop in the session chain', () => {
  const r = inspectPages((p) => setU64(p.get(SESSIONS)!, 0, SESSIONS));
  expectProblem(r, 'session block 1 @0x3f83d000', /next of block 0 points back to block 0 @0x3f83d000: the chain loops/);
  assert.equal(r.sessions.length, 3, 'the sessions before the loop still decode');
});

test('an empty trailing session block: count 0, named as the 7.3.4 duplicate-create defect', () => {
  const r = inspectPages((p) => {
    setU64(p.get(SESSIONS)!, 0, 0x3f83e000n);
    p.set(0x3f83e000n, new Uint8Array(4096));
  });
  const e = expectProblem(r, 'session block 1 @0x3f83e000', /invalid entry count: 0/);
  assert.match(e.message, /Linux 7\.3\.4.*duplicate CREATE_SESSION.*51 sessions/);
  expectProblem(r, 'session block 1 @0x3f83e000', /block 0x3f83e000 is not preserved/);
  assert.equal(r.sessions.length, 3);
});

test('a block count above capacity', () => {
  const r = inspectPages((p) => setU64(p.get(SESSIONS)!, 8, 52n));
  expectProblem(r, 'session block 0 @0x3f83d000', /invalid entry count: 52 \(capacity 51\)/);
  const f = inspectPages((p) => setU64(p.get(FILES_A)!, 8, 64n));
  expectProblem(f, 'session "conf-session-a" file block 0 @0x3ef000', /invalid entry count: 64 \(capacity 63\)/);
});

test('a pointer outside memory', () => {
  const r = inspectPages((p) => setU64(p.get(SESSIONS)!, 0, 0x7000000n));
  expectProblem(r, 'session block 1 @0x7000000', /next of block 0 pointer 0x7000000 points outside memory/);
  const m = inspectPages((p) => setU64(p.get(FILES_A)!, 16 + 48, 0x123456000n));
  expectProblem(m, /^session "conf-session-a" file 0 \(token 0x1a\) @0x3ef010$/, /data \(memfd_luo_ser\) 0x123456000 points outside memory/);
});

test('a file count mismatch', () => {
  const r = inspectPages((p) => setU64(p.get(SESSIONS)!, 16 + 72, 4n));
  expectProblem(r, 'session 0 "conf-session-a" @0x3f83d010', /file count mismatch: the session says 4, its file blocks hold 3/);
  const z = inspectPages((p) => setU64(p.get(SESSIONS)!, 16 + 80 + 72, 2n));
  expectProblem(z, 'session 1 "conf-session-b-empty" @0x3f83d060', /file count mismatch: count is 2 but there are no file blocks/);
});

test('an unknown handler compatible', () => {
  const r = inspectPages((p) => {
    const b = p.get(FILES_A)!;
    b.fill(0, 16, 16 + 48);
    b.set(new TextEncoder().encode('bogus-v9'), 16);
  });
  expectProblem(r, 'session "conf-session-a" file 0 (token 0x1a) @0x3ef010', /unknown handler compatible "bogus-v9"/);
  assert.equal(r.sessions[0]!.files.length, 3);
});

test('a memfd folio index beyond the file size', () => {
  const r = inspectPages((p) => setU64(p.get(FOLIOS_2B)!, 3 * 16 + 8, 4n));
  expectProblem(r, 'session "conf-session-a" file 1 (token 0x2b) @0x3ef050 folio 3', /index 4 is beyond the file: page offset 0x4000 >= size 16384/);
});

test('a referenced page the tracker does not preserve', () => {
  const r = inspectPages((p) => {
    p.set(0x5000000n, p.get(FILES_A)!.slice());
    setU64(p.get(SESSIONS)!, 16 + 64, 0x5000000n);
  });
  expectProblem(r, 'session "conf-session-a" file block 0 @0x5000000', /block 0x5000000 is not preserved by the KHO tracker/);
  assert.equal(r.sessions[0]!.files.length, 3, 'the files still decode');
  // A folio page dropped from the tracker: clear pfn 0x11ce's bit in its leaf.
  const f = inspectPages((p) => {
    for (const [pa, b] of p) if (pa === 0x1f5000n || pa === 0x3ee000n) b[0x11ce >> 3]! &= ~(1 << (0x11ce & 7));
  });
  expectProblem(f, 'session "conf-session-a" file 0 (token 0x1a) @0x3ef010 folio 0', /folio 0x11ce000 is not preserved/);
});

test('bad luo_ser and FLB page', () => {
  const r = inspectPages((p) => p.get(0x3ac000n)!.set(new TextEncoder().encode('luo-v9\0'), 0));
  expectProblem(r, 'luo_ser @0x3ac000', /compatible "luo-v9\\x00\\x00" is not "luo-v3" or "luo-v4" or "luo-v5" or "luo-v5;block-v1"/);
  assert.equal(r.sessions.length, 0);
  const f = inspectPages((p) => setU64(p.get(0x3ad000n)!, 0, 2n));
  expectProblem(f, 'FLB page @0x3ad000', /pgcnt 2, luo-v5 writes 1/);
});

test('a loop in the radix tree', () => {
  const r = inspectPages((p) => setU64(p.get(0x1f4000n)!, 8 * 5, 0x1f2000n));
  expectProblem(r, /^KHO radix L1 @0x1f4000 \[5\]$/, /reaches node 0x1f2000 a second time/);
});

// ---------------------------------------------------------------- ELF

const elf = (): Uint8Array => writeElfCore([...realPages()].map(([pa, bytes]) => ({ pa, bytes })));

function inspectElf(bytes: Uint8Array): Report {
  const problems = new Problems();
  const core = openElfCore(bytes, problems);
  return inspectInput({ kind: 'elf', path: 'x.elf', view: core.view, close: core.close }, {}, problems);
}

test('the real pages as an ELF core decode cleanly', () => {
  const r = inspectElf(elf());
  assert.deepEqual(r.problems.filter(isFault), []);
  assert.equal(r.sessions.length, 3);
});

test('corrupt ELF headers are reported with their offsets', () => {
  const cases: [string, (b: Uint8Array) => Uint8Array, string, RegExp][] = [
    ['bad magic', (b) => { b[1] = 0x45 + 1; return b; }, 'ELF header @offset 0x1', /bad ELF magic/],
    ['ELF32', (b) => { b[4] = 1; return b; }, 'ELF header @offset 0x4 (EI_CLASS)', /ELF32 core dumps are not supported/],
    ['bad EI_DATA', (b) => { b[5] = 9; return b; }, 'ELF header @offset 0x5 (EI_DATA)', /invalid EI_DATA 9/],
    ['short header', (b) => b.slice(0, 30), 'ELF header @offset 0x0', /truncated: the file is 30 bytes, an ELF64 header needs 64/],
    ['phoff outside', (b) => { new DataView(b.buffer).setBigUint64(32, 0xfffffff0n, true); return b; }, 'ELF header @offset 0x20 (e_phoff)', /program header table \[0xfffffff0, .*\) .* is not inside the \d+-byte file/],
    ['phentsize', (b) => { new DataView(b.buffer).setUint16(54, 32, true); return b; }, 'ELF header @offset 0x36 (e_phentsize)', /e_phentsize 32, expected 56/],
    ['no phdrs', (b) => { new DataView(b.buffer).setUint16(56, 0, true); return b; }, 'ELF header @offset 0x38 (e_phnum)', /no program headers/],
    ['all paddr 0', (b) => { const dv = new DataView(b.buffer); for (let i = 1; i < dv.getUint16(56, true); i++) dv.setBigUint64(64 + i * 56 + 24, 0n, true); return b; }, 'ELF program headers', /p_paddr 0/],
  ];
  for (const [name, mutate, where, msg] of cases) {
    const r = inspectElf(mutate(elf()));
    assert.ok(r.problems.some((p) => p.severity === 'error' && p.where === where && msg.test(p.message)), `${name}: ${JSON.stringify(r.problems)}`);
    assert.equal(r.root, null, name);
  }
});

test('a truncated ELF segment: precise error, the rest still decodes', () => {
  const full = elf();
  const dv = new DataView(full.buffer);
  const n = dv.getUint16(56, true);
  const last = 64 + (n - 1) * 56;
  const off = Number(dv.getBigUint64(last + 8, true));
  const size = Number(dv.getBigUint64(last + 32, true));
  const paddr = dv.getBigUint64(last + 24, true);
  const cut = full.slice(0, off + 100);
  const r = inspectElf(cut);
  const e = r.problems.find((p) => p.where === `ELF program header ${n - 1} @offset 0x${last.toString(16)}`)!;
  assert.ok(e, JSON.stringify(r.problems));
  assert.equal(e.message, `segment truncated: p_offset 0x${off.toString(16)} + p_filesz 0x${size.toString(16)} = 0x${(off + size).toString(16)} > file size 0x${(off + 100).toString(16)} (100 of ${size} bytes present; physical 0x${(paddr + 100n).toString(16)}.. missing)`);
  assert.equal(r.root!.pa, 0x1f0000n, 'the root FDT is in an earlier segment');
  // The last segment holds the session block: its loss is reported where it is referenced.
  expectProblem(r, 'session block 0 @0x3f83d000', /head pointer 0x3f83d000 points outside memory/);
});

test('a missing file and a file that is not memory', async () => {
  const r = await inspectPath('/nonexistent/luo/mem.elf');
  assert.equal(r.problems[0]!.severity, 'error');
  assert.match(r.problems[0]!.message, /no such file or directory \(ENOENT\)/);
  const dir = tmp();
  writeFileSync(join(dir, 'junk'), new Uint8Array(100).fill(7));
  const j = await inspectPath(join(dir, 'junk'));
  assert.match(j.problems[0]!.message, /unrecognised blob of 100 byte\(s\)/);
  const asElf = await inspectPath(join(dir, 'junk'), { kind: 'elf' });
  assert.match(asElf.problems[0]!.message, /bad ELF magic/);
  const asImage = await inspectPath(join(dir, 'junk'), { kind: 'image' });
  assert.match(asImage.problems[0]!.message, /not a usable luo memory image: .*bad magic at offset 0/);
  const noRoot = inspectInput(memInput([{ pa: 0x1000n, bytes: new Uint8Array(8192) }]), {});
  expectProblem(noRoot, 'root FDT scan', /no KHO root FDT in memory/);
});

test('structures shared between owners (a file chain, a memfd descriptor) are reported', () => {
  const r = inspectPages((p) => setU64(p.get(SESSIONS)!, 16 + 2 * 80 + 64, FILES_A));
  expectProblem(r, 'session "conf-session-c-finish-early" file block 0 @0x3ef000', /0x3ef000 is already used as session "conf-session-a" file block 0/);
  const m = inspectPages((p) => setU64(p.get(FILES_A)!, 16 + 64 + 48, 0x3dc000n));
  expectProblem(m, /^session "conf-session-a" file 1 \(token 0x2b\) @0x3ef050 memfd_luo_ser @0x3dc000$/, /already used as the memfd_luo_ser of session "conf-session-a" file 0/);
});
