/**
 * Each runnable release's write side, byte for byte: the root FDT as dtc decodes it (its compatible),
 * the luo_ser (its size and compatible storage), the file entries' handler string; the inspector
 * decodes the hand-over and names the release(s) that could have written it. And the catalogue and
 * `luo plan` facts that do not need a boot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findRelease, RELEASES } from '../../src/abi/releases.ts';
import { compatLen, luoSerLayout } from '../../src/abi/luo.ts';
import { buildForRelease } from '../../src/kernel/build.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { getNameArg, luoCreateSession, O_RDWR, processesOf, sessionNameArg } from '../../src/uapi/index.ts';
import { LIVEUPDATE_IOCTL } from '../../src/abi/uapi.ts';
import { chainOf, plan, verdictOf } from '../../src/releases/plan.ts';
import { inspectInput } from '../../src/inspect/inspect.ts';
import { memInput, tmp } from '../inspect/helpers.ts';
import { captured } from './helpers.ts';

const rel = (n: string) => findRelease(n)!;

test('mm-granular writes the composite strings: kho-v4;radix-v1;vmalloc-v1 root, a 40-byte "luo-v5;block-v1" luo_ser, "memfd-v2;vmalloc-v1" files', () => {
  const { cap, serPa, find } = captured('mm-granular', [['vm-1', 10000]]);
  // the root FDT, decoded by dtc
  const dir = tmp();
  writeFileSync(join(dir, 'root.dtb'), find(cap.fdtAddr, 4096));
  const dts = spawnSync('dtc', ['-q', '-I', 'dtb', '-O', 'dts', join(dir, 'root.dtb')], { encoding: 'utf8' });
  assert.equal(dts.status, 0, dts.stderr);
  assert.match(dts.stdout, /compatible = "kho-v4;radix-v1;vmalloc-v1";/);
  assert.match(dts.stdout, /LUO \{[^}]*blob-size = <0x28000000 0x00>;/s, 'blob-size 40, native-endian u64');
  // the luo_ser: "luo-v5;block-v1" NUL-padded to 16 bytes, then liveupdate_num, sessions_pa, flbs_pa
  assert.equal(compatLen('luo-v5;block-v1'), 16);
  assert.equal(luoSerLayout('luo-v5;block-v1').size, 40);
  const ser = find(serPa, 40);
  assert.deepEqual([...ser.subarray(0, 16)], [...new TextEncoder().encode('luo-v5;block-v1'), 0]);
  const v = new DataView(ser.buffer, ser.byteOffset, 40);
  assert.equal(v.getBigUint64(16, true), 1n, 'liveupdate_num at offset 16');
  assert.notEqual(v.getBigUint64(24, true), 0n, 'sessions_pa at offset 24');
  assert.notEqual(v.getBigUint64(32, true), 0n, 'flbs_pa at offset 32');
  // the inspector decodes it all and attributes it
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
  assert.equal(r.luo?.compatible, 'luo-v5;block-v1');
  assert.equal(r.sessions[0]?.files[0]?.compatible, 'memfd-v2;vmalloc-v1');
  assert.equal(r.sessions[0]?.files[0]?.memfd?.size, 10000n);
  assert.deepEqual(r.writtenBy, ['mm-granular']);
});

test('the catalogue: every release named, each layer described, the first one with the FDT-era limits', () => {
  assert.ok(RELEASES.length >= 9);
  assert.equal(new Set(RELEASES.map((r) => r.name)).size, RELEASES.length);
  assert.equal(rel('6.19').abi.limits.sessions, 819);
  assert.equal(rel('6.19').abi.limits.filesPerSession, 128);
  assert.equal(rel('7.3.4').abi.limits.sessions, 510000);
  assert.equal(rel('7.3.4').abi.limits.filesPerSession, 630000);
});

test('plan: each layer that can refuse, with its reason', () => {
  const v = (a: string, b: string) => plan(rel(a), rel(b)).verdict;
  assert.equal(v('7.3.4', '7.3.4').kind, 'live-update');
  assert.deepEqual([v('7.3.4', 'mm-granular').kind, (v('7.3.4', 'mm-granular') as { layer: string }).layer], ['no-handover', 'KHO']);
  assert.deepEqual(v('kho-v3', '7.3.4').kind, 'no-handover');
  // same KHO, another LUO version: the raw luo_ser's compatible differs (EINVAL at early startup)
  const l = v('luo-v4', '7.3.4');
  assert.deepEqual([l.kind, (l as { errno: string }).errno], ['restore-failed', 'EINVAL']);
  // the FLB node the new kernel insists on (luo_flb.c @cab056f2 returns ENOENT without it)
  const flb = v('6.19', '7.0');
  assert.deepEqual([flb.kind, (flb as { errno: string }).errno, (flb as { log: string }).log], ['restore-failed', 'ENOENT', 'Unable to get FLB node [luo-flb]']);
  // back from 7.0 to 6.19: the FDTs agree, the memfd handler does not, and that era drops such files
  assert.deepEqual([v('7.0', '6.19').kind, (v('7.0', '6.19') as { layer: string }).layer], ['files-lost', 'files']);
  // into 7.3.4's LUO a file without a handler fails the first open instead
  assert.equal(verdictOf({ ...rel('7.3.4').abi, memfd: 'memfd-v1' }, rel('7.3.4').abi).kind, 'open-failed');
  // the seeds' 2-page blocks under 7.3.4's strings: readers go by each block's header, so it works
  // while no block is fuller than the new kernel's own (v7-series.test.ts shows both sides)
  assert.equal(v('7.3.4', 'seed-2page-blocks').kind, 'live-update');
  assert.equal(v('seed-2page-blocks', '7.3.4').kind, 'live-update');
  assert.ok(plan(rel('seed-2page-blocks'), rel('7.3.4')).notes.some((n) => /accepts at most 51 and 63 per block/.test(n)));
  // luo-v2's FDT against luo-v1's, and the raw luo-v3/v4 strings against each other
  assert.equal((v('kho-v3', 'luo-v2') as { log: string }).log, "FDT 'LUO' is incompatible with 'luo-v2'");
  assert.deepEqual([v('luo-v3', 'luo-v4').kind, (v('luo-v3', 'luo-v4') as { errno: string }).errno], ['restore-failed', 'EINVAL']);
  assert.ok(plan(rel('7.3.4'), rel('6.19')).notes.some((n) => /GET_NAME/.test(n)));
});

test('plan: the chain is the hop itself when it works, null when no release in between helps', () => {
  assert.deepEqual(plan(rel('7.3.4'), rel('7.3.4')).chain, ['7.3.4', '7.3.4']);
  assert.equal(plan(rel('6.19'), rel('7.3.4')).chain, null);
  // a made-up catalogue where a middle release bridges two others
  const a = rel('7.3.4');
  const mid = { ...a, name: 'mid' };
  const b = { ...a, name: 'b', abi: { ...a.abi, kho: { ...a.abi.kho, compatible: 'kho-v9' } } };
  const midB = { ...b, name: 'mid-b' };
  assert.deepEqual(chainOf(a, b, [a, mid, b]), null);
  // b accepts only kho-v9: no chain from a (kho-v4) unless some release changes KHO, which no hop can
  assert.deepEqual(chainOf(b, midB, [b, midB]), ['b', 'mid-b']);
});

test('the first uAPI: GET_NAME does not exist on 6.19 (its nr is past the 3-op table: EINVAL); 7.3.4 answers it', () => {
  for (const [name, want] of [['6.19', 'EINVAL'], ['7.0', 'EINVAL'], ['7.3.4', undefined]] as const) {
    const m = new Machine({ ramSize: 1n << 30n, build: buildForRelease(name) });
    const p = processesOf(m.kernel).spawn();
    const dev = p.open('/dev/liveupdate', O_RDWR);
    const s = luoCreateSession(p, dev, 'vm-1');
    const r = p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_GET_NAME, getNameArg());
    assert.deepEqual([r, r < 0 ? p.errno : undefined], want ? [-1, want] : [0, undefined], name);
  }
});

test('the first uAPI checks no names: an empty one is a session, a 64-byte one is cut to 63 (strscpy); 7.3.4 says EINVAL to both', () => {
  const long = 'n'.repeat(64);
  for (const [name, old] of [['6.19', true], ['luo-v2', true], ['luo-v3', false], ['7.3.4', false]] as const) {
    const m = new Machine({ ramSize: 1n << 30n, build: buildForRelease(name) });
    const p = processesOf(m.kernel).spawn();
    const dev = p.open('/dev/liveupdate', O_RDWR);
    const empty = luoCreateSession(p, dev, '');
    const arg = sessionNameArg('');
    arg.fill('n'.charCodeAt(0), 8, 72);
    const cut = p.ioctl(dev, LIVEUPDATE_IOCTL.CREATE_SESSION, arg) < 0 ? -1 : 0;
    if (old) {
      assert.ok(empty >= 0 && cut >= 0, name);
      assert.deepEqual(m.kernel.luo!.sessions.outgoing.map((s) => s.name), ['', long.slice(0, 63)], name);
    } else {
      assert.deepEqual([empty, cut, p.errno], [-22, -1, 'EINVAL'], name);
    }
  }
});

test('6.19 and 7.0 write the FDT era: a "LUO" sub-FDT (dtc), the session array {count, entries}, a 2-page file array, memfd-v1 or -v2 entries', () => {
  for (const name of ['6.19', '7.0']) {
    const { cap, serPa: fdtPa, find } = captured(name, [['first', 0], ['vm-1', 5000]]);
    const dtc = (bytes: Uint8Array): string => {
      const dir = tmp();
      writeFileSync(join(dir, 'x.dtb'), bytes);
      const r = spawnSync('dtc', ['-q', '-I', 'dtb', '-O', 'dts', join(dir, 'x.dtb')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    const root = dtc(find(cap.fdtAddr, 4096));
    assert.match(root, /compatible = "kho-v1";/);
    assert.match(root, /LUO \{\s*fdt = </, `${name}: a kho-v1 subtree by its "fdt" property`);
    const luoDts = dtc(find(fdtPa, 4096));
    assert.match(luoDts, /compatible = "luo-v1";/);
    assert.match(luoDts, /liveupdate-number = <0x1000000 0x00>;/, 'u64 1, native-endian');
    assert.match(luoDts, /luo-session \{\s*compatible = "luo-session-v2";\s*luo-session-header = </);
    assert.equal(/luo-flb \{\s*compatible = "luo-flb-v1";\s*luo-flb-header = </.test(luoDts), name === '7.0', `${name}: the FLB node`);
    // the session array: count 2, then 80-byte entries (name[64], files pa, count)
    // dtc shows the property's bytes as two big-endian cells; the value is those 8 bytes little-endian
    const cells = /luo-session-header = <(0x[0-9a-f]+) (0x[0-9a-f]+)>/.exec(luoDts)!.slice(1).map(Number);
    const dv = new DataView(new ArrayBuffer(8));
    dv.setUint32(0, cells[0]!);
    dv.setUint32(4, cells[1]!);
    const header = dv.getBigUint64(0, true);
    const le = (pa: bigint, n = 8): bigint => new DataView(find(pa, n).slice().buffer).getBigUint64(0, true);
    assert.equal(le(header), 2n, 'count');
    assert.equal(new TextDecoder().decode(find(header + 8n, 5)), 'first');
    assert.equal(new TextDecoder().decode(find(header + 88n, 4)), 'vm-1');
    const filesPa = le(header + 88n + 64n);
    assert.equal(le(header + 88n + 72n), 1n, 'one file');
    assert.equal(filesPa % 4096n, 0n);
    assert.equal(new TextDecoder().decode(find(filesPa, 8)), name === '6.19' ? 'memfd-v1' : 'memfd-v2');
    assert.equal(le(filesPa + 56n), 0x77n, 'token');
    // the inspector decodes it with the kernel path's reader, and tells 6.19 from 7.0 by the FLB node
    const r = inspectInput(memInput(cap.segs), {});
    assert.deepEqual(r.problems.filter((p) => p.severity !== 'info'), []);
    assert.deepEqual(r.sessions.map((x) => [x.name, x.files.map((y) => [y.compatible, y.token, y.memfd?.size])]), [['first', []], ['vm-1', [[name === '6.19' ? 'memfd-v1' : 'memfd-v2', 0x77n, 5000n]]]]);
    assert.deepEqual(r.writtenBy, [name]);
  }
});

test('kho-v3 carries the FDT-era LUO as a raw subtree (preserved-data, blob-size) under a radix tracker, with no finalize', () => {
  const { cap, find } = captured('kho-v3', [['vm-1', 3000]]);
  const dir = tmp();
  writeFileSync(join(dir, 'root.dtb'), find(cap.fdtAddr, 4096));
  const r = spawnSync('dtc', ['-q', '-I', 'dtb', '-O', 'dts', join(dir, 'root.dtb')], { encoding: 'utf8' });
  assert.match(r.stdout, /compatible = "kho-v3";/);
  // blob-size is the LUO FDT's totalsize, as luo_fdt_setup passes fdt_totalsize(fdt_out)
  const m = /LUO \{\s*blob-size = <(0x[0-9a-f]+) 0x00>;\s*preserved-data = <(0x[0-9a-f]+) (0x[0-9a-f]+)>/.exec(r.stdout);
  assert.ok(m, 'an FDT blob by preserved-data and blob-size');
  const dv = new DataView(new ArrayBuffer(16));
  dv.setUint32(0, Number(m[1]));
  dv.setUint32(8, Number(m[2]));
  dv.setUint32(12, Number(m[3]));
  const blob = find(dv.getBigUint64(8, true), 8);
  assert.deepEqual([...blob.subarray(0, 4)], [0xd0, 0x0d, 0xfe, 0xed]);
  assert.equal(dv.getUint32(0, true), new DataView(blob.slice().buffer).getUint32(4, false));
  assert.match(r.stdout, /kexec-metadata \{/);
  const rep = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(rep.problems.filter((p) => p.severity !== 'info'), []);
  assert.equal(rep.luo?.compatible, 'luo-v1');
  assert.deepEqual(rep.sessions.map((s) => [s.name, s.files[0]?.memfd?.size]), [['vm-1', 3000n]]);
  assert.deepEqual(rep.writtenBy, ['kho-v3']);
});
