/**
 * The live-update agent: three workloads through three updates (every byte verified), and each
 * case of its fall-back policy — ENOENT on open (LUO off; LUO disabled after corruption), EIO on
 * open, a kernel panic, a missing session, a failed retrieve — plus a refused kexec and adopt errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import type { Kernel } from '../../src/kernel/kernel.ts';
import { withParam } from '../../src/kernel/cmdline.ts';
import { F_SEAL_GROW, F_SEAL_SHRINK } from '../../src/handlers/memfd-file.ts';
import { LiveUpdateAgent, EXIT_FELL_BACK, EXIT_REFUSED, EXIT_UPDATED, type UpdateReport, type AgentLogEntry, type AgentHooks, type WorkloadFile } from '../../src/agent/index.ts';
import { injectFault } from '../../src/scenario/faults.ts';

const GiB = 1n << 30n;
const MiB = 1 << 20;

function pattern(seed: string, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = 2166136261;
  for (const c of seed) x = Math.imul(x ^ c.charCodeAt(0), 16777619) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

interface FileDef { token: bigint; label: string; size: number; writes: Array<{ at: number; data: Uint8Array }>; pos: number; seals: number }
const WORKLOADS: Array<{ name: string; files: FileDef[] }> = ['vm-web', 'vm-db', 'vm-batch'].map((name, i) => ({
  name,
  files: [
    { token: 0x100n, label: 'guest-ram', size: (i + 1) * MiB, writes: [{ at: 0, data: pattern(`${name}-ram0`, 64 * 1024) }, { at: (i + 1) * MiB - 8192, data: pattern(`${name}-ram1`, 8192) }], pos: 0, seals: 0 },
    { token: 0x200n, label: 'device-state', size: 12345 + i, writes: [{ at: 0, data: pattern(`${name}-state`, 12345 + i) }], pos: 777 * (i + 1), seals: i === 1 ? F_SEAL_SHRINK | F_SEAL_GROW : 0 },
  ],
}));

function setup(cmdline = 'console=ttyS0 kho=on liveupdate=on'): { m: Machine; agent: LiveUpdateAgent; lines: string[]; entries: AgentLogEntry[] } {
  const m = new Machine({ ramSize: 2n * GiB, cmdline });
  const lines: string[] = [];
  const entries: AgentLogEntry[] = [];
  const agent = new LiveUpdateAgent(m, { log: (l, e) => { lines.push(l); entries.push(e); } });
  for (const w of WORKLOADS) {
    const files = w.files.map((f) => ({ token: f.token, label: f.label, fd: agent.createMemfd(`${w.name}-${f.label}`, { size: f.size, writes: f.writes, pos: f.pos, seals: f.seals }) }));
    const r = agent.adopt({ name: w.name, files, checksum: 'sha256' });
    assert.ok(r.ok, JSON.stringify(r.errors));
  }
  return { m, agent, lines, entries };
}

/** Reads every byte of every workload file through the agent's process and compares it with what was written. */
function verifyEveryByte(agent: LiveUpdateAgent): void {
  const p = agent.process;
  for (const w of WORKLOADS) {
    const live = agent.workload(w.name);
    assert.ok(live, `${w.name} is adopted again`);
    assert.ok(live.sessionFd >= 0, `${w.name} is preserved again`);
    for (const f of w.files) {
      const lf: WorkloadFile = live.files.find((x) => x.token === f.token)!;
      const expected = new Uint8Array(f.size);
      for (const wr of f.writes) expected.set(wr.data, wr.at);
      const got = new Uint8Array(f.size);
      assert.equal(p.pread(lf.fd, got, 0), f.size);
      assert.ok(Buffer.from(got).equals(expected), `${w.name} ${f.label}: every byte`);
      assert.equal(p.lseek(lf.fd, 0, 1), f.pos, `${w.name} ${f.label}: position`);
    }
  }
}

/** The fall-back invariants: cold-booted machine, nothing restored, every workload to restart. */
function assertFellBack(m: Machine, agent: LiveUpdateAgent, r: UpdateReport, step: string, errno?: string): void {
  assert.equal(r.outcome, 'fell-back', JSON.stringify(r.errors));
  assert.equal(r.exitStatus, EXIT_FELL_BACK);
  assert.equal(r.reason?.step, step, JSON.stringify(r.reason));
  if (errno) assert.equal(r.reason?.errno, errno);
  assert.equal(r.to.coldBooted, true);
  assert.equal(m.kernel.handover, false, 'the machine was cold-booted');
  assert.equal(m.panic, undefined);
  assert.equal(agent.kernel, m.kernel);
  assert.deepEqual([...r.restartRequired].sort(), WORKLOADS.map((w) => w.name).sort());
  assert.ok(r.workloads.every((w) => w.status === 'restart-required' && w.files.every((f) => f.fd === undefined)));
  assert.equal(agent.workloads.size, 0);
  assert.ok(r.phases.some((p) => p.name === 'cold-boot'));
}

/** Captures, just before the cold boot, the sessions retrieved but never finished (must be none). */
function halfRestoredProbe(): { hook: (k: Kernel | undefined) => void; seen: Array<string[] | 'panicked'> } {
  const seen: Array<string[] | 'panicked'> = [];
  return {
    seen,
    hook: (k) => seen.push(k ? (k.luo?.sessions.incoming.filter((s) => s.retrieved).map((s) => s.name) ?? []) : 'panicked'),
  };
}

function withHooks(agent: LiveUpdateAgent, hooks: AgentHooks): void {
  agent.hooks = hooks;
}

test('agent: three workloads through three updates, every byte verified, phases reported', () => {
  const { m, agent, lines } = setup();
  for (let u = 1; u <= 3; u++) {
    const r = agent.update();
    assert.equal(r.outcome, 'updated', JSON.stringify(r.errors));
    assert.equal(r.exitStatus, EXIT_UPDATED);
    assert.deepEqual(r.errors, []);
    assert.equal(r.generation, u);
    assert.equal(m.kernel.luo!.incomingNum, u, 'liveupdate_num counts the updates');
    assert.equal(r.to.coldBooted, false);
    assert.deepEqual(r.phases.map((p) => p.name), ['prepare', 'kexec.serialize', 'kexec.handover', 'kexec.boot', 'open', 'retrieve', 'verify', 'finish', 'readopt']);
    assert.ok(r.phases.every((p) => p.ms >= 0));
    assert.ok(r.blackoutMs > 0);
    assert.equal(r.workloads.length, 3);
    for (const w of r.workloads) {
      assert.equal(w.status, 'restored');
      assert.equal(w.readopted, true);
      assert.equal(w.files.length, 2);
      for (const f of w.files) {
        assert.ok(f.verified, `${w.name} ${f.token}`);
        assert.match(f.expected.checksum!, /^sha256:[0-9a-f]{64}$/);
        assert.equal(f.got!.checksum, f.expected.checksum);
        assert.ok(f.fd! >= 0);
      }
    }
    const db = r.workloads.find((w) => w.name === 'vm-db')!.files.find((f) => f.label === 'device-state')!;
    assert.equal(db.got!.seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW, 'seals survive');
    verifyEveryByte(agent);
    // Nothing is left behind in LUO: every incoming session was finished and removed.
    assert.deepEqual(m.kernel.luo!.sessions.incoming.map((s) => s.name), []);
    assert.deepEqual(m.kernel.luo!.sessions.outgoing.map((s) => s.name), ['vm-web', 'vm-db', 'vm-batch']);
  }
  // The structured log: JSON lines with time, level, event.
  for (const l of lines) {
    const e = JSON.parse(l) as Record<string, unknown>;
    assert.match(String(e.time), /^\d{4}-\d\d-\d\dT/);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(String(e.level)));
    assert.equal(typeof e.event, 'string');
  }
  const done = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === 'update.done');
  assert.equal(done.length, 3);
  assert.deepEqual(done.map((e) => e.outcome), ['updated', 'updated', 'updated']);
  assert.ok(lines.some((l) => JSON.parse(l).event === 'workload.adopted' && JSON.parse(l).files[0].token === '0x100'));
});

test('agent policy: ENOENT on open (the new kernel booted with liveupdate=off) falls back to a cold boot', () => {
  const { m, agent, entries } = setup();
  const r = agent.update({ cmdline: withParam(m.kernel.cmdline.raw, 'liveupdate', 'off') });
  assertFellBack(m, agent, r, 'open-device', 'ENOENT');
  assert.match(r.reason!.message, /\/dev\/liveupdate/);
  assert.equal(m.kernel.cmdline.params.get('liveupdate'), 'off', 'the fresh boot is the kernel that was asked for');
  assert.ok(entries.some((e) => e.event === 'fallback.cold-boot' && e.level === 'warn'));
  assert.ok(entries.some((e) => e.event === 'update.done' && e.outcome === 'fell-back' && e.exit_status === 3));
});

test('agent policy: ENOENT on open (LUO disabled by luo.restore_fail=disable after corrupt state) falls back', () => {
  const { m, agent } = setup('console=ttyS0 kho=on liveupdate=on luo.restore_fail=disable');
  const k = m.kernel;
  k.onReboot(() => m.memory.write(k.luo!.outgoingSerPa, new TextEncoder().encode('luo-v4\0')));
  let booted: Kernel | undefined;
  withHooks(agent, { afterBoot: (k2) => (booted = k2) });
  const r = agent.update();
  assertFellBack(m, agent, r, 'open-device', 'ENOENT');
  assert.ok(booted!.log.grep(/compatible is "luo-v4"/).length >= 1, 'the new kernel said why');
  assert.ok(m.kernel.luo!.enabled, 'after the cold boot LUO works again');
  // The agent works again on the fresh kernel.
  const fd = agent.createMemfd('fresh', { size: 4096 });
  assert.ok(agent.adopt({ name: 'vm-web', files: [{ token: 1, fd }] }).ok);
  assert.equal(agent.update().outcome, 'updated');
});

test('agent policy: EIO on open (a corrupt file entry) falls back; nothing half-restored', () => {
  const { m, agent } = setup();
  const k = m.kernel;
  k.onReboot(() => {
    const sessions = m.memory.readU64(k.luo!.outgoingSerPa + 16n);
    const files = m.memory.readU64(sessions + 16n + 64n); // first session's file block
    m.memory.write(files + 16n, new TextEncoder().encode('unknown-v9\0'));
  });
  const probe = halfRestoredProbe();
  withHooks(agent, { beforeColdBoot: probe.hook });
  const r = agent.update();
  assertFellBack(m, agent, r, 'open-device', 'EIO');
  assert.match(r.reason!.message, /unknown-v9/);
  assert.deepEqual(probe.seen, [[]]);
});

test('agent policy fallbackBy fresh-kexec: the same fall-back by a kexec that hands nothing over (no power cycle); after a panic, a cold boot all the same', () => {
  const { m, agent, entries } = setup();
  const r = agent.update({ cmdline: withParam(m.kernel.cmdline.raw, 'liveupdate', 'off'), fallbackBy: 'fresh-kexec' });
  assert.equal(r.outcome, 'fell-back');
  assert.deepEqual([r.to.coldBooted, r.to.freshKexec], [false, true]);
  assert.equal(r.phases.at(-1)!.name, 'fresh-kexec');
  assert.ok(m.kernel.kexecStats, 'the fall-back kernel was started by a kexec');
  assert.equal(m.kernel.handover, false, 'with nothing handed over');
  assert.ok(entries.some((e) => e.event === 'fallback.fresh-kexec'));
  assert.deepEqual(r.restartRequired.sort(), WORKLOADS.map((w) => w.name).sort());
  // a panic leaves no kernel to kexec from: the power cycle
  const s2 = setup();
  const k = s2.m.kernel;
  k.onReboot(() => s2.m.memory.write(k.luo!.outgoingSerPa, new TextEncoder().encode('luo-v4\0')));
  const r2 = s2.agent.update({ fallbackBy: 'fresh-kexec' });
  assert.deepEqual([r2.outcome, r2.to.coldBooted, r2.to.freshKexec], ['fell-back', true, undefined]);
});

test('agent policy: a kernel panic (panic policy, corrupt luo_ser) falls back to a cold boot', () => {
  const { m, agent } = setup();
  const k = m.kernel;
  k.onReboot(() => m.memory.write(k.luo!.outgoingSerPa, new TextEncoder().encode('luo-v4\0')));
  const probe = halfRestoredProbe();
  withHooks(agent, { beforeColdBoot: probe.hook });
  const r = agent.update();
  assertFellBack(m, agent, r, 'kexec');
  assert.match(r.reason!.message, /Kernel panic - not syncing/);
  assert.deepEqual(probe.seen, ['panicked']);
  assert.ok(!r.phases.some((p) => p.name === 'cleanup'), 'nothing to clean up in a kernel that never ran');
});

test('agent policy: a missing session (closed before the kexec) falls back; the others are finished, not left half-restored', () => {
  const { m, agent } = setup();
  assert.equal(agent.process.close(agent.workload('vm-db')!.sessionFd), 0); // an operator closes it by mistake
  const probe = halfRestoredProbe();
  withHooks(agent, { beforeColdBoot: probe.hook });
  const r = agent.update();
  assertFellBack(m, agent, r, 'retrieve-session', 'ENOENT');
  assert.equal(r.reason!.workload, 'vm-db');
  assert.deepEqual(r.errors.map((e) => [e.workload, e.step, e.errno]), [['vm-db', 'retrieve-session', 'ENOENT']]);
  assert.deepEqual(probe.seen, [[]], 'vm-web, vm-batch and the agent session were finished before the cold boot');
  assert.ok(r.phases.some((p) => p.name === 'cleanup'));
});

test('agent policy: a retrieve error (injected memfd retrieve failure) falls back and says where', () => {
  const { m, agent, entries } = setup();
  const probe = halfRestoredProbe();
  // Retrieves run: the manifest, then vm-web (2 files), then vm-db's guest RAM: fail that one.
  withHooks(agent, { afterBoot: (k) => injectFault(k, { op: 'retrieve', errno: 'EIO', skip: 3, times: 1 }), beforeColdBoot: probe.hook });
  const r = agent.update();
  assertFellBack(m, agent, r, 'retrieve-fd', 'EIO');
  assert.deepEqual(r.errors.map((e) => [e.workload, e.step, e.errno, e.token]), [['vm-db', 'retrieve-fd', 'EIO', '0x100']]);
  assert.match(r.reason!.message, /injected retrieve fault/);
  const db = r.workloads.find((w) => w.name === 'vm-db')!;
  assert.equal(db.errors.length, 1);
  assert.deepEqual(probe.seen, [[]]);
  assert.ok(entries.some((e) => e.event === 'retrieve-fd.failed' && e.workload === 'vm-db' && e.errno === 'EIO'));
});

test('agent policy: a verify failure (a file changed under the hand-over) falls back', () => {
  const { m, agent } = setup();
  // vm-batch's checksum callback never gives the same answer twice: the file does not verify.
  let n = 0;
  const w = agent.workload('vm-batch')!;
  (w as { checksum: unknown }).checksum = () => `call-${n++}`;
  const r = agent.update();
  assertFellBack(m, agent, r, 'verify');
  assert.equal(r.reason!.workload, 'vm-batch');
  assert.match(r.reason!.message, /checksum call-\d+, expected call-\d+/);
});

test('agent: a kexec the old kernel refuses (freeze fault) is reported as refused; a retry succeeds', () => {
  const { m, agent, entries } = setup();
  const k = m.kernel;
  const fault = injectFault(k, { op: 'freeze', errno: 'EIO', skip: 2, times: 1 });
  const r = agent.update();
  assert.equal(r.outcome, 'refused');
  assert.equal(r.exitStatus, EXIT_REFUSED);
  assert.equal(r.reason?.step, 'kexec');
  assert.equal(r.reason?.errno, 'EIO');
  assert.equal(m.kernel, k, 'still the old kernel');
  assert.equal(agent.kernel, k);
  assert.ok(r.workloads.every((w) => w.status === 'running'));
  assert.deepEqual(r.restartRequired, []);
  assert.ok(entries.some((e) => e.event === 'kexec.refused'));
  assert.equal(fault.hits, 1);
  const again = agent.update();
  assert.equal(again.outcome, 'updated', JSON.stringify(again.errors));
  verifyEveryByte(agent);
});

test('agent: adopt reports errors with errno (unsupported fd, duplicate, device busy, agent session name)', () => {
  const { m, agent } = setup();
  const p = agent.process;
  const devnull = p.open('/dev/null', 2);
  const r1 = agent.adopt({ name: 'bad', files: [{ token: 1, fd: devnull }] });
  assert.equal(r1.ok, false);
  assert.deepEqual(r1.errors.map((e) => [e.step, e.errno, e.token]), [['preserve', 'ENOENT', '0x1']]);
  assert.equal(agent.workload('bad'), undefined);
  assert.ok(!m.kernel.luo!.sessions.outgoing.some((s) => s.name === 'bad'), 'the failed session was closed');
  const r2 = agent.adopt({ name: 'vm-web', files: [] });
  assert.deepEqual(r2.errors.map((e) => e.errno), ['EEXIST']);
  const fd = agent.createMemfd('x', { size: 4096 });
  const r3 = agent.adopt({ name: 'other', files: [{ token: 1, fd: agent.workload('vm-web')!.files[0]!.fd }, { token: 2, fd }] });
  assert.deepEqual(r3.errors.map((e) => [e.step, e.errno]), [['preserve', 'EBUSY']], 'already preserved by vm-web');
  assert.deepEqual(agent.adopt({ name: 'luo-agent', files: [] }).errors.map((e) => e.errno), ['EINVAL']);
  // Another agent (a second process) cannot open the device the first one holds.
  const other = new LiveUpdateAgent(m);
  const r4 = other.adopt({ name: 'z', files: [] });
  assert.deepEqual(r4.errors.map((e) => [e.step, e.errno]), [['open-device', 'EBUSY']]);
});
