/**
 * Every ordered pair of the releases luo can boot: a session with a memfd is preserved on FROM and
 * the machine kexecs into TO. What happens must be exactly what `luo plan` predicts — restored byte
 * for byte, or the refusal at the layer it names, with its log line and the errno the agent sees.
 * Each pair is a generated scenario (machine.release, kexec.release), so the scenario path is what
 * runs; with luo.restore_fail=disable a LUO refusal leaves a kernel without /dev/liveupdate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Release, RELEASES } from '../../src/abi/releases.ts';
import { plan } from '../../src/releases/plan.ts';
import { parseScenario, runScenario } from '../../src/scenario/index.ts';

const RUNNABLE = RELEASES;

/** The scenario of one hop, with the outcome `luo plan` predicts; `log` is what the console must show. */
function scenario(from: Release, to: Release, disable: boolean): { text: string; log?: string } {
  const v = plan(from, to).verdict;
  // memfd-v1 hands no seals over: the new memfd is created unsealable (only F_SEAL_SEAL)
  const seals = to.abi.memfd === 'memfd-v1' ? '[seal]' : '[grow]';
  const lines = [
    `name: ${from.name} to ${to.name}`,
    `machine: { release: "${from.name}", cmdline: "console=ttyS0 kho=on liveupdate=on${disable ? ' luo.restore_fail=disable' : ''}" }`,
    'steps:',
    '  - create-session: { name: vm-1, as: s }',
    '  - memfd: { as: m, size: 96KiB, data: [{ pattern: guest, length: 80KiB }, { text: tail, at: 90KiB }], seals: [grow], pos: 7 }',
    '  - preserve: { session: s, fd: m, token: 0x100 }',
  ];
  const panics = v.kind === 'restore-failed' && (!disable || v.panicsAlways === true);
  const kexec = `  - kexec: { release: "${to.name}"${panics ? ', expect: panic' : ''} }`;
  lines.push(kexec);
  switch (v.kind) {
    case 'live-update':
      lines.push(
        '  - retrieve-session: { name: vm-1, as: r }',
        '  - retrieve: { session: r, token: 0x100, as: m2 }',
        `  - verify: { fd: m2, size: 96KiB, pos: 7, seals: ${seals}, data: [{ pattern: guest, length: 80KiB }, { text: tail, at: 90KiB }] }`,
        '  - finish: r',
      );
      return { text: `${lines.join('\n')}\n` };
    case 'no-handover':
      lines.push('  - retrieve-session: vm-1', '    expect-errno: ENOENT');
      break;
    case 'restore-failed':
      if (!panics) lines.push('  - open-device:', '    expect-errno: ENOENT');
      break;
    case 'open-failed':
      lines.push('  - open-device:', '    expect-errno: EIO');
      break;
    case 'files-lost':
      lines.push('  - retrieve-session: { name: vm-1, as: r }', '  - retrieve: { session: r, token: 0x100, as: m2 }', '    expect-errno: ENOENT', '  - finish: r');
      break;
    case 'undefined':
      throw new Error(`${from.name} -> ${to.name}: the plan cannot predict it (${v.reason})`);
  }
  return { text: `${lines.join('\n')}\n`, log: v.log };
}

test('at least the default release and one other can be booted', () => {
  assert.ok(RUNNABLE.some((r) => r.name === '7.3.4'));
  assert.ok(RUNNABLE.length >= 2, RUNNABLE.map((r) => r.name).join(', '));
});

for (const from of RUNNABLE) {
  for (const to of RUNNABLE) {
    const kind = plan(from, to).verdict.kind;
    for (const disable of kind === 'restore-failed' ? [false, true] : [false]) {
      test(`${from.name} -> ${to.name}: ${kind}${disable ? ' (luo.restore_fail=disable)' : ''}, as luo plan says`, () => {
        const { text, log } = scenario(from, to, disable);
        const console: string[] = [];
        const r = runScenario(parseScenario(text, `${from.name}-${to.name}.yaml`), { console: (l) => console.push(l) });
        const failed = r.steps.filter((s) => s.status === 'fail').map((s) => `step ${s.index} ${s.title}: ${s.reason}`);
        assert.deepEqual(failed, [], text);
        if (log) assert.ok(console.some((l) => l.includes(log)), `the console never says "${log}":\n${console.join('\n')}`);
      });
    }
  }
}

/** The layer an agent names for each refusal `luo plan` predicts. */
const LAYER = { 'no-handover': 'KHO', 'restore-failed': 'LUO', 'open-failed': 'files', 'files-lost': 'files' } as const;

for (const from of RUNNABLE) {
  for (const to of RUNNABLE) {
    const v = plan(from, to).verdict;
    if (v.kind === 'undefined') continue;
    test(`agent ${from.name} -> ${to.name}: ${v.kind === 'live-update' ? 'updated' : `falls back and names ${LAYER[v.kind]}`}, as a real agent learns it`, () => {
      const expect = v.kind === 'live-update' ? 'expect: updated' : `expect: fell-back, restart: [vm-1], reason: { layer: ${LAYER[v.kind]} }`;
      const text = [
        `machine: { release: "${from.name}" }`,
        'steps:',
        '  - agent-adopt: { workload: vm-1, files: [{ token: 0x100, size: 64KiB, data: { pattern: guest, length: 64KiB }, label: ram }] }',
        `  - agent-update: { release: "${to.name}", ${expect} }`,
      ].join('\n');
      const r = runScenario(parseScenario(text, `agent-${from.name}-${to.name}.yaml`));
      const failed = r.steps.filter((s) => s.status === 'fail').map((s) => `step ${s.index} ${s.title}: ${s.reason}`);
      assert.deepEqual(failed, [], text);
    });
  }
}
