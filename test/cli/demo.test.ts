/**
 * `luo demo` (the README's main job): the live-update agent runs three live updates and every byte
 * is verified; when the agent falls back or refuses, or the demo's own byte check finds a
 * difference, the demo says why and exits 1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { runDemo, type DemoEvent } from '../../src/cli/demo.ts';
import { withParam } from '../../src/kernel/cmdline.ts';
import { injectFault } from '../../src/scenario/faults.ts';

test('luo demo: three live updates by the agent, every byte verified, exit 0', () => {
  const bin = new URL('../../bin/luo.mjs', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [bin, 'demo'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((r.stdout.match(/── live update \d/g) ?? []).length, 3);
  assert.match(r.stdout, /the agent \(pid \d+\) adopted them: 3 sessions, 6 memfds, 1\.75 GiB of guest memory in \d+ KHO blocks/);
  assert.match(r.stdout, /kernel #4 is running; liveupdate_num 3, kexec count 3/);
  assert.equal((r.stdout.match(/handed over 1\.75 GiB in \d+ preserved blocks/g) ?? []).length, 3);
  assert.equal((r.stdout.match(/the agent \(generation \d\) retrieved its manifest and 3 sessions, verified 6 of 6 files by checksum/g) ?? []).length, 3);
  for (const row of ['freeze + serialize', 'kexec (scratch segment', 'boot + KHO walk', 'LUO restore', 'retrieve', 'verify (agent checksums)', 'finish', 'total']) {
    assert.equal((r.stdout.match(new RegExp(`^  ${row.replace(/[()+]/g, '\\$&')}.* \\d+\\.\\d+ m?s$`, 'gm')) ?? []).length, 3, row);
  }
  assert.equal((r.stdout.match(/verified every written guest page and all device state: the agent's checksums, then the demo re-read 361 written pages/g) ?? []).length, 3);
  assert.match(r.stdout, /compatible = "kho-v4";/);
  assert.match(r.stdout, /OK: every preserved byte verified after each live update/);
});

/** runDemo in this process, quiet, with its events and what it wrote to stderr. */
async function demo(t: { mock: { method: (o: object, m: string, f: (...a: unknown[]) => void) => unknown } }, opts: Parameters<typeof runDemo>[0]): Promise<{ code: number; events: DemoEvent[]; stderr: string }> {
  const events: DemoEvent[] = [];
  const err: string[] = [];
  t.mock.method(console, 'error', (...a: unknown[]) => void err.push(a.join(' ')));
  const code = await runDemo({ quiet: true, onProgress: (ev) => void events.push(ev), ...opts });
  return { code, events, stderr: err.join('\n') };
}

test('luo demo: the events a dashboard follows (booted, started, kexeced and updated per update, done)', async (t) => {
  const { code, events } = await demo(t, { updates: 2 });
  assert.equal(code, 0);
  assert.deepEqual(events.map((e) => `${e.kind}:${e.update}`), ['booted:0', 'started:0', 'kexeced:1', 'updated:1', 'kexeced:2', 'updated:2', 'done:2']);
  const up = events.find((e) => e.kind === 'updated');
  assert.ok(up && up.kind === 'updated');
  assert.deepEqual(up.phases.map(([n]) => n.split(' ')[0]), ['freeze', 'kexec', 'boot', 'LUO', 'retrieve', 'verify', 'finish']);
  assert.ok(up.phases.every(([, ms]) => ms >= 0) && up.phases.some(([, ms]) => ms > 0));
  assert.ok(up.preservedPages > 0 && up.blocks > 0 && up.verifyMs > 0);
  assert.equal(up.machine.kernel.luo?.incomingNum, 2, 'the machine the events carry is the live one');
});

test('luo demo: the agent falls back (the new kernel has live update off): the reason, exit 1', async (t) => {
  const { code, events, stderr } = await demo(t, { updates: 3, beforeUpdate: (n, agent) => (n === 2 ? { cmdline: withParam(agent.kernel.cmdline.raw, 'liveupdate', 'off') } : undefined) });
  assert.equal(code, 1);
  assert.match(stderr, /FAILED: \d+ problem/);
  assert.match(stderr, /live update 2: the agent fell back to a cold boot .*restart from scratch: vm-web, vm-db, vm-batch.*open-device ENOENT/);
  const done = events.at(-1);
  assert.ok(done?.kind === 'done' && done.code === 1);
  assert.equal(events.filter((e) => e.kind === 'updated').length, 1, 'no third update after the fall-back');
});

test('luo demo: the old kernel refuses the kexec (a freeze fails): the reason, exit 1', async (t) => {
  const { code, stderr } = await demo(t, { updates: 1, beforeUpdate: (_n, agent) => void injectFault(agent.kernel, { op: 'freeze', errno: 'EIO', times: 1 }) });
  assert.equal(code, 1);
  assert.match(stderr, /live update 1: the running kernel refused the update .*kexec EIO/);
});

test('luo demo: its own byte check is independent of the agent\'s checksums', async (t) => {
  // Device state changed before the update: the agent's snapshot agrees with itself, the demo's
  // re-read of the known contents does not.
  const { code, stderr } = await demo(t, {
    updates: 1,
    beforeUpdate: (_n, agent) => {
      const fd = agent.workload('vm-db')!.files.find((f) => f.token === 0x200n)!.fd;
      assert.equal(agent.process.pwrite(fd, new Uint8Array([0xde, 0xad]), 100), 2);
    },
  });
  assert.equal(code, 1);
  assert.match(stderr, /live update 1: vm-db: device state differs/);
  assert.doesNotMatch(stderr, /fell back|refused/);
});
