/**
 * `luo dashboard --socket PATH` over a real `luo serve`: the page's snapshot follows the daemon
 * through STATUS (with the machine view), across a kexec into a new daemon process (timeline entry
 * from the hand-over). Also the command's errors and exit codes. Processes are killed at the end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import type { Snapshot } from '../../src/web/server.ts';
import { cleanup, LUO_BIN, startDaemon, tempDir, until } from '../daemon/helpers.ts';

function startDashboard(args: string[]): { child: ChildProcess; url: Promise<string>; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(process.execPath, [LUO_BIN, 'dashboard', '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n')[0]!;
      if (out.includes('\n')) {
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    void exited.then((c) => reject(new Error(`dashboard exited ${c}: ${err}`)));
  });
  return { child, url, exited, stderr: () => err };
}

const snapshot = async (url: string): Promise<Snapshot> => (await (await fetch(`${url}api/snapshot`)).json()) as Snapshot;

test('luo dashboard --socket: follows the daemon through a kexec', async () => {
  const dir = tempDir('web-daemon');
  let dash: ReturnType<typeof startDashboard> | undefined;
  try {
    const d = await startDaemon(dir);
    dash = startDashboard(['--socket', d.socket, '--port', '0', '--interval', '100']);
    const url = await dash.url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    let s = await snapshot(url);
    assert.equal(s.source.kind, 'daemon');
    assert.equal(s.machine?.liveupdateNum, 0);
    assert.equal(s.machine?.ramSize, '0x40000000');

    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const sess = await dev.createSession('vm-web');
    await sess.preserveBuffer(new Uint8Array(3 * 4096).fill(1), 0x42);
    await until(async () => (await snapshot(url)).machine?.sessions.outgoing.some((o) => o.name === 'vm-web' && o.files[0]?.token === '0x42') ?? false, 'the session on the dashboard');
    s = await snapshot(url);
    assert.ok(s.machine!.memory.categories.some((cat) => cat.id.startsWith('p')), 'preserved blocks in the map');

    await c.kexec();
    await until(async () => (await snapshot(url)).machine?.liveupdateNum === 1, 'liveupdate_num 1 on the dashboard');
    s = await snapshot(url);
    assert.equal(s.timeline.length, 1);
    assert.equal(s.timeline[0]!.n, 1);
    assert.deepEqual(s.timeline[0]!.phases.map((p) => p.name), ['serialize', 'hand-over', 'boot + KHO walk']);
    assert.ok(s.machine!.kho!.incoming, 'the new kernel shows what it received');
    assert.equal(s.error, null);

    dash.child.kill('SIGTERM');
    assert.equal(await dash.exited, 0);
  } finally {
    dash?.child.kill('SIGKILL');
    await cleanup(dir);
  }
});

test('luo dashboard: errors say what to do; exit codes 1 and 2', async () => {
  const dir = tempDir('web-dash-err');
  try {
    const run = (args: string[]): Promise<{ code: number | null; stderr: string; stdout: string }> =>
      new Promise((resolve) => {
        const ch = spawn(process.execPath, [LUO_BIN, 'dashboard', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        let stdout = '';
        ch.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        ch.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
        ch.once('exit', (code) => resolve({ code, stderr, stdout }));
      });
    let r = await run(['--socket', join(dir, 'none.sock'), '--port', '0']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no luo daemon answers on .*none\.sock: start one with `luo serve --socket/);
    r = await run(['--port', 'http', '--demo']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--port must be an integer/);
    r = await run(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--demo[\s\S]*--socket[\s\S]*--port/);
    // The demo, quickly, then exit: the exit code is the demo's.
    r = await run(['--demo', '--port', '0', '--pace', '0', '--updates', '1', '--exit-when-done', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"url":"http:\/\/127\.0\.0\.1:\d+\/"/);
  } finally {
    await cleanup(dir);
  }
});
