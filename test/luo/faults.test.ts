/**
 * Fault injection beyond the memfd handler's callbacks: KHO preservation and allocation (ENOMEM
 * at the Nth call), an FLB's preserve and retrieve, a subsystem's prepare and freeze, a handler's
 * can_preserve. For each, what the kernel does on the way back: the state as before, nothing left
 * preserved, and the same operation succeeding once the fault is spent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLuoError, type ErrnoName } from '../../src/errno.ts';
import { DEFAULT_BUILD, withHandlers } from '../../src/kernel/build.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { loadHandlerPlugins } from '../../src/kernel/plugin-load.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { injectFault } from '../../src/scenario/faults.ts';
import { parseScenario, runScenario } from '../../src/scenario/index.ts';
import type { Subsystem } from '../../src/luo/subsystems.ts';

const GiB = 1n << 30n;
const errno = (name: ErrnoName) => (e: unknown) => isLuoError(e, name);
const VFIO = new URL('../../examples/handlers/vfio-device.mjs', import.meta.url).pathname;

/** A memfd of `pages` written pages (one folio each). */
function memfd(m: Machine, pages: number) {
  const f = memfdCreate(m.kernel.memfd, 'ram', 0);
  for (let i = 0; i < pages; i++) f.pwrite(new Uint8Array([i + 1]), i * 4096);
  return f;
}

test('kho-preserve ENOMEM at the 3rd preservation inside PRESERVE_FD: nothing stays preserved, the file is not in the session, the retry works and survives a kexec', () => {
  const m = new Machine({ ramSize: GiB });
  const luo = m.kernel.luo!;
  luo.open();
  const s = luo.createSession('vm');
  const f = memfd(m, 4);
  const blocks = m.kernel.kho!.preservedBlocks;
  const fault = injectFault(m.kernel, { op: 'kho-preserve', errno: 'ENOMEM', skip: 2, times: 1 });
  assert.throws(() => luo.sessions.preserveFile(s, 1n, f), errno('ENOMEM'));
  assert.equal(fault.hits, 1);
  assert.equal(m.kernel.kho!.preservedBlocks, blocks, 'every folio and block preserved before the failure was given back');
  assert.equal(s.fileSet.count, 0);
  luo.sessions.preserveFile(s, 1n, f);
  const k2 = m.kexec();
  k2.luo!.open();
  const back = k2.luo!.sessions.retrieveFile(k2.luo!.retrieveSession('vm'), 1n) as ReturnType<typeof memfdCreate>;
  assert.deepEqual([...[0, 1, 2, 3].map((i) => back.pread(1, i * 4096)[0])], [1, 2, 3, 4]);
});

test('kho-alloc ENOMEM when a new session needs a block: CREATE_SESSION fails, no session, nothing preserved; the retry works', () => {
  const m = new Machine({ ramSize: GiB });
  const luo = m.kernel.luo!;
  luo.open();
  const blocks = m.kernel.kho!.preservedBlocks;
  injectFault(m.kernel, { op: 'kho-alloc', errno: 'ENOMEM', times: 1 });
  assert.throws(() => luo.createSession('vm'), errno('ENOMEM'));
  assert.deepEqual([luo.sessions.outgoing.length, m.kernel.kho!.preservedBlocks], [0, blocks]);
  luo.createSession('vm');
  assert.equal(luo.sessions.outgoing.length, 1);
});

test('flb-preserve fails the first file of a handler with an FLB: no FLB object, no file, nothing preserved; the retry works; flb-retrieve fails that retrieve only', async () => {
  const plugins = await loadHandlerPlugins([VFIO]);
  const m = new Machine({ ramSize: GiB, build: withHandlers(DEFAULT_BUILD, plugins) });
  const luo = m.kernel.luo!;
  luo.open();
  const s = luo.createSession('vm');
  const dev = plugins[0]!.open!({ device: 'nic', state: '01' });
  const blocks = m.kernel.kho!.preservedBlocks;
  const flb = luo.flbs.find('luo-example-iommu-domain-v1')!;
  injectFault(m.kernel, { op: 'flb-preserve', errno: 'EIO', flb: flb.compatible, times: 1 });
  assert.throws(() => luo.sessions.preserveFile(s, 1n, dev), errno('EIO'));
  assert.deepEqual([luo.flbs.outgoingCount(flb), s.fileSet.count, m.kernel.kho!.preservedBlocks], [0, 0, blocks]);
  luo.sessions.preserveFile(s, 1n, dev);
  luo.sessions.preserveFile(s, 2n, memfd(m, 1));
  assert.equal(luo.flbs.outgoingCount(flb), 1);
  const k2 = m.kexec();
  injectFault(k2, { op: 'flb-retrieve', errno: 'EIO', flb: 'luo-example-iommu-domain-v1' });
  k2.luo!.open();
  const r = k2.luo!.retrieveSession('vm');
  assert.throws(() => k2.luo!.sessions.retrieveFile(r, 1n), errno('EIO'));
  assert.ok(k2.luo!.sessions.retrieveFile(r, 2n), 'the memfd of the same session is unaffected');
});

test('subsystem-freeze fails at the reboot: the kexec is refused with its errno, the subsystems that froze are cancelled, LUO is usable; the retry hands the data over', () => {
  const log: string[] = [];
  const sub = (name: string, value: bigint): Subsystem => ({
    name,
    ops: {
      freeze(a) { log.push(`freeze ${name}`); a.data = value; },
      cancel() { log.push(`cancel ${name}`); },
    },
  });
  const m = new Machine({ ramSize: GiB });
  const ss = m.kernel.luo!.subsystems;
  ss.register(sub('kvm', 0x11n));
  ss.register(sub('iommu', 0x22n));
  injectFault(m.kernel, { op: 'subsystem-freeze', errno: 'EAGAIN', subsystem: 'iommu', times: 1 });
  assert.throws(() => m.kexec(), errno('EAGAIN'));
  assert.deepEqual(log, ['freeze kvm', 'cancel kvm']);
  assert.equal(ss.state, 'normal');
  m.kernel.luo!.open();
  m.kernel.luo!.createSession('still-usable');
  const k2 = m.kexec();
  assert.deepEqual([k2.luo!.subsystems.getData('kvm'), k2.luo!.subsystems.getData('iommu')], [0x11n, 0x22n]);
  // subsystem-prepare: the same rollback for an explicit prepare
  const m2 = new Machine({ ramSize: GiB });
  m2.kernel.luo!.subsystems.register(sub('a', 1n));
  m2.kernel.luo!.subsystems.register(sub('b', 2n));
  injectFault(m2.kernel, { op: 'subsystem-prepare', errno: 'EIO', subsystem: 'b', times: 1 });
  assert.throws(() => m2.kernel.luo!.subsystems.prepare(), errno('EIO'));
  assert.equal(m2.kernel.luo!.subsystems.state, 'normal');
  m2.kernel.luo!.subsystems.prepare();
  assert.equal(m2.kernel.luo!.subsystems.state, 'prepared');
});

test('can-preserve: the handler refuses the file, PRESERVE_FD is ENOENT; naming what is not there is ENOENT', () => {
  const m = new Machine({ ramSize: GiB });
  const luo = m.kernel.luo!;
  luo.open();
  const s = luo.createSession('vm');
  injectFault(m.kernel, { op: 'can-preserve', errno: 'ENOENT', times: 1 });
  assert.throws(() => luo.sessions.preserveFile(s, 1n, memfd(m, 1)), errno('ENOENT'));
  luo.sessions.preserveFile(s, 1n, memfd(m, 1));
  assert.throws(() => injectFault(m.kernel, { op: 'flb-preserve', errno: 'EIO', flb: 'nope' }), errno('ENOENT'));
  assert.throws(() => injectFault(m.kernel, { op: 'subsystem-freeze', errno: 'EIO', subsystem: 'nope' }), errno('ENOENT'));
});

test('scenarios inject KHO faults and check the rollback: ENOMEM, then the same preserve passes', () => {
  const text = [
    'steps:',
    '  - create-session: { name: vm, as: s }',
    '  - memfd: { as: m, size: 16KiB, data: [{ pattern: guest, length: 16KiB }] }',
    '  - inject-fault: { op: kho-preserve, errno: ENOMEM, skip: 1, times: 1 }',
    '  - preserve: { session: s, fd: m, token: 1 }',
    '    expect-errno: ENOMEM',
    '  - preserve: { session: s, fd: m, token: 1 }',
    '  - kexec: {}',
    '  - retrieve-session: { name: vm, as: r }',
    '  - retrieve: { session: r, token: 1, as: m2 }',
    '  - verify: { fd: m2, size: 16KiB, data: [{ pattern: guest, length: 16KiB }] }',
  ].join('\n');
  const r = runScenario(parseScenario(text, 'kho-fault.yaml'));
  assert.deepEqual(r.steps.filter((s) => s.status === 'fail').map((s) => `${s.index} ${s.title}: ${s.reason}`), []);
  assert.throws(() => parseScenario('steps:\n  - inject-fault: { op: flb-preserve, errno: EIO }\n', 'x.yaml'), /names the FLB/);
});
