/**
 * `luo inspect` on luo's own artefacts: a simulated machine captured at kexec (after LUO
 * serialized) saved as a luo memory image and as ELF core dumps (QEMU and vmcore layouts) decodes
 * to exactly the sessions, files, memfd state and bytes that were created; kho-v1 machines too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine } from '../../src/kernel/machine.ts';
import { DEFAULT_BUILD } from '../../src/kernel/kernel.ts';
import { withKhoProfile } from '../../src/kernel/build.ts';
import { F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, SEEK_SET, memfdCreate } from '../../src/handlers/memfd-file.ts';
import { inspectInput, inspectPath } from '../../src/inspect/inspect.ts';
import { memfdData } from '../../src/inspect/memfd.ts';
import { openElfCore } from '../../src/inspect/elf.ts';
import { Problems, isFault, type Report } from '../../src/inspect/report.ts';
import { type Capture, captureAtKexec, saveCaptureImage, tmp, writeElfCore } from './helpers.ts';

const GiB = 1n << 30n;
const PG = 4096;

function pattern(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed || 1;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

interface Made { session: string; token: bigint; data: Uint8Array; pos: number; seals: number }

/** Sessions with memfds of several shapes (holes, sealed, empty, multi-page), then a kexec capture. */
function buildAndCapture(): { cap: Capture; made: Made[]; sessions: string[] } {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  const luo = k.luo!;
  luo.open();
  const made: Made[] = [];
  const sessions = ['vm-1', 'empty', 'vm-2'];
  const s1 = luo.createSession('vm-1');
  luo.createSession('empty');
  const s2 = luo.createSession('vm-2');
  const a = memfdCreate(k.memfd, 'ram', 0);
  const aData = pattern(7, 5 * PG + 123);
  a.pwrite(aData, 0);
  a.lseek(4242, SEEK_SET);
  luo.sessions.preserveFile(s1, 0x1an, a);
  made.push({ session: 'vm-1', token: 0x1an, data: aData, pos: 4242, seals: 0 });
  const b = memfdCreate(k.memfd, 'holes', MFD_ALLOW_SEALING);
  b.ftruncate(4 * PG);
  b.pwrite(new Uint8Array(PG).fill(0x41), 0);
  b.pwrite(new Uint8Array(10).fill(0x43), 2 * PG + 5);
  b.addSeals(F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE);
  const bData = new Uint8Array(4 * PG);
  bData.fill(0x41, 0, PG);
  bData.fill(0x43, 2 * PG + 5, 2 * PG + 15);
  luo.sessions.preserveFile(s1, 0xffffffffffffffffn, b);
  made.push({ session: 'vm-1', token: 0xffffffffffffffffn, data: bData, pos: 0, seals: F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_WRITE });
  const c = memfdCreate(k.memfd, 'empty-file', 0);
  luo.sessions.preserveFile(s2, 7n, c);
  made.push({ session: 'vm-2', token: 7n, data: new Uint8Array(0), pos: 0, seals: 0 });
  // Seals on a memfd without MFD_ALLOW_SEALING: F_SEAL_SEAL only (memfd_create's default).
  made[0]!.seals = 1;
  made[2]!.seals = 1;
  return { cap: captureAtKexec(m), made, sessions };
}

/** The decoded sessions, files and memfd bytes equal what was created; no problems. */
function assertDecoded(r: Report, made: Made[], sessions: string[], read: (pa: bigint, n: number) => Uint8Array): void {
  assert.deepEqual(r.problems.filter(isFault), []);
  assert.equal(r.root!.profile, 'kho-v4');
  assert.equal(r.luo!.compatible, 'luo-v5');
  assert.equal(r.luo!.liveupdateNum, 1n);
  assert.deepEqual(r.sessions.map((s) => s.name), sessions);
  assert.equal(r.sessions[1]!.filesPa, 0n);
  for (const want of made) {
    const s = r.sessions.find((x) => x.name === want.session)!;
    const f = s.files.find((x) => x.token === want.token)!;
    assert.ok(f, `token ${want.token}`);
    assert.equal(f.compatible, 'memfd-v2');
    const m = f.memfd!;
    assert.equal(m.size, BigInt(want.data.length));
    assert.equal(m.pos, BigInt(want.pos));
    assert.equal(m.seals, want.seals, `seals of ${want.token}`);
    const view = { read, has: () => true, ranges: () => [], chunks: () => [], description: '' };
    assert.deepEqual(memfdData(view, m), want.data);
  }
  assert.ok(r.tracker!.blocks > 10);
  assert.ok(r.kexecMetadata && r.kexecMetadata.version === 1 && r.kexecMetadata.previousRelease === DEFAULT_BUILD.release);
  assert.equal(r.flbs!.pgcnt, 1n);
}

const reader = (cap: Capture) => (pa: bigint, n: number): Uint8Array => {
  const s = cap.segs.find((x) => pa >= x.pa && pa + BigInt(n) <= x.pa + BigInt(x.bytes.length))!;
  return s.bytes.slice(Number(pa - s.pa), Number(pa - s.pa) + n);
};

test('a luo memory image saved at kexec decodes to the sessions, files and bytes created', async () => {
  const { cap, made, sessions } = buildAndCapture();
  const dir = tmp();
  await saveCaptureImage(cap, join(dir, 'mem.img'));
  const r = await inspectPath(join(dir, 'mem.img'));
  assert.equal(r.input.kind, 'image');
  assert.equal(r.root!.foundBy, 'image metadata');
  assert.equal(r.root!.pa, cap.fdtAddr);
  assertDecoded(r, made, sessions, reader(cap));
  // Without the metadata the root is found by its compatible string.
  await saveCaptureImage(cap, join(dir, 'bare.img'), false);
  const bare = await inspectPath(join(dir, 'bare.img'));
  assert.equal(bare.root!.foundBy, 'scan');
  assert.equal(bare.root!.pa, cap.fdtAddr);
  assertDecoded(bare, made, sessions, reader(cap));
  // A kexec's image over its base (killed before it was made whole): the same, the base named.
  await saveCaptureImage(cap, join(dir, 'over.img'), true, 'luo.base.1.1.img');
  const over = await inspectPath(join(dir, 'over.img'));
  assert.match(over.input.description, /written over the base image luo\.base\.1\.1\.img beside it/);
  assertDecoded(over, made, sessions, reader(cap));
});

test('ELF core dumps of the same memory (QEMU dump-guest-memory and vmcore layouts) decode the same', async () => {
  const { cap, made, sessions } = buildAndCapture();
  const dir = tmp();
  for (const layout of ['qemu', 'vmcore'] as const) {
    const path = join(dir, `${layout}.elf`);
    writeFileSync(path, writeElfCore(cap.segs, layout));
    const r = await inspectPath(path);
    assert.equal(r.input.kind, 'elf');
    assert.match(r.input.description, layout === 'qemu' ? /dump-guest-memory/ : /vmcore/);
    assert.equal(r.root!.foundBy, 'scan');
    assert.equal(r.root!.pa, cap.fdtAddr);
    assertDecoded(r, made, sessions, reader(cap));
    if (layout === 'vmcore') assert.ok(r.problems.some((p) => p.severity === 'info' && /overlaps PT_LOAD/.test(p.message)));
  }
});

test('memfd contents: --memfd-contents gives each folio\'s first bytes', async () => {
  const { cap } = buildAndCapture();
  const core = openElfCore(writeElfCore(cap.segs), new Problems());
  const r = inspectInput({ kind: 'elf', path: 'x.elf', view: core.view, close: core.close }, { memfdContents: 4 });
  const holes = r.sessions[0]!.files[1]!.memfd!;
  assert.deepEqual(holes.folioList.map((f) => [f.index, f.firstBytes]), [[0n, '41414141'], [1n, '00000000'], [2n, '00000000'], [3n, '00000000']]);
});

test('kho-v1: a finalized chunk-list tracker decodes (blocks per order, total); LUO is absent', async () => {
  const build = withKhoProfile(DEFAULT_BUILD, 'kho-v1');
  const m = new Machine({ ramSize: GiB, build });
  const k = m.kernel;
  const kho = k.kho!;
  const folio = BigInt(k.alloc.allocFolio(3)) << 12n;
  kho.preserveFolio(folio, 3);
  const pages = BigInt(k.alloc.allocPages(5)) << 12n;
  kho.preservePages(pages, 5);
  kho.finalize();
  const byOrder = kho.preservedByOrder();
  const cap = captureAtKexec(m);
  const core = openElfCore(writeElfCore(cap.segs), new Problems());
  const r = inspectInput({ kind: 'elf', path: 'v1.elf', view: core.view, close: core.close }, {});
  assert.deepEqual(r.problems.filter(isFault), []);
  assert.equal(r.root!.profile, 'kho-v1');
  assert.equal(r.tracker!.format, 'chunks');
  assert.deepEqual(r.tracker!.perOrder, Object.fromEntries([...byOrder].map(([o, n]) => [String(o), n])));
  assert.equal(r.tracker!.totalBytes, BigInt(kho.preservedPages) * 4096n);
  assert.ok(r.tracker!.list.some((b) => b.pa === folio && b.order === 3));
  assert.equal(r.luo, null);
  assert.ok(r.problems.some((p) => /no LUO subtree/.test(p.message)));
});

test('kho-v1 without finalize: preserved-memory-map 0 is reported', () => {
  const m = new Machine({ ramSize: GiB, build: withKhoProfile(DEFAULT_BUILD, 'kho-v1') });
  const cap = captureAtKexec(m);
  const core = openElfCore(writeElfCore(cap.segs), new Problems());
  const r = inspectInput({ kind: 'elf', path: 'v1.elf', view: core.view, close: core.close }, { fdtAddr: cap.fdtAddr });
  assert.ok(r.problems.some((p) => p.severity === 'error' && /preserved-memory-map is 0.*not finalized/.test(p.message)), JSON.stringify(r.problems));
});

test('a "subsystems" subtree is decoded (name -> u64)', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  k.luo!.subsystems.register({ name: 'kvm', ops: { freeze: (a) => { a.data = 0x1234n; } } });
  k.luo!.subsystems.register({ name: 'iommu', ops: { freeze: (a) => { a.data = 0xfeedn; } } });
  const cap = captureAtKexec(m);
  const core = openElfCore(writeElfCore(cap.segs), new Problems());
  const r = inspectInput({ kind: 'elf', path: 'sub.elf', view: core.view, close: core.close }, {});
  assert.deepEqual(r.problems.filter(isFault), []);
  assert.deepEqual(r.subsystems, { kvm: 0x1234n, iommu: 0xfeedn });
  assert.equal(r.subtrees.find((s) => s.name === 'subsystems')!.compatible, 'subsystems-v1');
});

test('the 7.3.4 defect reproduced on a luo capture: 51 sessions, then an empty trailing block', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  k.luo!.open();
  for (let i = 0; i < 51; i++) k.luo!.createSession(`s${i}`);
  const cap = captureAtKexec(m);
  const ok = openElfCore(writeElfCore(cap.segs), new Problems());
  const clean = inspectInput({ kind: 'elf', path: 'ok.elf', view: ok.view, close: ok.close }, {});
  assert.deepEqual(clean.problems.filter(isFault), []);
  assert.equal(clean.sessions.length, 51);
  const head = clean.luo!.sessionsPa;
  assert.deepEqual(clean.sessionBlocks.map((b) => [b.pa, b.next, b.count]), [[head, 0n, 51n]]);
  // What 7.3.4 writes after a failed duplicate CREATE_SESSION: a second, empty block linked in.
  const empty = 0x30000000n;
  const segs = cap.segs.map((s) => ({ pa: s.pa, bytes: s.bytes.slice() }));
  const holder = segs.find((s) => head >= s.pa && head < s.pa + BigInt(s.bytes.length))!;
  new DataView(holder.bytes.buffer).setBigUint64(Number(head - holder.pa), empty, true);
  segs.push({ pa: empty, bytes: new Uint8Array(4096) });
  const core = openElfCore(writeElfCore(segs), new Problems());
  const r = inspectInput({ kind: 'elf', path: 'defect.elf', view: core.view, close: core.close }, {});
  const e = r.problems.find((p) => p.where === 'session block 1 @0x30000000' && /invalid entry count: 0/.test(p.message));
  assert.ok(e, JSON.stringify(r.problems));
  assert.match(e.message, /duplicate CREATE_SESSION fails \(EEXIST\) at exactly 51 sessions.*\(block 0 is full: 51 sessions\)/);
  assert.equal(r.sessions.length, 51);
});
