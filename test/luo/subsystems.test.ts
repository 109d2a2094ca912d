/** Subsystems: registration rules, two-phase prepare/freeze rollback, boot data across kexecs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import { isLuoError, type ErrnoName, LuoError } from '../../src/errno.ts';
import { decodeSubsystemsFdt, type Subsystem } from '../../src/luo/subsystems.ts';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const GiB = 1n << 30n;
const errno = (name: ErrnoName) => (e: unknown) => isLuoError(e, name);

function sub(name: string, log: string[], fail: { prepare?: boolean; freeze?: boolean } = {}, value = 0n): Subsystem {
  return {
    name,
    ops: {
      prepare(a) { log.push(`prepare ${name}`); if (fail.prepare) throw new LuoError('EIO', `${name} prepare`); a.data = value; },
      freeze(a) { log.push(`freeze ${name}`); if (fail.freeze) throw new LuoError('EAGAIN', `${name} freeze`); a.data = value + 1n; },
      cancel() { log.push(`cancel ${name}`); },
      boot(a) { log.push(`boot ${name} ${a.data.toString(16)}`); },
      finish(a) { log.push(`finish ${name} ${a.data.toString(16)}`); },
    },
  };
}

test('registration: EEXIST for a name or object twice, ENOENT unknown, EBUSY while prepared, EOPNOTSUPP when disabled', () => {
  const m = new Machine({ ramSize: GiB });
  const ss = m.kernel.luo!.subsystems;
  const log: string[] = [];
  const a = sub('kvm', log);
  ss.register(a);
  assert.throws(() => ss.register(a), errno('EEXIST'));
  assert.throws(() => ss.register(sub('kvm', log)), errno('EEXIST'));
  assert.throws(() => ss.unregister(sub('iommu', log)), errno('ENOENT'));
  ss.prepare();
  assert.equal(ss.state, 'prepared');
  assert.throws(() => ss.register(sub('iommu', log)), errno('EBUSY'));
  ss.cancel();
  assert.equal(ss.state, 'normal');
  ss.register(sub('iommu', log));
  ss.unregister(a);
  const off = new Machine({ ramSize: GiB, cmdline: 'kho=off liveupdate=on' });
  assert.throws(() => off.kernel.luo!.subsystems.register(sub('x', [])), errno('EOPNOTSUPP'));
});

test('prepare failing at each position k: exactly 1..k-1 get cancel, in reverse order; a retry succeeds', () => {
  const N = 5;
  for (let k = 1; k <= N; k++) {
    const m = new Machine({ ramSize: GiB });
    const ss = m.kernel.luo!.subsystems;
    const log: string[] = [];
    const subs = Array.from({ length: N }, (_, i) => sub(`s${i + 1}`, log, { prepare: i + 1 === k }));
    subs.forEach((s) => ss.register(s));
    assert.throws(() => ss.prepare(), errno('EIO'));
    const want = [...Array.from({ length: k }, (_, i) => `prepare s${i + 1}`), ...Array.from({ length: k - 1 }, (_, i) => `cancel s${k - 1 - i}`)];
    assert.deepEqual(log, want, `k=${k}`);
    assert.equal(ss.state, 'normal');
    ss.unregister(subs[k - 1]!);
    ss.prepare();
    assert.equal(ss.state, 'prepared');
  }
});

test('freeze failing at each position k during kexec: exactly 1..k-1 get cancel, the reboot is refused', () => {
  const N = 4;
  for (let k = 1; k <= N; k++) {
    const m = new Machine({ ramSize: GiB });
    const kern = m.kernel;
    const ss = kern.luo!.subsystems;
    const log: string[] = [];
    const subs = Array.from({ length: N }, (_, i) => sub(`s${i + 1}`, log, { freeze: i + 1 === k }));
    subs.forEach((s) => ss.register(s));
    assert.throws(() => m.kexec(), errno('EAGAIN'));
    assert.equal(m.kernel, kern, 'no reboot');
    const cancels = log.filter((l) => l.startsWith('cancel'));
    assert.deepEqual(cancels, Array.from({ length: k - 1 }, (_, i) => `cancel s${k - 1 - i}`), `k=${k}`);
    assert.equal(ss.state, 'normal');
    assert.equal(kern.kho!.outgoingSubtrees().has('subsystems'), false, 'no half-written hand-over');
    ss.unregister(subs[k - 1]!);
    const next = m.kexec();
    assert.deepEqual(next.luo!.subsystems.unclaimed().sort(), subs.filter((_, i) => i + 1 !== k).map((s) => s.name).sort());
  }
});

test('boot gets the saved u64, also for a late registration; unknown subsystems are reported and left alone', () => {
  const m = new Machine({ ramSize: GiB });
  const log: string[] = [];
  m.kernel.luo!.subsystems.register(sub('kvm', log, {}, 0x1000n));
  m.kernel.luo!.subsystems.register(sub('gone-driver', log, {}, 0x2000n));
  let blob: Uint8Array | undefined;
  m.kernel.onReboot((k) => {
    const s = k.kho!.outgoingSubtrees().get('subsystems')!;
    blob = m.memory.read(s.pa, s.size);
  });
  const k2 = m.kexec();
  assert.deepEqual([...decodeSubsystemsFdt(blob!)], [['kvm', 0x1001n], ['gone-driver', 0x2001n]]);
  const ss = k2.luo!.subsystems;
  assert.equal(ss.state, 'updated');
  assert.equal(ss.getData('kvm'), 0x1001n);
  assert.throws(() => ss.getData('iommu'), errno('ENOENT'));
  const log2: string[] = [];
  ss.register(sub('kvm', log2)); // late registration in the new kernel
  assert.deepEqual(log2, ['boot kvm 1001']);
  assert.deepEqual(ss.unclaimed(), ['gone-driver']);
  ss.finish();
  assert.deepEqual(log2, ['boot kvm 1001', 'finish kvm 1001']);
  assert.ok(k2.log.grep(/subsystem "gone-driver" from the previous kernel is unknown here/).length === 1);
  assert.equal(ss.state, 'normal');
  assert.throws(() => ss.getData('kvm'), errno('ENOENT'), 'after finish');
});

test('the subsystems subtree is a real FDT: dtc decodes it', () => {
  const m = new Machine({ ramSize: GiB });
  m.kernel.luo!.subsystems.register(sub('kvm', [], {}, 0x41n));
  let blob: Uint8Array | undefined;
  m.kernel.onReboot((k) => { const s = k.kho!.outgoingSubtrees().get('subsystems')!; blob = m.memory.read(s.pa, s.size); });
  m.kexec();
  const dir = mkdtempSync(join(tmpdir(), 'luo-sub-'));
  writeFileSync(join(dir, 's.dtb'), blob!);
  const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', join(dir, 's.dtb')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /compatible = "subsystems-v1";/);
  assert.match(r.stdout, /kvm = <0x42000000 0x00>;/);
});

test('subsystems and sessions together through several live updates', () => {
  const m = new Machine({ ramSize: GiB });
  let k = m.kernel;
  const log: string[] = [];
  let value = 0x10n;
  k.luo!.subsystems.register(sub('kvm', log, {}, value));
  for (let round = 0; round < 3; round++) {
    k.luo!.open();
    k.luo!.createSession(`round-${round}`);
    k = m.kexec();
    assert.equal(k.luo!.subsystems.getData('kvm'), value + 1n);
    k.luo!.open();
    k.luo!.retrieveSession(`round-${round}`);
    k.luo!.close();
    value += 0x100n;
    k.luo!.subsystems.register(sub('kvm', log, {}, value));
    k.luo!.subsystems.finish();
  }
  assert.deepEqual(log.filter((l) => l.startsWith('boot')), ['boot kvm 11', 'boot kvm 111', 'boot kvm 211']);
});
