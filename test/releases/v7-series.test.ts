/**
 * The releases between the FDT era and 7.3.4, and the seeds' variants, byte for byte: kho-v2 (radix
 * tracker, sub-FDTs by preserved-data alone), luo-v2 (the LUO FDT's luo-abi-header and its 24-byte
 * luo_ser), luo-v3 (a raw luo_ser over the session array allocated at the first session), luo-v4
 * (sessions in blocks, files still in 2-page arrays), 2-page blocks, subsystems inside the LUO FDT;
 * and what each reader does with what the others wrote where the catalogue's one-session matrix
 * cannot show it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findRelease } from '../../src/abi/releases.ts';
import { blockCapacity, LuoFileSer, LuoSessionSer } from '../../src/abi/luo.ts';
import { buildForRelease } from '../../src/kernel/build.ts';
import { KernelPanic } from '../../src/luo/core.ts';
import type { Subsystem } from '../../src/luo/subsystems.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { memfdHandlerOf } from '../../src/handlers/index.ts';
import { plan } from '../../src/releases/plan.ts';
import { inspectInput } from '../../src/inspect/inspect.ts';
import { toHuman as formatReport } from '../../src/inspect/format.ts';
import { captureAtKexec, memInput, tmp } from '../inspect/helpers.ts';
import { captured, machine } from './helpers.ts';


function dtc(bytes: Uint8Array): string {
  const dir = tmp();
  writeFileSync(join(dir, 'x.dtb'), bytes);
  const r = spawnSync('dtc', ['-q', '-I', 'dtb', '-O', 'dts', join(dir, 'x.dtb')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** The u64 a native-endian FDT property holds, from dtc's two big-endian cells. */
function cellsLe(dts: string, prop: string): bigint {
  const m = new RegExp(`${prop} = <(0x[0-9a-f]+) (0x[0-9a-f]+)>`).exec(dts);
  assert.ok(m, `${prop} in\n${dts}`);
  const dv = new DataView(new ArrayBuffer(8));
  dv.setUint32(0, Number(m[1]));
  dv.setUint32(4, Number(m[2]));
  return dv.getBigUint64(0, true);
}

test('kho-v2: root "kho-v2", the LUO sub-FDT by preserved-data alone (no blob-size), no kexec-metadata; the inspector names it', () => {
  const { cap, find, luoPa } = captured('kho-v2', [['vm-1', 3000]]);
  const root = dtc(find(cap.fdtAddr, 4096));
  assert.match(root, /compatible = "kho-v2";/);
  assert.match(root, /preserved-memory-map = </);
  assert.match(root, /LUO \{\s*preserved-data = <[^>]+>;\s*\};/, 'one property');
  assert.doesNotMatch(root, /blob-size|kexec-metadata/);
  assert.equal(cellsLe(root, 'preserved-data'), luoPa);
  assert.match(dtc(find(luoPa, 4096)), /compatible = "luo-v1";/);
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
  assert.equal(r.root?.compatible, 'kho-v2');
  assert.deepEqual(r.sessions.map((s) => [s.name, s.files[0]?.memfd?.size]), [['vm-1', 3000n]]);
  assert.deepEqual(r.writtenBy, ['kho-v2']);
});

test('luo-v2: the LUO FDT holds "luo-v2" and luo-abi-header; the 24-byte luo_ser there holds the number, the session array and the FLB page', () => {
  const { cap, find, le, text, luoPa, flbPa } = captured('luo-v2', [['first', 0], ['vm-1', 5000]]);
  const root = dtc(find(cap.fdtAddr, 4096));
  assert.match(root, /compatible = "kho-v3";/);
  const luoDts = dtc(find(luoPa, 4096));
  assert.match(luoDts, /^\/ \{\s*compatible = "luo-v2";\s*luo-abi-header = <[^>]+>;\s*\};/m, 'two properties, no nodes');
  // blob-size is the FDT's totalsize (kho_add_subtree(..., fdt_totalsize(fdt_out)))
  const total = new DataView(find(luoPa, 8).slice().buffer).getUint32(4, false);
  const lm = /LUO \{[^}]*blob-size = <(0x[0-9a-f]+) 0x00>/s.exec(root);
  assert.ok(lm);
  assert.equal(Number(cellsLe(root.replace(/LUO \{[^}]*/s, (x) => x.replace('blob-size', 'luo-blob-size')), 'luo-blob-size')), total);
  const ser = cellsLe(luoDts, 'luo-abi-header');
  assert.equal(ser % 4096n, 0n, 'kho_alloc_preserve: its own page');
  assert.equal(le(ser), 1n, 'liveupdate_num');
  const sessions = le(ser + 8n);
  assert.equal(le(ser + 16n), flbPa, 'flbs_pa');
  assert.deepEqual(find(ser + 24n, 8), new Uint8Array(8), 'nothing after the 24 bytes');
  // the session array, as luo-v1's: {count} then 80-byte entries
  assert.equal(le(sessions), 2n);
  assert.equal(text(sessions + 8n, 5), 'first');
  assert.equal(text(sessions + 88n, 4), 'vm-1');
  const files = le(sessions + 88n + 64n);
  assert.equal(text(files, 8), 'memfd-v2');
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
  assert.equal(r.luo?.compatible, 'luo-v2');
  assert.equal(r.luo?.header, ser);
  assert.deepEqual(r.sessions.map((s) => [s.name, s.files[0]?.memfd?.size]), [['first', undefined], ['vm-1', 5000n]]);
  assert.deepEqual(r.writtenBy, ['luo-v2']);
  assert.match(formatReport(r), /LUO FDT @0x[0-9a-f]+: compatible "luo-v2", luo-abi-header 0x[0-9a-f]+ -> luo_ser: liveupdate_num 1/);
});

test('luo-v3: a 32-byte raw luo_ser "luo-v3" over the session array and file arrays; no session array until the first session', () => {
  const { cap, find, le, text, luoPa } = captured('luo-v3', [['vm-1', 4000]]);
  assert.match(dtc(find(cap.fdtAddr, 4096)), /compatible = "kho-v4";[\s\S]*LUO \{\s*blob-size = <0x20000000 0x00>;/);
  assert.equal(text(luoPa, 6), 'luo-v3');
  assert.deepEqual(find(luoPa + 6n, 2), new Uint8Array(2));
  const sessions = le(luoPa + 16n);
  assert.equal(le(sessions), 1n, 'the array count');
  assert.equal(text(sessions + 8n, 4), 'vm-1');
  assert.equal(le(sessions + 8n + 72n), 1n, 'file count');
  assert.equal(text(le(sessions + 8n + 64n), 8), 'memfd-v2');
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
  assert.deepEqual(r.writtenBy, ['luo-v3']);
  assert.match(formatReport(r), /session array 0 @/);
  // "defer session block allocation": nothing allocated or published before a session exists,
  // and the array stays once it exists (it is never shrunk)
  const m = machine('luo-v3');
  const luo = m.kernel.luo!;
  luo.open();
  assert.equal(luo.sessions.outgoingBlocks, 0);
  const s = luo.createSession('a');
  assert.equal(luo.sessions.outgoingBlocks, 1);
  luo.sessions.release(s);
  assert.equal(luo.sessions.outgoingBlocks, 1);
  const empty = captureAtKexec(m);
  const rr = inspectInput(memInput(empty.segs), {});
  assert.equal(rr.luo?.sessionsPa, 0n, 'no sessions: sessions_pa 0');
});

test('luo-v4: sessions in one-page blocks, each session\'s files in a 2-page array (128 at most, ENOSPC)', () => {
  const { le, text, luoPa, cap } = captured('luo-v4', [['vm-1', 4000]]);
  assert.equal(text(luoPa, 6), 'luo-v4');
  const block = le(luoPa + 16n);
  assert.equal(le(block), 0n, 'next');
  assert.equal(le(block + 8n), 1n, 'count');
  assert.equal(text(block + 16n, 4), 'vm-1');
  assert.equal(text(le(block + 16n + 64n), 8), 'memfd-v2', 'files: an array of luo_file_ser, no block header');
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
  assert.deepEqual(r.writtenBy, ['luo-v4']);
  const out = formatReport(r);
  assert.match(out, /session block 0 @/);
  assert.match(out, /file array 0 @/);
  const m = machine('luo-v4');
  const k = m.kernel;
  k.luo!.open();
  const s = k.luo!.createSession('many');
  for (let i = 0; i < 128; i++) k.luo!.sessions.preserveFile(s, BigInt(i), memfdCreate(k.memfd, `f${i}`, 0));
  assert.throws(() => k.luo!.sessions.preserveFile(s, 999n, memfdCreate(k.memfd, 'one-more', 0)), { errno: 'ENOSPC' });
  assert.equal(findRelease('luo-v4')!.abi.limits.filesPerSession, 128);
});

test('2-page blocks: entries straddle the page boundary and come back; 7.3.4 reads them while no block is fuller than its own', () => {
  // 64 files: in 2-page blocks (127 per block) one block whose entry 63 straddles the page boundary
  const m = machine('seed-2page-blocks');
  const k = m.kernel;
  k.luo!.open();
  const s = k.luo!.createSession('vm-1');
  for (let i = 0; i < 64; i++) {
    const f = memfdCreate(k.memfd, `f${i}`, 0);
    f.pwrite(new Uint8Array([i + 1]), 0);
    k.luo!.sessions.preserveFile(s, BigInt(1000 + i), f);
  }
  assert.equal(blockCapacity(LuoFileSer.size, 2), 127);
  const k2 = m.kexec();
  k2.luo!.open();
  const r = k2.luo!.retrieveSession('vm-1');
  for (let i = 0; i < 64; i++) {
    const f = k2.luo!.sessions.retrieveFile(r, BigInt(1000 + i)) as ReturnType<typeof memfdCreate>;
    assert.equal(f.pread(1, 0)[0], i + 1);
  }
  // the same 64 files into 7.3.4 (one-page blocks hold 63): the first open fails, EIO
  const m2 = machine('seed-2page-blocks');
  const k3 = m2.kernel;
  k3.luo!.open();
  const s2 = k3.luo!.createSession('vm-1');
  for (let i = 0; i < 64; i++) k3.luo!.sessions.preserveFile(s2, BigInt(i), memfdCreate(k3.memfd, `f${i}`, 0));
  const k4 = m2.kexec({ build: buildForRelease('7.3.4') });
  assert.throws(() => k4.luo!.open(), (e: Error & { errno?: string }) => e.errno === 'EIO' && /invalid entry count: 64/.test(e.message));
  // 52 sessions (one-page blocks hold 51): EINVAL at 7.3.4's early boot, a panic
  const m3 = machine('seed-2page-blocks');
  m3.kernel.luo!.open();
  for (let i = 0; i < 52; i++) m3.kernel.luo!.createSession(`s${i}`);
  assert.equal(blockCapacity(LuoSessionSer.size), 51);
  assert.throws(() => m3.kexec({ build: buildForRelease('7.3.4') }), (e: unknown) => e instanceof KernelPanic && (e.cause as { errno?: string }).errno === 'EINVAL' && /invalid entry count: 52/.test(String((e.cause as Error).message)));
  // plan says the limit
  assert.ok(plan(findRelease('seed-2page-blocks')!, findRelease('7.3.4')!).notes.some((n) => /at most 51 and 63 per block/.test(n)));
  assert.equal(plan(findRelease('7.3.4')!, findRelease('seed-2page-blocks')!).notes.some((n) => /per block/.test(n)), false);
});

test('a file no handler claims: luo-v1 (kho-v2) restores its session without it; luo-v2 on fails the first open (EIO)', () => {
  for (const [release, dropped] of [['kho-v2', true], ['luo-v2', false], ['luo-v3', false], ['luo-v4', false]] as const) {
    const m = machine(release);
    const k = m.kernel;
    const luo = k.luo!;
    // the old kernel preserves through a handler the new one lacks
    luo.unregisterFileHandler(luo.fileHandlers[0]!);
    luo.registerFileHandler(memfdHandlerOf(k, { compatible: 'memfd-test' }));
    luo.open();
    const s = luo.createSession('vm-1');
    luo.sessions.preserveFile(s, 5n, memfdCreate(k.memfd, 'x', 0));
    const k2 = m.kexec();
    if (dropped) {
      k2.luo!.open();
      const r = k2.luo!.retrieveSession('vm-1');
      assert.throws(() => k2.luo!.sessions.retrieveFile(r, 5n), { errno: 'ENOENT' }, release);
      assert.ok(k2.log.lines.some((l) => l.msg.includes("No registered handler for compatible 'memfd-test'")), release);
    } else {
      assert.throws(() => k2.luo!.open(), (e: Error & { errno?: string }) => e.errno === 'EIO' && /memfd-test/.test(e.message), release);
    }
  }
});

test('seed-subsystems: the LUO FDT carries a "subsystems" node (subsystems-v1, a u64 per subsystem); the next kernel boots them with it; a 7.0 hand-over without it panics whatever luo.restore_fail says', () => {
  const kvm = (log: string[], value: bigint): Subsystem => ({
    name: 'kvm',
    ops: { freeze(a) { a.data = value; }, boot(a) { log.push(`boot ${a.data.toString(16)}`); }, finish(a) { log.push(`finish ${a.data.toString(16)}`); } },
  });
  const m = machine('seed-subsystems');
  m.kernel.luo!.subsystems.register(kvm([], 0x1234n));
  const luoPa = m.kernel.luo!.outgoingSerPa;
  const cap = captureAtKexec(m);
  const seg = cap.segs.find((x) => luoPa >= x.pa && luoPa < x.pa + BigInt(x.bytes.length))!;
  const luoDts = dtc(seg.bytes.subarray(Number(luoPa - seg.pa), Number(luoPa - seg.pa) + 4096));
  assert.match(luoDts, /subsystems \{\s*compatible = "subsystems-v1";\s*kvm = <0x34120000 0x00>;\s*\};/);
  const rootSeg = cap.segs.find((x) => cap.fdtAddr >= x.pa && cap.fdtAddr < x.pa + BigInt(x.bytes.length))!;
  assert.doesNotMatch(dtc(rootSeg.bytes.subarray(Number(cap.fdtAddr - rootSeg.pa), Number(cap.fdtAddr - rootSeg.pa) + 4096)), /subsystems \{/, 'no KHO subtree of its own');
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
  assert.deepEqual(r.subsystems, { kvm: 0x1234n });
  assert.deepEqual(r.writtenBy, ['seed-subsystems']);

  // across a real kexec: the data comes back through the node
  const m2 = machine('seed-subsystems');
  m2.kernel.luo!.subsystems.register(kvm([], 0x77n));
  const k2 = m2.kexec();
  assert.equal(k2.luo!.subsystems.getData('kvm'), 0x77n);
  const log: string[] = [];
  k2.luo!.subsystems.register(kvm(log, 0n));
  k2.luo!.subsystems.finish();
  assert.deepEqual(log, ['boot 77', 'finish 77']);

  // 7.0 wrote no node: luo_subsystems_startup calls panic(), even with luo.restore_fail=disable
  for (const cmdline of ['console=ttyS0 kho=on liveupdate=on', 'console=ttyS0 kho=on liveupdate=on luo.restore_fail=disable']) {
    const old = machine('7.0');
    assert.throws(() => old.kexec({ build: buildForRelease('seed-subsystems'), cmdline }), (e: unknown) => e instanceof KernelPanic && /Failed to find \/subsystems node/.test(e.message));
  }
  const v = plan(findRelease('7.0')!, findRelease('seed-subsystems')!).verdict;
  assert.deepEqual([v.kind, (v as { panicsAlways?: boolean }).panicsAlways], ['restore-failed', true]);
  assert.equal(plan(findRelease('seed-subsystems')!, findRelease('7.0')!).verdict.kind, 'live-update');
});
