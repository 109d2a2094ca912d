/**
 * Running scenarios: each shipped example passes with the expected outcome, wrong expectations
 * fail with a clear reason (exit 1), invalid files exit 2 naming line and field, --json output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseScenario, runScenario, type ScenarioResult } from '../../src/scenario/index.ts';
import { runScenarioCli } from '../../src/cli/scenario.ts';

const examples = new URL('../../examples/scenarios/', import.meta.url).pathname;
const bin = new URL('../../bin/luo.mjs', import.meta.url).pathname;

function run(text: string): ScenarioResult {
  return runScenario(parseScenario(text, 'inline.yaml'));
}

async function cli(args: { file?: string; json?: boolean }): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runScenarioCli(args.file, { ...(args.json ? { json: true } : {}) }, { out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) });
  return { code, out, err };
}

const EXPECTED: Record<string, { steps: number; kinds: Record<string, number> }> = {
  'happy-path.yaml': { steps: 42, kinds: { kexec: 3, verify: 6 } },
  'freeze-fault-retry.yaml': { steps: 20, kinds: { kexec: 2, 'inject-fault': 1 } },
  'fallback.yaml': { steps: 13, kinds: { 'agent-update': 5 } },
  'duplicate-51.yaml': { steps: 9, kinds: { kexec: 1 } },
  'subsystems.yaml': { steps: 8, kinds: { kexec: 2, 'subsystem-check': 3 } },
  'flbs.yaml': { steps: 14, kinds: { kexec: 1, 'flb-check': 5 } },
};

for (const [file, want] of Object.entries(EXPECTED)) {
  test(`example ${file}: every step passes`, () => {
    const r = runScenario(parseScenario(readFileSync(examples + file, 'utf8'), file));
    const failed = r.steps.filter((s) => s.status === 'fail');
    assert.deepEqual(failed.map((s) => `${s.index} (line ${s.line}) ${s.title}: ${s.reason}`), []);
    assert.equal(r.ok, true);
    assert.equal(r.steps.length, want.steps);
    for (const [k, n] of Object.entries(want.kinds)) assert.equal(r.steps.filter((s) => s.kind === k).length, n, k);
  });
}

test('example outcomes: the refused kexec, the fall-backs and their reasons, 51 sessions back', () => {
  const freeze = runScenario(parseScenario(readFileSync(`${examples}freeze-fault-retry.yaml`, 'utf8')));
  const refused = freeze.steps.find((s) => s.kind === 'kexec')!;
  assert.match(refused.reason, /failed with EIO as expected \(reboot\(LINUX_REBOOT_CMD_KEXEC\) refused: EIO: injected freeze fault/);
  const fb = runScenario(parseScenario(readFileSync(`${examples}fallback.yaml`, 'utf8')));
  const updates = fb.steps.filter((s) => s.kind === 'agent-update');
  assert.deepEqual(updates.map((s) => s.report!.outcome), ['updated', 'fell-back', 'fell-back', 'fell-back', 'updated']);
  assert.deepEqual(updates.map((s) => s.report!.exitStatus), [0, 3, 3, 3, 0]);
  assert.deepEqual(updates.slice(1, 4).map((s) => [s.report!.reason!.step, s.report!.reason!.errno]), [['open-device', 'ENOENT'], ['kexec', undefined], ['retrieve-fd', 'EIO']]);
  const dup = runScenario(parseScenario(readFileSync(`${examples}duplicate-51.yaml`, 'utf8')));
  assert.match(dup.steps[2]!.reason, /failed with EEXIST as expected/);
  assert.match(dup.steps[6]!.reason, /51 iterations passed/);
});

test('a wrong expectation fails with a clear reason; the run goes on and reports every step', () => {
  const r = run([
    'steps:',
    '  - create-session: a',
    '  - create-session: b',
    '    expect-errno: EEXIST',
    '  - create-session: a',
    '    expect-errno: ENOENT',
    '  - memfd: { as: m, data: hello }',
    '  - verify: { fd: m, size: 4, data: "help" }',
    '  - preserve: { session: a, fd: m, token: 1 }',
  ].join('\n'));
  assert.equal(r.ok, false);
  assert.deepEqual(r.steps.map((s) => s.status), ['pass', 'fail', 'fail', 'pass', 'fail', 'pass']);
  assert.equal(r.steps[1]!.reason, 'expected EEXIST, but it succeeded (session fd 5)');
  assert.match(r.steps[2]!.reason, /^expected ENOENT, got EEXIST: LIVEUPDATE_IOCTL_CREATE_SESSION "a": EEXIST: an outgoing session named "a" already exists$/);
  assert.equal(r.steps[4]!.reason, 'size is 5, expected 4; text "help" at 0: byte 3 is 0x6c, expected 0x70');
  assert.deepEqual([r.passed, r.failed], [3, 3]);
});

test('runner: handles of a replaced kernel, a panicked machine, the expected panic, errors of the agent', () => {
  const r = run([
    'machine: { ram: 1GiB }',
    'steps:',
    '  - create-session: a',
    '  - memfd: { as: m, size: 4096 }',
    '  - preserve: { session: a, fd: m, token: 1 }',
    '  - corrupt: luo-compat',
    '  - kexec:',                                   // 5: fails: panic not expected
    '  - retrieve-session: a',                      // 6: fails: machine down
    '  - cold-boot:',                               // 7
    '  - verify: m',                                // 8: stale handle
    '  - create-session: b',
    '  - corrupt: session-count',
    '  - kexec: { expect: panic }',                 // 11: passes
    '  - cold-boot',
    '  - agent-adopt: { workload: w, files: [{ token: 1, size: 4KiB }] }',
    '  - agent-update: { append: liveupdate=off }', // 14: fails: expected updated
    '  - kexec: { expect: panic }',                 // 15: fails: it booted
  ].join('\n'));
  const st = r.steps.map((s) => [s.index, s.status]);
  assert.deepEqual(st, [[1, 'pass'], [2, 'pass'], [3, 'pass'], [4, 'pass'], [5, 'fail'], [6, 'fail'], [7, 'pass'], [8, 'fail'], [9, 'pass'], [10, 'pass'], [11, 'pass'], [12, 'pass'], [13, 'pass'], [14, 'fail'], [15, 'fail']]);
  assert.match(r.steps[4]!.reason, /^the new kernel panicked: Kernel panic - not syncing: The incoming tree failed to initialize properly \[-22\]/);
  assert.equal(r.steps[5]!.reason, 'the machine panicked at step 5; only a cold-boot step can bring it back');
  assert.equal(r.steps[7]!.reason, 'handle "m" belonged to the kernel before a panic');
  assert.match(r.steps[13]!.reason, /^expected updated, but the agent fell back to a cold boot \(exit 3\) because open-device ENOENT/);
  assert.equal(r.steps[13]!.report!.outcome, 'fell-back');
  assert.match(r.steps[14]!.reason, /^expected a panic, but 7\.3\.4-luo booted/);
});

test('luo scenario (CLI): exit 0 for the examples, 1 with FAIL lines for a wrong expectation, 2 for an invalid file', () => {
  const ok = spawnSync(process.execPath, [bin, 'scenario', `${examples}duplicate-51.yaml`], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^PASS {4}3 {2}line 14 {3}create-session "s-0" as dup: failed with EEXIST as expected/m);
  assert.match(ok.stdout, /PASSED: 9 of 9 steps passed/);

  const bad = spawnSync(process.execPath, [bin, 'scenario', '-'], { encoding: 'utf8', input: 'steps:\n  - open-device:\n  - open-device: { as: again }\n    expect-errno: EIO\n' });
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /^FAIL {4}2 {2}line 3 {4}open-device \/dev\/liveupdate as again: expected EIO, got EBUSY: open \/dev\/liveupdate: EBUSY: \/dev\/liveupdate is already open$/m);
  assert.match(bad.stdout, /FAILED: 1 of 2 steps passed, 1 failed/);

  const invalid = spawnSync(process.execPath, [bin, 'scenario', '-'], { encoding: 'utf8', input: 'steps:\n  - preserve: { session: s, fd: m, token: -1 }\n' });
  assert.equal(invalid.status, 2);
  assert.match(invalid.stderr, /-:2:43: steps\[0\]\.preserve\.token: a token is a u64 \(0 \.\. 0xffffffffffffffff\), got -1/);

  const missing = spawnSync(process.execPath, [bin, 'scenario', '/nonexistent.yaml'], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot read \/nonexistent\.yaml/);
});

test('luo scenario --json: results per step, or the validation errors', async () => {
  const r = await cli({ file: `${examples}freeze-fault-retry.yaml`, json: true });
  assert.equal(r.code, 0);
  const j = JSON.parse(r.out) as { ok: boolean; valid: boolean; passed: number; steps: Array<{ index: number; line: number; kind: string; status: string; reason: string }> };
  assert.equal(j.ok, true);
  assert.equal(j.valid, true);
  assert.equal(j.passed, 20);
  assert.deepEqual(j.steps[6]!.kind, 'kexec');
  assert.equal(j.steps[6]!.line, 16);
  assert.match(j.steps[6]!.reason, /failed with EIO as expected/);

  const fb = await cli({ file: `${examples}fallback.yaml`, json: true });
  const fj = JSON.parse(fb.out) as { steps: Array<{ report?: { outcome: string; workloads: Array<{ files: Array<{ token: string }> }> } }> };
  assert.equal(fj.steps[3]!.report!.outcome, 'updated');
  assert.equal(fj.steps[3]!.report!.workloads[0]!.files[0]!.token, '0x100');

  const v = spawnSync(process.execPath, [bin, 'scenario', '--json', '-'], { encoding: 'utf8', input: 'steps:\n  - kexek\n' });
  assert.equal(v.status, 2);
  const vj = JSON.parse(v.stdout) as { ok: boolean; valid: boolean; errors: Array<{ line: number; path: string; message: string }> };
  assert.equal(vj.valid, false);
  assert.deepEqual(vj.errors.map((e) => [e.line, e.path]), [[2, 'steps[0]']]);
  assert.match(vj.errors[0]!.message, /unknown step kind "kexek"/);
});

test('luo scenario --schema prints the documented format', async () => {
  const r = await cli({});
  assert.equal(r.code, 2);
  let out = '';
  const code = await runScenarioCli(undefined, { schema: true }, { out: (s) => (out += s), err: () => {} });
  assert.equal(code, 0);
  assert.match(out, /\| `agent-update` \|/);
  assert.match(out, /expect-errno: EEXIST/);
  let json = '';
  assert.equal(await runScenarioCli(undefined, { jsonSchema: true }, { out: (s) => (json += s), err: () => {} }), 0);
  const schema = JSON.parse(json) as { $schema: string; required: string[]; properties: Record<string, unknown> };
  assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  assert.deepEqual(schema.required, ['steps']);
  assert.deepEqual(Object.keys(schema.properties), ['name', 'description', 'machine', 'steps']);
});

test('data specs past the machine RAM are invalid (exit 2, line and field); huge verifies stream in bounded memory', () => {
  const huge = spawnSync(process.execPath, [bin, 'scenario', '-'], { encoding: 'utf8', input: 'steps:\n  - memfd: { as: m, data: { fill: 1, length: 64GiB } }\n' });
  assert.equal(huge.status, 2, huge.stderr);
  assert.match(huge.stderr, /-:2:46: steps\[0\]\.memfd\.data\.length: 68719476736 bytes at 0 reach past the machine's RAM \(4294967296 bytes, machine\.ram\)/);
  assert.doesNotMatch(huge.stderr, /\n\s+at /, 'no stack trace');

  // a 170-byte file that asks to verify a 3 GiB pattern: one chunk is compared, then it fails
  const script = `
    import { parseScenario, runScenario } from ${JSON.stringify(new URL('../../src/scenario/index.ts', import.meta.url).pathname)};
    const r = runScenario(parseScenario('steps:\\n  - memfd: { as: m, data: hello }\\n  - verify: { fd: m, data: { pattern: big, length: 3GiB } }\\n'));
    console.log(JSON.stringify({ ok: r.ok, reason: r.steps[1].reason, maxRssKiB: process.resourceUsage().maxRSS }));`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.status, 0, child.stderr);
  const res = JSON.parse(child.stdout) as { ok: boolean; reason: string; maxRssKiB: number };
  assert.equal(res.ok, false);
  assert.match(res.reason, /pattern "big" \(3221225472 bytes\) at 0: byte 0 is 0x68, expected 0x|the file ends at/);
  assert.ok(res.maxRssKiB < 512 * 1024, `peak RSS ${res.maxRssKiB} KiB`);
});

test('a binary file is refused (exit 2) without being echoed back', () => {
  const r = spawnSync(process.execPath, [bin, 'scenario', '-'], { encoding: 'latin1', input: Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0x1b, 0x5b, 0x32, 0x4a]) });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'luo scenario: - is not a text file (a NUL byte at offset 7): a scenario is YAML text (see luo scenario --schema)\n');
  assert.equal(r.stdout, '');
});

test('flb-check: an FLB not registered, a wrong count, data or state, and nothing handed over, each fail with the reason', () => {
  const r = run(`machine: { build: { test: true } }
steps:
  - create-session: { name: vm, as: s }
  - memfd: { as: m, size: 4KiB }
  - preserve: { session: s, fd: m, token: 1 }
  - flb-check: { name: no-such-flb }
  - flb-check: { name: liveupdate-test-flb-v0, files: 2 }
  - flb-check: { name: liveupdate-test-flb-v0, incoming: { state: waiting } }
  - kexec: {}
  - flb-check: { name: liveupdate-test-flb-v2, incoming: { data: 0x1 } }
  - flb-check: { name: liveupdate-test-flb-v2, incoming: { state: finished } }
  - flb-check: { name: liveupdate-test-flb-v2, incoming: { files: 3 } }
  - flb-check: { name: liveupdate-test-flb-v2, files: 0, incoming: { state: waiting, files: 1, data: 0xfeedf00dcafebee2 } }
`);
  const failed = r.steps.filter((s) => s.status === 'fail').map((s) => s.reason);
  assert.equal(failed.length, 6, JSON.stringify(r.steps.map((s) => [s.status, s.reason])));
  assert.match(failed[0]!, /no FLB "no-such-flb" is registered in this kernel \(registered: liveupdate-test-flb-v0, liveupdate-test-flb-v1, liveupdate-test-flb-v2\)/);
  assert.match(failed[1]!, /used by 1 preserved file\(s\), expected 2/);
  assert.match(failed[2]!, /the previous kernel handed nothing over for FLB "liveupdate-test-flb-v0"/);
  assert.match(failed[3]!, /incoming data is 0xfeedf00dcafebee2, expected 0x1/);
  assert.match(failed[4]!, /incoming is waiting, expected finished/);
  assert.match(failed[5]!, /incoming counts 1 file\(s\), expected 3/);
  assert.equal(r.steps.at(-1)!.status, 'pass');
});
