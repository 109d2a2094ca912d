/**
 * The daemon cleans up after itself: SIGTERM and `luo stop` remove its socket; `serve --socket`
 * refuses a path that is not a socket and replaces a stale one (saying so); each socket has its
 * own state directory and a daemon never boots another daemon's image; `luo status` right after
 * a kexec says the sessions wait for the first open; the shim says once that no daemon answers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import { defaultStateDir } from '../../src/daemon/wire.ts';
import { cleanup, memfdHolder, ROOT, runLuo, startDaemon, tempDir } from './helpers.ts';
import { fdTokenArg } from '../../src/uapi/libliveupdate.ts';

test('SIGTERM and luo stop remove the socket; a non-socket path is refused, a stale socket replaced', async () => {
  const dir = tempDir('life');
  try {
    const d = await startDaemon(dir);
    d.child.kill('SIGTERM');
    assert.equal(await d.exited, 0);
    assert.equal(existsSync(d.socket), false, 'SIGTERM removed the socket');

    const d2 = await startDaemon(dir);
    const stop = await runLuo(['stop', '--socket', d2.socket]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /^luo stop: daemon \d+ on .* stopped\n$/);
    assert.equal(await d2.exited, 0);
    assert.equal(existsSync(d2.socket), false);

    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'precious');
    const r = await runLuo(['serve', '--socket', file, '--state-dir', join(dir, 's')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not-a-socket exists and is not a socket: refusing to replace it/);
    assert.equal(readFileSync(file, 'utf8'), 'precious');

    // a socket nobody answers on: a daemon that died without cleaning up
    const stale = join(dir, 'luo.sock'); // where startDaemon puts its socket
    const srv = createServer();
    await new Promise<void>((res) => srv.listen(stale, res));
    const copy = join(dir, 'stale-copy.sock');
    spawnSync('cp', ['-a', stale, copy]);
    srv.close();
    spawnSync('mv', [copy, stale]);
    const d3 = await startDaemon(dir);
    const c = await LuoClient.connect(stale);
    assert.ok(c.daemonPid > 0);
    await c.shutdown();
    await d3.exited;
    assert.match(readFileSync(d3.log, 'utf8'), /replacing a stale socket at .*luo\.sock \(its daemon has exited\)/);
  } finally {
    await cleanup(dir);
  }
});

test('state per socket: the default state dir depends on the socket; an image is booted only by its own socket\'s daemon', async () => {
  assert.notEqual(defaultStateDir('/tmp/a.sock'), defaultStateDir('/tmp/b.sock'));
  assert.equal(defaultStateDir('/tmp/a.sock'), defaultStateDir('/tmp/../tmp/a.sock'));
  const dir = tempDir('life-img');
  try {
    const d = await startDaemon(dir);
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('kept');
    await s.preserveBuffer('bytes', 1);
    const k = await c.kexec();
    const image = String(k.stats['image']);
    assert.ok(image.startsWith(d.stateDir));
    // right after the kexec: the sessions wait for the first open
    const st = await runLuo(['status', '--socket', d.socket]);
    assert.match(st.stdout, /incoming sessions: handed over by the previous kernel, restored on the first open of \/dev\/liveupdate/);
    assert.match(st.stdout, /RAM 1 GiB/);
    // another daemon on another socket refuses this image
    const other = join(dir, 'other');
    mkdirSync(other);
    copyFileSync(image, join(other, 'luo.img'));
    const r = await runLuo(['serve', '--socket', join(other, 'o.sock'), '--state-dir', other, '--resume']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refusing image .*: it was written by the daemon on .*luo\.sock, not .*o\.sock/);
    const c2 = await LuoClient.connect(d.socket);
    await c2.shutdown();
  } finally {
    await cleanup(dir);
  }
});

test('the shim says once, for the whole process tree, that LUO_SOCKET names no daemon', () => {
  const bin = join(ROOT, 'native/build');
  if (!existsSync(join(bin, 'libluo-preload.so'))) spawnSync('bash', [join(ROOT, 'scripts/build-native.sh')]);
  const env = { ...process.env, LUO_SOCKET: '/nonexistent/luo.sock', LD_PRELOAD: join(bin, 'libluo-preload.so') };
  const r = spawnSync(join(bin, 'lu_device'), [], { env, encoding: 'utf8' });
  assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('luo-preload:')).length, 1, r.stderr);
  assert.match(r.stderr, /luo-preload: no luo daemon answers on \/nonexistent\/luo\.sock \(LUO_SOCKET: no such socket\)/);
  const quiet = spawnSync(join(bin, 'lu_device'), [], { env: { ...env, LUO_PRELOAD_QUIET: '1' }, encoding: 'utf8' });
  assert.doesNotMatch(quiet.stderr, /luo-preload:/);
});

test('a preserved memfd that grew after PRESERVE_FD: the warning reaches luo kexec\'s output', async () => {
  const dir = tempDir('life-grow');
  try {
    const d = await startDaemon(dir);
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('grows');
    const h = await memfdHolder('grows', Buffer.from('thirty-six bytes of guest memory ..'), 0);
    await s.ioctl(0xba40, fdTokenArg(h.fd, 1), { source: { kind: 'fd', pid: h.pid, hiddenFd: h.hiddenFd, seals: h.seals } });
    await h.cmd('write 100 6d6f7265');
    const r = await runLuo(['kexec', '--socket', d.socket]);
    h.stop();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^luo kexec: daemon \d+ .* took over; image .*luo\.img \(\d+ bytes\)/);
    assert.match(r.stderr, /^luo kexec: warning: memfd of pid \d+ fd \d+ is 104 bytes at kexec, 35 at preserve \(PRESERVE_FD froze its size\); handing over 35$/m);
    await (await LuoClient.connect(d.socket)).shutdown();
  } finally {
    await cleanup(dir);
  }
});
