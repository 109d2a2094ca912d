/**
 * Kexec into a new process: sessions preserved through the daemon (buffers, files, a real memfd
 * of another process) come back byte for byte from a new daemon process booted from the image
 * alone; also into "another build" given by path; corrupt images are refused, never booted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LuoClient } from '../../src/client/index.ts';
import { cleanup, LUO_BIN, memfdHolder, processesMentioning, ROOT, startDaemon, tempDir, until } from './helpers.ts';

const run = promisify(execFile);
const luo = (...args: string[]) => run(process.execPath, [LUO_BIN, ...args], { cwd: ROOT });

test('sessions survive `luo kexec` into a new daemon process with identical bytes', async () => {
  const dir = tempDir('kexec');
  try {
    const d = await startDaemon(dir);
    const c = await LuoClient.connect(d.socket);
    const gen0 = c.generation;
    const dev = await c.openDevice();
    const state = await dev.createSession('kexec_simple_state');
    await state.preserveBuffer('2', 999);
    const vm = await dev.createSession('test-session');
    const buf = randomBytes(300 * 1024);
    await vm.preserveBuffer(buf, 0x1a, { pos: 12345, seals: 0x2 | 0x4 });
    const filePath = join(dir, 'guest-ram.bin');
    const fileBytes = randomBytes(2 << 20);
    writeFileSync(filePath, fileBytes);
    await vm.preserveFile(filePath, 0x1b, { pos: 7 });
    // Contents are taken at kexec, not at preserve (the size is fixed at preserve).
    fileBytes.set(Buffer.from('written after preserve'), 1 << 20);
    writeFileSync(filePath, fileBytes);
    // A real memfd of another process, written and seeked after preserve, its fd then closed.
    const h = await memfdHolder('guest', Buffer.from('hello kexec world, from a real memfd'), 5);
    await vm.ioctl(0xba40, fdTokenArg(h.fd, 0x1c), { source: { kind: 'fd', pid: h.pid, hiddenFd: h.hiddenFd, seals: h.seals } });
    await h.cmd('write 6 4b455845430a');
    await h.cmd('seek 9');
    await h.cmd('close');
    const expectedMemfd = Buffer.from('hello kexec world, from a real memfd');
    expectedMemfd.set(Buffer.from('4b455845430a', 'hex'), 6);
    const empty = await dev.createSession('multi-test-empty-1');
    await dev.close();
    const before = await c.status();
    assert.equal(before.sessions.outgoing.length, 3);

    const { stdout } = await luo('kexec', '--socket', d.socket, '--json');
    const res = JSON.parse(stdout) as { pid: number; stats: Record<string, number> };
    assert.equal(await d.exited, 0, 'the old daemon exits after the hand-over');
    assert.notEqual(res.pid, d.child.pid);
    assert.equal(res.stats['preservedPages'], before.preserved.pages);
    h.stop();
    void empty;

    const c2 = await LuoClient.connectRetry(d.socket);
    assert.notEqual(c2.generation, gen0);
    assert.equal(c2.liveupdateNum, 1);
    const st = await c2.status();
    assert.equal(st.pid, res.pid);
    // the successor started ahead read the image while the old daemon wrote it
    assert.equal(st.kexec?.['streamed'], true, JSON.stringify(st.kexec));
    assert.equal(typeof st.kexec?.['loadMs'], 'number');
    assert.equal(st.sessions.incoming.length, 0, 'incoming sessions are deserialized at the first open');
    const dev2 = await c2.openDevice();
    assert.deepEqual((await c2.status()).sessions.incoming.map((s) => s.name).sort(), ['kexec_simple_state', 'multi-test-empty-1', 'test-session']);
    const s0 = await dev2.retrieveSession('kexec_simple_state');
    assert.equal(new TextDecoder().decode((await s0.retrieve(999)).content), '2');
    const s1 = await dev2.retrieveSession('test-session');
    const f1 = await s1.retrieve(0x1a);
    assert.ok(Buffer.from(f1.content).equals(buf));
    assert.equal(f1.pos, 12345);
    assert.equal(f1.seals, 0x2 | 0x4);
    const f2 = await s1.retrieve(0x1b);
    assert.ok(Buffer.from(f2.content).equals(fileBytes), 'file contents as of the kexec');
    assert.equal(f2.pos, 7);
    const f3 = await s1.retrieve(0x1c);
    assert.equal(Buffer.from(f3.content).toString('hex'), expectedMemfd.toString('hex'));
    assert.equal(f3.pos, 9, 'position read through the hidden dup at kexec');
    const again = await s1.retrieve(0x1a);
    assert.ok(again.again && again.id === f1.id, 'a second RETRIEVE_FD hands out the same open file');
    await s1.finish();
    await s0.finish();
    await s1.close();
    await s0.close();
    assert.equal((await dev2.retrieveSession('multi-test-empty-1').then(async (s) => (await s.finish(), await s.close(), 'ok'))), 'ok');
    await dev2.close();
    const after = await c2.status();
    assert.equal(after.sessions.incoming.length, 0);
    assert.equal(after.handles, 0);
    const { stdout: human } = await luo('status', '--socket', d.socket);
    assert.match(human, /liveupdate_num: 1/);
    assert.match(human, /last live update: .*load \d+\.\d ms.*image read as it was written/);
    await c2.shutdown();
    await c2.close().catch(() => undefined);
  } finally {
    await cleanup(dir);
  }
});

test('a parent that does not offer streaming (LUO_IMAGE_STREAM=0) hands over the finished image, and so do the daemons it starts', async () => {
  const dir = tempDir('nostream');
  try {
    const { d, c, data } = await daemonHolding(dir, { LUO_IMAGE_STREAM: '0' }, 3 << 20);
    await c.kexec();
    const c2 = await LuoClient.connectRetry(d.socket);
    assert.equal((await c2.status()).kexec?.['streamed'], false);
    const dev2 = await c2.openDevice();
    const s = await dev2.retrieveSession('vm');
    assert.ok(Buffer.from((await s.retrieve(1)).content).equals(data));
    await s.finish();
    await (await dev2.createSession('vm2')).preserveBuffer(data, 2);
    await dev2.close();
    await c2.kexec();
    const c3 = await LuoClient.connectRetry(d.socket);
    assert.equal((await c3.status()).kexec?.['streamed'], false, 'the operator\'s setting is kept across kexecs');
    const dev3 = await c3.openDevice();
    assert.ok(Buffer.from((await (await dev3.retrieveSession('vm2')).retrieve(2)).content).equals(data));
    await dev3.close();
    await c3.shutdown();
  } finally {
    await cleanup(dir);
  }
});

test('pre-copy: the preserved pages go to the new daemon ahead of the freeze, the blackout writes only what changed since, and the image is made whole after', async () => {
  const dir = tempDir('precopy');
  try {
    const go = join(dir, 'go');
    const d = await startDaemon(dir, [], { LUO_TEST_HOLD_BASED: go });
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const vm = await dev.createSession('vm');
    const ram = randomBytes(4 << 20);
    await vm.preserveBuffer(ram, 1);
    const filePath = join(dir, 'guest-ram.bin');
    const fileBytes = randomBytes(1 << 20);
    writeFileSync(filePath, fileBytes);
    await vm.preserveFile(filePath, 2);
    await dev.close();

    const kexec = luo('kexec', '--socket', d.socket, '--json');
    kexec.catch(() => undefined); // awaited below; a failure before that is the one reported
    // the base is written (renamed into place) and the new daemon holds it, not yet `based`
    await until(() => existsSync(d.stateDir) && readdirSync(d.stateDir).some((f) => /^luo\.base\.\d+\.\d+\.img$/.test(f)), 'the base image');
    // meanwhile the old daemon still serves: a page of the file changes, a session is added
    fileBytes.set(Buffer.from('changed after the pre-copy'), 700 * 1024);
    writeFileSync(filePath, fileBytes);
    const late = randomBytes(64 << 10);
    const c1 = await LuoClient.connect(d.socket);
    const dev1 = await c1.openDevice();
    await (await dev1.createSession('late')).preserveBuffer(late, 3);
    await dev1.close();
    await c1.close();
    writeFileSync(go, '');
    const res = JSON.parse((await kexec).stdout) as { stats: Record<string, number> };
    assert.equal(await d.exited, 0);
    const st = res.stats;
    assert.ok(st['precopyPages']! >= 1280, `the 5 MiB preserved before went ahead: ${JSON.stringify(st)}`);
    assert.ok(st['carriedPages']! >= 1279 && st['carriedPages']! <= st['precopyPages']!, 'all but the changed page carried');
    assert.ok(st['changedPages']! >= 1, 'the page written after the pre-copy (and the freeze\'s own) changed');
    assert.ok(st['imageBytes']! < 1 << 20, `the blackout wrote ${st['imageBytes']} bytes, not the 5 MiB`);
    assert.ok(st['handoverBytes']! > 5 << 20, 'the image made whole holds everything');
    // only the whole image is left: it loads alone, copied elsewhere
    assert.deepEqual(readdirSync(d.stateDir).sort(), ['luo.img']);
    mkdirSync(join(dir, 'copy'));
    copyFileSync(join(d.stateDir, 'luo.img'), join(dir, 'copy', 'luo.img'));
    const { loadHandover } = await import('../../src/daemon/kexec.ts');
    assert.equal((await loadHandover(join(dir, 'copy', 'luo.img'))).memory.size, 1n << 30n);

    const c2 = await LuoClient.connectRetry(d.socket);
    const dev2 = await c2.openDevice();
    const s = await dev2.retrieveSession('vm');
    assert.ok(Buffer.from((await s.retrieve(1)).content).equals(ram));
    assert.ok(Buffer.from((await s.retrieve(2)).content).equals(fileBytes), 'the page changed after the pre-copy arrives as it was at the freeze');
    const l = await dev2.retrieveSession('late');
    assert.ok(Buffer.from((await l.retrieve(3)).content).equals(late), 'a session made during the pre-copy arrives');
    await dev2.close();
    const { stdout: human } = await luo('status', '--socket', d.socket);
    assert.match(human, /\d+ page\(s\) pre-copied in \d+ ms before the freeze, \d+ changed since/);
    await c2.shutdown();
  } finally {
    await cleanup(dir);
  }
});

/** A daemon started with `env` holding `bytes` random bytes as session `vm`, token 1. */
async function daemonHolding(dir: string, env: NodeJS.ProcessEnv, bytes: number): Promise<{ d: Awaited<ReturnType<typeof startDaemon>>; c: LuoClient; data: Buffer }> {
  const d = await startDaemon(dir, [], env);
  const c = await LuoClient.connect(d.socket);
  const dev = await c.openDevice();
  const data = randomBytes(bytes);
  await (await dev.createSession('vm')).preserveBuffer(data, 1);
  await dev.close();
  return { d, c, data };
}

test('a base the new daemon cannot load: it says why, the kexec goes on with every page in the image, no base is left', async () => {
  const dir = tempDir('nobase');
  try {
    const { d, c, data } = await daemonHolding(dir, { LUO_TEST_REFUSE_BASE: '1' }, 1 << 20);
    const st = (await c.kexec()).stats as Record<string, number>;
    assert.equal(st['precopyPages'], undefined);
    assert.ok(st['imageBytes']! > 1 << 20);
    assert.match(readFileSync(d.log, 'utf8'), /no pre-copy \(the new daemon could not load .*luo\.base\.\d+\.1\.img: refused by LUO_TEST_REFUSE_BASE\)/);
    assert.deepEqual(readdirSync(d.stateDir), ['luo.img']);
    const n = await LuoClient.connectRetry(d.socket);
    const dv = await n.openDevice();
    assert.ok(Buffer.from((await (await dv.retrieveSession('vm')).retrieve(1)).content).equals(data));
    await dv.close();
    await n.shutdown();
  } finally {
    await cleanup(dir);
  }
});

test('LUO_IMAGE_PRECOPY=0: the image carries every page, in this kexec and the ones after', async () => {
  const dir = tempDir('noprecopy');
  try {
    const { d, data } = await daemonHolding(dir, { LUO_IMAGE_PRECOPY: '0' }, 2 << 20);
    for (let i = 0; i < 2; i++) {
      const k = await LuoClient.connectRetry(d.socket);
      const st = (await k.kexec()).stats as Record<string, number>;
      await k.close().catch(() => undefined);
      assert.equal(st['precopyPages'], undefined);
      assert.ok(st['imageBytes']! > 2 << 20, 'everything written in the blackout');
      const n = await LuoClient.connectRetry(d.socket);
      assert.equal((await n.status()).kexec?.['streamed'], true, 'still streamed');
      const dv = await n.openDevice();
      const s = await dv.retrieveSession('vm');
      assert.ok(Buffer.from((await s.retrieve(1)).content).equals(data));
      await s.finish();
      await s.close();
      await (await dv.createSession('vm')).preserveBuffer(data, 1);
      await dv.close();
      if (i === 1) await n.shutdown();
      await n.close().catch(() => undefined);
    }
  } finally {
    await cleanup(dir);
  }
});

function fdTokenArg(fd: number, token: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, 16, true);
  v.setInt32(4, fd, true);
  v.setBigUint64(8, BigInt(token), true);
  return b;
}

test('kexec into another build given by path; corrupt images are refused', async () => {
  const dir = tempDir('build');
  try {
    // "Another build": its own bin/luo.mjs in another directory.
    const build = join(dir, 'other-build');
    mkdirSync(join(build, 'bin'), { recursive: true });
    writeFileSync(join(build, 'bin', 'luo.mjs'), `#!/usr/bin/env node
// Another luo build (test): the same sources, started from another path.
import { register } from ${JSON.stringify(join(ROOT, 'node_modules/tsx/dist/esm/api/index.mjs'))};
register();
const { main } = await import(${JSON.stringify(join(ROOT, 'src/cli/main.ts'))});
process.exitCode = await main(process.argv);
`);
    const d = await startDaemon(dir);
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('cross-build');
    const data = randomBytes(64 * 1024);
    await s.preserveBuffer(data, 1);
    await dev.close();
    // A bad build path is refused before anything changes.
    await assert.rejects(c.kexec({ build: join(dir, 'nope') }), (e: Error & { errno?: string }) => e.errno === 'ENOENT');
    assert.equal((await c.status()).sessions.outgoing.length, 1);
    const r = await c.kexec({ build, cmdline: 'console=ttyS0 kho=on liveupdate=on luo_stage=2' });
    assert.equal(await d.exited, 0);
    assert.ok(processesMentioning(build).includes(r.pid), 'the new daemon runs the other build');
    const c2 = await LuoClient.connectRetry(d.socket);
    const st = await c2.status();
    assert.match(st.cmdline, /luo_stage=2/);
    const dev2 = await c2.openDevice();
    const s2 = await dev2.retrieveSession('cross-build');
    assert.ok(Buffer.from((await s2.retrieve(1)).content).equals(data));
    await dev2.close();

    // The image on disk: good copies boot, bad ones are refused with the reason, never booted.
    const img = join(d.stateDir, 'luo.img');
    const size = statSync(img).size;
    const bad = async (name: string, mutate: (p: string) => void, reason: RegExp): Promise<void> => {
      const p = join(dir, name);
      copyFileSync(img, p);
      mutate(p);
      const sock = join(dir, `${name}.sock`);
      const e = await luo('serve', '--from-image', p, '--socket', sock, '--state-dir', join(dir, name + '-state')).then(() => undefined, (x: { code: number; stderr: string }) => x);
      assert.ok(e, `${name}: must not boot`);
      assert.equal(e.code, 1, name);
      assert.match(e.stderr, reason, name);
    };
    await bad('flipped.img', (p) => {
      const b = readFileSync(p);
      b[Math.floor(size / 2)]! ^= 0x40;
      writeFileSync(p, b);
    }, /checksum mismatch|corrupt/);
    await bad('truncated.img', (p) => truncateSync(p, size - 100), /truncated/);
    await bad('foreign.img', (p) => writeFileSync(p, 'not an image at all'), /not a luo memory image/);
    await bad('empty.img', (p) => writeFileSync(p, ''), /truncated|not a luo memory image/);
    await c2.shutdown();
    await until(() => processesMentioning(d.socket).length === 0, 'daemon exit');

    // --resume boots the last good image again: the same incoming sessions.
    const d3 = await startDaemon(dir, ['--resume']);
    const c3 = await LuoClient.connect(d3.socket);
    await c3.openDevice();
    assert.deepEqual((await c3.status()).sessions.incoming.map((x) => x.name), ['cross-build']);
    await c3.shutdown();
  } finally {
    await cleanup(dir);
  }
});

test('the position at kexec comes from a forked holder of the hidden dup when the preserving process is gone', async () => {
  const dir = tempDir('holder');
  const grandchildren: number[] = [];
  try {
    const d = await startDaemon(dir);
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('holder-pos');
    const text = Buffer.from('a memfd whose preserving process exits before the kexec');
    // A: preserved at 5, moved to 9, then a holder is forked and the preserving process dies.
    const a = await memfdHolder('held', text, 5);
    await s.ioctl(0xba40, fdTokenArg(a.fd, 1), { source: { kind: 'fd', pid: a.pid, hiddenFd: a.hiddenFd, seals: a.seals } });
    await a.cmd('seek 9');
    grandchildren.push(Number(await a.cmd('fork')));
    // B: preserved at 3, moved to 7, and nobody keeps it open: the last position the daemon knows stands.
    const b = await memfdHolder('orphan', text, 3);
    await s.ioctl(0xba40, fdTokenArg(b.fd, 2), { source: { kind: 'fd', pid: b.pid, hiddenFd: b.hiddenFd, seals: b.seals } });
    await b.cmd('seek 7');
    // C: no hidden dup (hiddenFd -1): the holder's fd at the user's number is used.
    const cc = await memfdHolder('no-hidden', text, 2);
    await s.ioctl(0xba40, fdTokenArg(cc.fd, 3), { source: { kind: 'fd', pid: cc.pid, hiddenFd: -1, seals: cc.seals } });
    await cc.cmd('seek 11');
    grandchildren.push(Number(await cc.cmd('fork')));
    a.stop();
    b.stop();
    cc.stop();
    await until(() => ![a, b, cc].some((h) => existsSync(`/proc/${h.pid}/fd/${h.fd}`)), 'the preserving processes exit');
    await dev.close();
    const r = await c.kexec();
    assert.equal(r.stats['capturedFiles'], 3);
    assert.equal(await d.exited, 0);
    const c2 = await LuoClient.connectRetry(d.socket);
    const dev2 = await c2.openDevice();
    const s2 = await dev2.retrieveSession('holder-pos');
    const fa = await s2.retrieve(1);
    assert.equal(Buffer.from(fa.content).toString(), text.toString());
    assert.equal(fa.pos, 9, 'read from the forked holder at the hidden dup\'s number');
    assert.equal((await s2.retrieve(2)).pos, 3, 'no holder: the position taken at PRESERVE_FD');
    assert.equal((await s2.retrieve(3)).pos, 11, 'no hidden dup: the holder\'s fd at the user\'s number');
    await s2.finish();
    await s2.close();
    await dev2.close();
    await c2.shutdown();
  } finally {
    for (const p of grandchildren) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await cleanup(dir);
  }
});

test('the new daemon starts ahead of the freeze: the old one serves meanwhile, the blackout leaves its start-up out; a refused kexec sends it away; an older build is started after the image', async () => {
  const dir = tempDir('ahead');
  try {
    const hold = join(dir, 'loaded-may-go');
    const d = await startDaemon(dir, [], { LUO_TEST_HOLD_LOADED: hold });
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('ahead');
    const data = randomBytes(32 * 1024);
    await s.preserveBuffer(data, 7);
    await dev.close();

    // refused at the freeze: a kernel whose KHO scratch areas (kho_scratch=8M) cannot hold the next
    // image fails kexec_file_load (ENOMEM); the successor started ahead goes away, the daemon serves on
    writeFileSync(hold, '');
    const smallDir = tempDir('ahead-refused');
    try {
      const small = await startDaemon(smallDir, ['--cmdline', 'console=ttyS0 kho=on liveupdate=on kho_scratch=8M,8M,8M'], { LUO_TEST_HOLD_LOADED: hold });
      const sc = await LuoClient.connect(small.socket);
      await assert.rejects(sc.kexec(), (e: Error & { errno?: string }) => e.errno === 'ENOMEM');
      await until(() => processesMentioning('--await-image').length === 0, 'the successor to go away');
      assert.equal((await sc.status()).pid, small.child.pid, 'the old daemon serves on');
      // its pre-copy went with it: no base image left, nothing held
      assert.deepEqual(readdirSync(small.stateDir).filter((f) => f.startsWith('luo.')), []);
      await sc.shutdown();
    } finally {
      await cleanup(smallDir);
    }

    // while the successor loads (held), everyone else is still served by the old daemon
    rmSync(hold);
    const other = await LuoClient.connect(d.socket);
    const pending = c.kexec();
    await until(() => processesMentioning('--await-image').length === 1, 'the successor to start');
    assert.equal((await other.status()).pid, d.child.pid, 'served during the successor start-up');
    assert.equal((await other.status()).sessions.outgoing.length, 1);
    writeFileSync(hold, '');
    const r = await pending;
    assert.equal(await d.exited, 0);
    assert.equal(typeof r.stats['successorStartMs'], 'number');
    assert.ok((r.stats['blackoutMs'] as number) < (r.stats['totalMs'] as number), JSON.stringify(r.stats));
    const c2 = await LuoClient.connectRetry(d.socket);
    const { stdout } = await luo('status', '--socket', d.socket);
    assert.match(stdout, /last live update: from 7\.3\.4-luo \(pid \d+\); blackout \d+\.\d ms \(serialize/);
    const dev2 = await c2.openDevice();
    assert.ok(Buffer.from((await (await dev2.retrieveSession('ahead')).retrieve(7)).content).equals(data));
    await dev2.close();

    // an older luo that cannot wait for its image: it is started after the image, as before
    const old = join(dir, 'older-build');
    mkdirSync(join(old, 'bin'), { recursive: true });
    writeFileSync(join(old, 'bin', 'luo.mjs'), `#!/usr/bin/env node
// An older luo build (test): it does not know --await-image.
if (process.argv.includes('--await-image')) { process.stderr.write("error: unknown option '--await-image'\\n"); process.exit(2); }
import(${JSON.stringify(LUO_BIN)});
`);
    const r2 = await c2.kexec({ build: old });
    assert.equal(r2.stats['successorStartMs'], null);
    assert.ok(processesMentioning(old).includes(r2.pid), 'the new daemon runs the older build');
    const c3 = await LuoClient.connectRetry(d.socket);
    assert.equal(c3.liveupdateNum, 2);
    await c3.shutdown();
    await other.close().catch(() => undefined);
  } finally {
    await cleanup(dir);
  }
});
