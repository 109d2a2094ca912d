/** Scenario files: strict validation, every problem with its line, column and field path. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseScenario, ScenarioSyntaxError, type SchemaIssue } from '../../src/scenario/index.ts';

function issues(text: string): SchemaIssue[] {
  try {
    parseScenario(text, 't.yaml');
  } catch (e) {
    assert.ok(e instanceof ScenarioSyntaxError, String(e));
    return e.issues;
  }
  assert.fail('expected the scenario to be rejected');
}

function one(text: string): SchemaIssue {
  const is = issues(text);
  assert.equal(is.length, 1, JSON.stringify(is));
  return is[0]!;
}

test('schema: a valid scenario parses into typed steps with their lines', () => {
  const sc = parseScenario(
    [
      'name: t',
      'machine: { ram: 8GiB, cmdline: "kho=on liveupdate=on", build: { release: x, kho: kho-v4 } }',
      'steps:',
      '  - kexec',
      '  - open-device:',
      '    expect-errno: ENOENT',
      '  - create-session: "s-{i}"',
      '    repeat: 3',
      '  - memfd: { as: m, size: 1MiB, seals: [grow, shrink], data: [hi, { pattern: p, length: 4KiB, at: 8KiB }, { fill: 255, length: 3 }], pos: 5 }',
      '  - preserve: { session: s-0, fd: m, token: 0xffffffffffffffff }',
      '  - inject-fault: { op: finish }',
      '  - agent-update: { inject: [{ op: retrieve, errno: EIO }], expect: fell-back, restart: vm }',
    ].join('\n'),
    't.yaml',
  );
  assert.equal(sc.name, 't');
  assert.deepEqual(sc.machine, { ram: 8 * 2 ** 30, cmdline: 'kho=on liveupdate=on', build: { release: 'x', kho: 'kho-v4' } });
  assert.deepEqual(sc.steps.map((s) => [s.index, s.line, s.args.kind]), [[1, 4, 'kexec'], [2, 5, 'open-device'], [3, 7, 'create-session'], [4, 9, 'memfd'], [5, 10, 'preserve'], [6, 11, 'inject-fault'], [7, 12, 'agent-update']]);
  assert.equal(sc.steps[1]!.expectErrno, 'ENOENT');
  assert.equal(sc.steps[2]!.repeat, 3);
  assert.deepEqual(sc.steps[3]!.args, {
    kind: 'memfd', as: 'm', size: 1 << 20, flags: 0, seals: 6, pos: 5,
    data: [{ text: 'hi', at: 0 }, { pattern: 'p', length: 4096, at: 8192 }, { fill: 255, length: 3, at: 0 }],
  });
  assert.deepEqual(sc.steps[4]!.args, { kind: 'preserve', session: 's-0', fd: 'm', token: 0xffffffffffffffffn });
  assert.deepEqual(sc.steps[5]!.args, { kind: 'inject-fault', fault: { op: 'finish', errno: 'EBUSY' } });
  assert.deepEqual(sc.steps[6]!.args, { kind: 'agent-update', inject: [{ op: 'retrieve', errno: 'EIO' }], expect: 'fell-back', restart: ['vm'] });
});

test('schema: an unknown step kind names its line and the known kinds', () => {
  const i = one('steps:\n  - open-device:\n  - kexek: {}\n');
  assert.equal(i.line, 3);
  assert.equal(i.col, 5);
  assert.equal(i.path, 'steps[1].kexek');
  assert.match(i.message, /unknown step kind or field "kexek" \(kinds: open-device, close, .*kexec/);
});

test('schema: a missing required field points at the step', () => {
  const i = one('steps:\n  - preserve: { session: s, fd: m }\n');
  assert.deepEqual([i.line, i.path], [2, 'steps[0].preserve']);
  assert.match(i.message, /missing required field "token"/);
});

test('schema: bad values name the field and what was found', () => {
  const is = issues([
    'machine:',
    '  ram: 8 GB',
    'steps:',
    '  - preserve: { session: s, fd: m, token: abc }',
    '  - memfd: { as: m, seals: [grow, glue] }',
    '  - open-device:',
    '    expect-errno: ENOPE',
    '  - kexec: { build: { kho: kho-v9 } }',
    '  - inject-fault: { op: finish, errno: EIO }',
    '  - verify: { fd: m, sha256: xyz }',
    '  - kernel-log: { matches: "(" }',
    '  - create-session: s',
    '    repeat: 0',
  ].join('\n'));
  const got = is.map((i) => [i.line, i.path]);
  assert.deepEqual(got, [
    [2, 'machine.ram'],
    [4, 'steps[0].preserve.token'],
    [5, 'steps[1].memfd.seals[1]'],
    [7, 'steps[2].expect-errno'],
    [8, 'steps[3].kexec.build.kho'],
    [9, 'steps[4].inject-fault.errno'],
    [10, 'steps[5].verify.sha256'],
    [11, 'steps[6].kernel-log.matches'],
    [13, 'steps[7].repeat'],
  ]);
  assert.match(is[0]!.message, /expected a size .* got "8 GB"/);
  assert.match(is[1]!.message, /expected a token .* got "abc"/);
  assert.match(is[2]!.message, /expected one of seal, shrink, grow, write, future-write, exec, got "glue"/);
  assert.match(is[3]!.message, /expected an errno name .* got "ENOPE"/);
  assert.match(is[5]!.message, /LUO reports EBUSY/);
  assert.match(is[8]!.message, /between 1 and 100000, got 0/);
});

test('schema: the whole-file problems (unknown top-level field, no steps, two kinds in a step)', () => {
  const a = issues('nme: x\nsteps: []\n');
  assert.deepEqual(a.map((i) => [i.line, i.path]), [[1, 'nme'], [2, 'steps']]);
  assert.match(a[0]!.message, /unknown field "nme" \(expected "name", "description", "machine", "steps"\)/);
  assert.match(a[1]!.message, /at least one step/);
  const b = one('name: x\n');
  assert.match(b.message, /missing required field "steps"/);
  const c = one('steps:\n  - kexec:\n    cold-boot:\n');
  assert.deepEqual([c.line, c.path], [3, 'steps[0]']);
  assert.match(c.message, /one kind per step \(found "kexec" and "cold-boot"\)/);
  const d = one('steps:\n  - {}\n');
  assert.match(d.message, /names no kind/);
  const e = one('steps:\n  - kexec: { expect: boom }\n');
  assert.match(e.message, /expected one of ok, panic, got "boom"/);
  const f = one('steps:\n  - verify: ram\n    expect-errno: EIO\n');
  assert.match(f.message, /"verify" makes no syscall/);
});

test('schema: YAML syntax errors and duplicate keys are reported with their line', () => {
  const a = issues('steps:\n  - kexec: [1\n  - close: x\n');
  assert.ok(a.length >= 1);
  assert.equal(a[0]!.line, 3, 'where the parser found the unterminated [ of line 2');
  assert.match(a[0]!.message, /^YAML: /);
  const b = issues('name: a\nname: b\nsteps: [kexec]\n');
  assert.equal(b[0]!.line, 2);
  assert.match(b[0]!.message, /unique/);
});

test('schema: the error message is file:line:col: path: message, one per line', () => {
  try {
    parseScenario('steps:\n  - retrieve: { session: s, token: 1 }\n  - close: {}\n', 'dir/x.yaml');
    assert.fail('accepted');
  } catch (e) {
    assert.ok(e instanceof ScenarioSyntaxError);
    assert.equal(e.message, [
      'dir/x.yaml:2:15: steps[0].retrieve: missing required field "as"',
      'dir/x.yaml:3:12: steps[1].close: missing required field "fd"',
    ].join('\n'));
  }
});

test('schema: the exported JSON Schema accepts the example scenarios and refuses what the parser refuses', async () => {
  const { Ajv2020 } = await import('ajv/dist/2020.js');
  const { readdirSync, readFileSync } = await import('node:fs');
  const { parse } = await import('yaml');
  const { scenarioJsonSchema } = await import('../../src/scenario/index.ts');
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(scenarioJsonSchema());
  const dir = new URL('../../examples/scenarios/', import.meta.url);
  const examples = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(examples.length >= 4);
  for (const f of examples) {
    const text = readFileSync(new URL(f, dir), 'utf8');
    parseScenario(text, f);
    assert.ok(validate(parse(text)), `${f}: ${JSON.stringify(validate.errors)}`);
  }
  const bad = [
    'steps: []\n',
    'name: x\n',
    'steps: [kexek]\n',
    'steps: [close]\n',
    'steps: [inject-fault]\n',
    'steps: [kernel-log]\n',
    'steps:\n  - preserve: { session: s, fd: m }\n',
    'steps:\n  - preserve: { session: s, fd: m, token: abc }\n',
    'steps:\n  - memfd: { as: m, seals: [glue] }\n',
    'steps:\n  - memfd: { as: m, size: 8 GB }\n',
    'steps:\n  - memfd: { as: m, data: [{ fill: 1, length: 3, colour: red }] }\n',
    'steps:\n  - open-device:\n    expect-errno: ENOPE\n',
    'steps:\n  - kexec: { expect: boom }\n',
    'steps:\n  - create-session: s\n    repeat: 0\n',
    'steps:\n  - {}\n',
    'nme: x\nsteps: [kexec]\n',
  ];
  for (const text of bad) {
    assert.throws(() => parseScenario(text, 't.yaml'), ScenarioSyntaxError, text);
    assert.equal(validate(parse(text)), false, `the JSON Schema accepted ${JSON.stringify(text)}`);
  }
});

test('schema: a declared subsystem failure names prepare or freeze, an errno and a count of at least 1', () => {
  const ok = parseScenario('machine:\n  subsystems: [{ name: kvm, data: 1, fail: { op: freeze, errno: EBUSY, times: 2 } }]\nsteps:\n  - kexec: {}\n');
  assert.deepEqual(ok.machine.subsystems, [{ name: 'kvm', data: 1n, fail: { op: 'freeze', errno: 'EBUSY', times: 2 } }]);
  assert.match(one('machine:\n  subsystems: [{ name: kvm, data: 1, fail: { op: boot, errno: EBUSY } }]\nsteps:\n  - kexec: {}\n').message, /expected one of prepare, freeze, got "boot"/);
  assert.match(one('machine:\n  subsystems: [{ name: kvm, data: 1, fail: { op: freeze, errno: EBUSY, times: 0 } }]\nsteps:\n  - kexec: {}\n').message, /at least 1|between 1/);
  assert.equal(one('machine:\n  subsystems: [{ name: kvm, data: 1, fail: { op: freeze } }]\nsteps:\n  - kexec: {}\n').path, 'machine.subsystems[0].fail');
});
