/**
 * The CLI behaves like one: --version, short usage errors with exit 2, one message for a missing
 * daemon whatever the command, quiet on a closed pipe, NO_COLOR honoured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { LUO_BIN, ROOT } from '../daemon/helpers.ts';

const luo = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [LUO_BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });

test('luo --version prints the package version', () => {
  const r = luo(['--version']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
});

test('usage errors: exit 2, one short message, never the whole help', () => {
  for (const [args, re] of [
    [['frob'], /^luo: unknown command 'frob'\n/],
    [['status', '--bogus'], /^luo: unknown option '--bogus'\n/],
    [['inspect'], /^luo: missing required argument 'file'\n/],
    [['dtb', 'a', 'b'], /^luo: too many arguments for 'dtb'/],
  ] as const) {
    const r = luo([...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.ok(r.stderr.split('\n').length <= 4, `short: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Commands:|Options:/);
  }
});

test('every command that needs a daemon says the same thing when none answers', () => {
  const sock = join(tmpdir(), `luo-none-${process.pid}.sock`);
  for (const args of [['status'], ['kexec'], ['debugfs'], ['session', 'list']]) {
    const r = luo([...args, '--socket', sock]);
    assert.equal(r.status, 1, args.join(' '));
    assert.equal(r.stderr, `luo ${args.join(' ')}: no daemon at ${sock} (the socket does not exist); start one with \`luo serve --socket ${sock}\` or pass --socket PATH\n`);
  }
});

test('a closed pipe ends a command quietly; NO_COLOR and pipes get no escape codes', () => {
  const r = spawnSync('bash', ['-c', `node ${LUO_BIN} demo | head -1; echo "status \${PIPESTATUS[0]}"`], { encoding: 'utf8' });
  assert.match(r.stdout, /^luo demo: .*\nstatus 0\n$/);
  assert.equal(r.stderr, '');
  const colored = luo(['session', '--help'], { FORCE_COLOR: '1', NO_COLOR: '1' });
  assert.doesNotMatch(colored.stdout + colored.stderr, /\x1b\[/);
});
