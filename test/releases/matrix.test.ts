/**
 * Every ordered pair of the releases luo can boot: a session with a memfd is preserved on FROM and
 * the machine kexecs into TO. What happens must be exactly what `luo plan` predicts — restored byte
 * for byte, or the refusal at the layer it names, with its log line and the errno the agent sees.
 * Each pair is a generated scenario (machine.release, kexec.release), so the scenario path is what
 * runs; with luo.restore_fail=disable a LUO refusal leaves a kernel without /dev/liveupdate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RELEASES } from '../../src/abi/releases.ts';
import { unsupportedAbi } from '../../src/kernel/build.ts';
import { plan } from '../../src/releases/plan.ts';
import { parseScenario, runScenario } from '../../src/scenario/index.ts';

const RUNNABLE = RELEASES.filter((r) => unsupportedAbi(r.abi) === undefined);

function scenario(from: string, to: string, disable: boolean): string {
  const v = plan(RELEASES.find((r) => r.name === from)!, RELEASES.find((r) => r.name === to)!).verdict;
  const lines = [
    `name: ${from} to ${to}`,
    `machine: { release: "${from}", cmdline: "console=ttyS0 kho=on liveupdate=on${disable ? ' luo.restore_fail=disable' : ''}" }`,
    'steps:',
    '  - create-session: { name: vm-1, as: s }',
    '  - memfd: { as: m, size: 96KiB, data: [{ pattern: guest, length: 80KiB }, { text: tail, at: 90KiB }], seals: [grow], pos: 7 }',
    '  - preserve: { session: s, fd: m, token: 0x100 }',
  ];
  const log = (s: string): string => `  - kernel-log: { contains: ${JSON.stringify(s)} }`;
  switch (v.kind) {
    case 'live-update':
      lines.push(
        `  - kexec: { release: "${to}" }`,
        '  - retrieve-session: { name: vm-1, as: r }',
        '  - retrieve: { session: r, token: 0x100, as: m2 }',
        '  - verify: { fd: m2, size: 96KiB, pos: 7, seals: [grow], data: [{ pattern: guest, length: 80KiB }, { text: tail, at: 90KiB }] }',
        '  - finish: r',
      );
      break;
    case 'no-handover':
      lines.push(`  - kexec: { release: "${to}" }`, log(v.log), '  - retrieve-session: vm-1', '    expect-errno: ENOENT');
      break;
    case 'restore-failed':
      if (disable) lines.push(`  - kexec: { release: "${to}" }`, log(v.log), '  - open-device', '    expect-errno: ENOENT');
      else lines.push(`  - kexec: { release: "${to}", expect: panic }`, log(v.log));
      break;
    case 'open-failed':
      lines.push(`  - kexec: { release: "${to}" }`, '  - open-device', '    expect-errno: EIO', log(v.log));
      break;
    case 'undefined':
      throw new Error(`${from} -> ${to}: the plan cannot predict it (${v.reason})`);
  }
  return `${lines.join('\n')}\n`;
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
        const text = scenario(from.name, to.name, disable);
        const r = runScenario(parseScenario(text, `${from.name}-${to.name}.yaml`));
        const failed = r.steps.filter((s) => s.status === 'fail').map((s) => `step ${s.index} ${s.title}: ${s.reason}`);
        assert.deepEqual(failed, [], text);
      });
    }
  }
}
