/**
 * `luo conform` refuses bad input before it starts anything: a seed list, a number, an
 * accelerator, a kernel that is not there, a known-divergences file that is not one (exit 2, the
 * problem named, with its line for the file).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runLuo } from '../daemon/helpers.ts';

test('luo conform run and show: bad arguments are exit 2 with the reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-conform-cli-'));
  try {
    const k = join(dir, 'bzImage');
    writeFileSync(k, 'not really a kernel');
    const bad = join(dir, 'known.yaml');
    writeFileSync(bad, 'divergences:\n  - op: read\n');
    const cases: Array<[string[], RegExp]> = [
      [['conform', 'run', '--kernel', k, '--seeds', '9-1'], /--seeds 9-1: "9-1" is not a seed or a range/],
      [['conform', 'run', '--kernel', k, '--ops', '0'], /--ops 0: expected an integer from 1 to 100000/],
      [['conform', 'run', '--kernel', k, '--stages', 'x'], /--stages x: expected an integer/],
      [['conform', 'run', '--kernel', k, '--accel', 'hvf'], /--accel hvf: expected auto, tcg or kvm/],
      [['conform', 'run', '--kernel', join(dir, 'missing')], /--kernel .*missing: no such file/],
      [['conform', 'run', '--kernel', k, '--known', bad], /known\.yaml:2:\d+: divergences\[0\]: missing required field "why"/],
      [['conform', 'run', '--kernel', k, '--known', join(dir, 'nope.yaml')], /nope\.yaml/],
      [['conform', 'show', 'seven', '--kernel', k], /SEED seven: expected an integer/],
    ];
    for (const [args, want] of cases) {
      const r = await runLuo(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, want, args.join(' '));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
