/**
 * CONFIG_LIVEUPDATE_TEST: the test module links three FLBs to every file handler. With N memfds
 * preserved the FLB page holds three records of count N and data 0xFEEDF00DCAFEBEE0 + i; the next
 * kernel of the same configuration retrieves them; one without it leaves them alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_BUILD } from '../../src/kernel/build.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { readFlbPage } from '../../src/luo/flb.ts';
import { parseScenario, runScenario } from '../../src/scenario/index.ts';
import { captureAtKexec, memInput } from '../inspect/helpers.ts';
import { inspectInput } from '../../src/inspect/inspect.ts';

const GiB = 1n << 30n;
const TESTED = { ...DEFAULT_BUILD, liveupdateTest: true };

function preserved(build = TESTED): Machine {
  const m = new Machine({ ramSize: GiB, build });
  const luo = m.kernel.luo!;
  luo.open();
  const s = luo.createSession('vm');
  for (let i = 0; i < 2; i++) luo.sessions.preserveFile(s, BigInt(i), memfdCreate(m.kernel.memfd, `m${i}`, 0));
  return m;
}

test('three test FLBs on every handler: the FLB page holds three records of count 2 with the test data; the same config takes them back', () => {
  const m = preserved();
  const cap = captureAtKexec(m);
  const r = inspectInput(memInput(cap.segs), {});
  assert.deepEqual(r.flbs?.records.map((x) => [x.name, x.data, x.count]), [0, 1, 2].map((i) => [`liveupdate-test-flb-v${i}`, 0xfeedf00dcafebee0n + BigInt(i), 2n]));
  const m2 = preserved();
  const k2 = m2.kexec();
  k2.luo!.open();
  const s = k2.luo!.retrieveSession('vm');
  k2.luo!.sessions.retrieveFile(s, 0n);
  k2.luo!.sessions.retrieveFile(s, 1n);
  const flb = k2.luo!.flbs.find('liveupdate-test-flb-v1')!;
  assert.deepEqual(k2.luo!.flbs.getIncoming(flb), { index: 1 });
  k2.luo!.sessions.finish(s);
  // a kernel without the test module: the records are there, nobody claims them, the files come back
  const m3 = preserved();
  const k3 = m3.kexec({ build: DEFAULT_BUILD });
  assert.equal(readFlbPage(m3.memory, k3.luo!.incomingFlbsPa, m3.memory.nrPages).length, 3);
  k3.luo!.open();
  assert.ok(k3.luo!.sessions.retrieveFile(k3.luo!.retrieveSession('vm'), 0n));
});

test('scenarios and the test config: build: { test: true }', () => {
  const text = [
    'machine: { build: { test: true } }',
    'steps:',
    '  - create-session: { name: vm, as: s }',
    '  - memfd: { as: m, size: 4KiB }',
    '  - preserve: { session: s, fd: m, token: 1 }',
    '  - kexec: {}',
    '  - retrieve-session: { name: vm, as: r }',
    '  - retrieve: { session: r, token: 1, as: m2 }',
    '  - finish: r',
  ].join('\n');
  const r = runScenario(parseScenario(text, 'test-config.yaml'));
  assert.deepEqual(r.steps.filter((s) => s.status === 'fail').map((s) => `${s.index} ${s.title}: ${s.reason}`), []);
});
