/**
 * File handler plugins: the two example modules (an eventfd-like counter, a VFIO-like device whose
 * files share an IOMMU-domain FLB) loaded from their files, built into kernels, preserved, handed
 * over and retrieved; a kernel built without them; and broken plugins, which fail only what they
 * touch, with the errno they name (else EIO naming the handler and callback).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLuoError } from '../../src/errno.ts';
import { DEFAULT_BUILD, withHandlers } from '../../src/kernel/build.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { loadHandlerPlugin, loadHandlerPlugins } from '../../src/kernel/plugin-load.ts';
import type { HandlerPlugin } from '../../src/luo/plugin.ts';
import type { KernelFile } from '../../src/luo/file-handler.ts';
import { loadScenarioPlugins, parseScenario, runScenario } from '../../src/scenario/index.ts';

const root = new URL('../../', import.meta.url).pathname;
const COUNTER = `${root}examples/handlers/counter.mjs`;
const VFIO = `${root}examples/handlers/vfio-device.mjs`;
const GiB = 1n << 30n;

type Counter = KernelFile & { count: bigint; flags: number };
type Vfio = KernelFile & { state: Uint8Array; domain?: { id: bigint; restored?: boolean } };

async function machineWith(...paths: string[]): Promise<{ m: Machine; plugins: HandlerPlugin[] }> {
  const plugins = await loadHandlerPlugins(paths);
  return { m: new Machine({ ramSize: GiB, build: withHandlers(DEFAULT_BUILD, plugins) }), plugins };
}

test('the example plugins: a counter and two VFIO devices sharing one IOMMU-domain FLB come back after a kexec', async () => {
  const { m, plugins } = await machineWith(COUNTER, VFIO);
  const [counter, vfio] = plugins as [HandlerPlugin, HandlerPlugin];
  const luo = m.kernel.luo!;
  assert.deepEqual(luo.fileHandlers.map((h) => h.compatible), ['memfd-v2', 'luo-example-counter-v1', 'luo-example-vfio-v1']);
  luo.open();
  const s = luo.createSession('vm-1');
  const c = counter.open!({ count: 5, flags: 1 }) as Counter;
  luo.sessions.preserveFile(s, 1n, c);
  c.count = 99n; // changed after PRESERVE_FD: the freeze hands over the last value
  luo.sessions.preserveFile(s, 2n, vfio.open!({ device: 'nic', state: '0102' }));
  luo.sessions.preserveFile(s, 3n, vfio.open!({ device: 'gpu', state: 'ff' }));
  const k2 = m.kexec();
  // one FLB record for both devices
  assert.deepEqual(k2.luo!.flbs.incomingRecords.map((r) => [r.name, r.count]), [['luo-example-iommu-domain-v1', 2n]]);
  k2.luo!.open();
  const r = k2.luo!.retrieveSession('vm-1');
  const c2 = k2.luo!.sessions.retrieveFile(r, 1n) as Counter;
  assert.deepEqual(counter.describe!(c2), { count: 99, flags: 1 });
  const gpu = k2.luo!.sessions.retrieveFile(r, 3n) as Vfio;
  const nic = k2.luo!.sessions.retrieveFile(r, 2n) as Vfio;
  assert.deepEqual([vfio.describe!(nic), vfio.describe!(gpu)], [{ state: '0102', domainRestored: true }, { state: 'ff', domainRestored: true }]);
  assert.equal(nic.domain, gpu.domain, 'one domain object for both devices');
  k2.luo!.sessions.finish(r);
  assert.ok(k2.log.lines.some((l) => /IOMMU domain \d+ finished/.test(l.msg)));
  assert.ok(k2.log.lines.some((l) => l.msg.includes('registered file handler plugin "luo-example-vfio-v1"')));
  // every page the plugins preserved was given back
  assert.equal(k2.kho!.unrestoredBlocks, m.kernel.kho!.unrestoredBlocks);
});

test('a kernel built without the plugin cannot take its files: the first open fails (EIO) naming the compatible', async () => {
  const { m, plugins } = await machineWith(COUNTER);
  const luo = m.kernel.luo!;
  luo.open();
  luo.sessions.preserveFile(luo.createSession('vm-1'), 1n, plugins[0]!.open!({ count: 1 }));
  const k2 = m.kexec({ build: DEFAULT_BUILD });
  assert.throws(() => k2.luo!.open(), (e: unknown) => isLuoError(e, 'EIO') && /luo-example-counter-v1/.test((e as Error).message));
});

test('plugin files through the uAPI and a scenario: machine.handlers, plugin-open, preserve, retrieve, plugin-check; the CLI runs the example', async () => {
  const file = `${root}examples/scenarios/handler-plugins.yaml`;
  const sc = parseScenario(readFileSync(file, 'utf8'), file);
  const r = runScenario(sc, { plugins: await loadScenarioPlugins(sc, file) });
  assert.deepEqual(r.steps.filter((s) => s.status === 'fail').map((s) => `${s.index} ${s.title}: ${s.reason}`), []);
  assert.equal(r.steps.filter((s) => s.kind === 'plugin-check').length, 3);
  // without the plugins loaded the runner says so
  assert.throws(() => runScenario(sc), (e: unknown) => isLuoError(e, 'EINVAL') && /was not loaded/.test((e as Error).message));
  const cli = spawnSync(process.execPath, [`${root}bin/luo.mjs`, 'scenario', file], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stdout + cli.stderr);
  assert.match(cli.stdout, /PASSED: 18 of 18 steps passed/);
});

test('bad plugin modules are refused with the file named: missing (ENOENT), not a plugin, a bad compatible, a duplicate (EEXIST)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-plugin-'));
  await assert.rejects(loadHandlerPlugin(join(dir, 'nope.mjs')), (e: unknown) => isLuoError(e, 'ENOENT') && /nope\.mjs: no such file/.test((e as Error).message));
  writeFileSync(join(dir, 'empty.mjs'), 'export default {};\n');
  await assert.rejects(loadHandlerPlugin(join(dir, 'empty.mjs')), (e: unknown) => isLuoError(e, 'EINVAL') && /not a handler plugin.*compatible/.test((e as Error).message));
  writeFileSync(join(dir, 'long.mjs'), `export default { compatible: '${'x'.repeat(48)}', create() { return { ops: {} }; } };\n`);
  await assert.rejects(loadHandlerPlugin(join(dir, 'long.mjs')), (e: unknown) => isLuoError(e, 'EINVAL') && /at most 47 bytes/.test((e as Error).message));
  writeFileSync(join(dir, 'syntax.mjs'), 'export default {;\n');
  await assert.rejects(loadHandlerPlugin(join(dir, 'syntax.mjs')), (e: unknown) => isLuoError(e, 'EINVAL') && /cannot be imported/.test((e as Error).message));
  await assert.rejects(loadHandlerPlugins([COUNTER, COUNTER]), (e: unknown) => isLuoError(e, 'EEXIST'));
});

test('a plugin that throws fails only that call: its errno when it names one, else EIO naming handler and callback; nothing else changes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-plugin-'));
  writeFileSync(join(dir, 'broken.mjs'), `
let n = 0;
export default {
  compatible: 'broken-v1',
  create() {
    return { ops: {
      canPreserve: (_h, f) => f.kind === 'broken',
      preserve(a) { if (n++ === 0) throw new TypeError('oops'); a.serializedData = 1n; },
      unpreserve() {}, retrieve() { throw new Error('never'); }, finish() {},
    } };
  },
  open: () => ({ kind: 'broken', pos: 0 }),
};
`);
  writeFileSync(join(dir, 'no-create.mjs'), `export default { compatible: 'dead-v1', create() { throw new Error('no hardware'); } };\n`);
  const { m, plugins } = await machineWith(join(dir, 'broken.mjs'), join(dir, 'no-create.mjs'), VFIO);
  const luo = m.kernel.luo!;
  // a create() that throws: logged, that plugin absent, the others registered
  assert.deepEqual(luo.fileHandlers.map((h) => h.compatible), ['memfd-v2', 'broken-v1', 'luo-example-vfio-v1']);
  assert.ok(m.kernel.log.lines.some((l) => /plugin "dead-v1" not registered: handler plugin "dead-v1" create failed: no hardware/.test(l.msg)));
  luo.open();
  const s = luo.createSession('vm-1');
  const broken = plugins[0]!;
  assert.throws(() => luo.sessions.preserveFile(s, 1n, broken.open!({})), (e: unknown) => isLuoError(e, 'EIO') && /handler "broken-v1" preserve failed: oops/.test((e as Error).message));
  assert.equal(s.fileSet.count, 0, 'nothing kept of the failed preserve');
  luo.sessions.preserveFile(s, 1n, broken.open!({})); // the retry works
  // an errno the plugin names is kept: E2BIG for a device state too large
  assert.throws(() => luo.sessions.preserveFile(s, 2n, plugins[2]!.open!({ device: 'x', state: 'ab'.repeat(5000) })), (e: unknown) => isLuoError(e, 'E2BIG'));
  assert.equal(s.fileSet.count, 1);
  assert.equal(luo.flbs.incomingRecords.length, 0);
  // a retrieve that throws stays failed (EIO), the session's other files are unaffected
  const k2 = m.kexec();
  k2.luo!.open();
  const r = k2.luo!.retrieveSession('vm-1');
  assert.throws(() => k2.luo!.sessions.retrieveFile(r, 1n), (e: unknown) => isLuoError(e, 'EIO') && /retrieve failed: never/.test((e as Error).message));
  assert.throws(() => k2.luo!.sessions.retrieveFile(r, 1n), (e: unknown) => isLuoError(e, 'EIO'));
});
