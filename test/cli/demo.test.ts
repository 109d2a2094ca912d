/** `luo demo` (the README's main job) runs three live updates and verifies every byte. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('luo demo: three live updates, every byte verified, exit 0', () => {
  const bin = new URL('../../bin/luo.mjs', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [bin, 'demo'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((r.stdout.match(/── live update \d/g) ?? []).length, 3);
  assert.match(r.stdout, /kernel #4 is running; liveupdate_num 3, kexec count 3/);
  assert.match(r.stdout, /compatible = "kho-v4";/);
  assert.match(r.stdout, /OK: every preserved byte verified after each live update/);
});
