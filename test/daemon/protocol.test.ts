/**
 * The daemon's protocol through a real socket: the §7.3 selftest cases and raw ioctls give the
 * errnos of the in-process uapi; malformed and oversized frames get an error reply and a closed
 * connection while other clients carry on; a client process that vanishes is cleaned up as a
 * process exit would be.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Machine } from '../../src/kernel/machine.ts';
import { LuoDaemon } from '../../src/daemon/server.ts';
import { LuoClient, LuoDevice, type LuoSession } from '../../src/client/index.ts';
import { Connection } from '../../src/client/connection.ts';
import { encodeFrame, FEATURE_IOCTL_NO_FD, MSG, MAX_PAYLOAD, ERROR_TYPE, PayloadWriter } from '../../src/daemon/wire.ts';
import { processesOf, type Process, RLIMIT_NOFILE } from '../../src/uapi/process.ts';
import { O_RDWR } from '../../src/uapi/file.ts';
import { LuoError, type ErrnoName } from '../../src/errno.ts';
import { cleanup, errnoOf, ROOT, tempDir, until, memfdHolder } from './helpers.ts';

let dir: string;
let socket: string;
let daemon: LuoDaemon;
let client: LuoClient;

before(async () => {
  dir = tempDir('proto');
  socket = join(dir, 'luo.sock');
  daemon = new LuoDaemon({ machine: new Machine({ ramSize: 1n << 30n }), socketPath: socket, stateDir: join(dir, 'state') });
  await daemon.listen();
  client = await LuoClient.connect(socket);
});

after(async () => {
  await client.close().catch(() => undefined);
  await daemon.shutdown('tests done');
  await cleanup(dir);
});


/** A fixture: the device open, closed (with every session) at the end. */
async function withDevice(fn: (dev: LuoDevice, opened: LuoSession[]) => Promise<void>): Promise<void> {
  const dev = await client.openDevice();
  const opened: LuoSession[] = [];
  try {
    await fn(dev, opened);
  } finally {
    for (const s of opened) await s.close().catch(() => undefined);
    await dev.close();
  }
}

test('§7.3 cases through the Node client give the selftests\' results', async () => {
  // basic_open_close, exclusive_open
  await withDevice(async () => {
    assert.equal(await errnoOf(client.openDevice()), 'EBUSY');
  });
  // create_duplicate_session, create_distinct_sessions
  await withDevice(async (dev, opened) => {
    opened.push(await dev.createSession('duplicate-session-test'));
    assert.equal(await errnoOf(dev.createSession('duplicate-session-test')), 'EEXIST');
    opened.push(await dev.createSession('distinct-session-1'), await dev.createSession('distinct-session-2'));
  });
  // the sessions' names are free again once their fds are closed
  await withDevice(async (dev, opened) => {
    opened.push(await dev.createSession('duplicate-session-test'));
  });
  // create_session_empty_name, get_session_name, get_session_name_max_length
  await withDevice(async (dev, opened) => {
    assert.equal(await errnoOf(dev.createSession('')), 'EINVAL');
    const s = await dev.createSession('get-name-test-session');
    opened.push(s);
    assert.equal(await s.getName(), 'get-name-test-session');
    const long = 'A'.repeat(63);
    const l = await dev.createSession(long);
    opened.push(l);
    assert.equal(await l.getName(), long);
  });
  // preserve_unsupported_fd: /dev/null opened by this process
  await withDevice(async (dev, opened) => {
    const s = await dev.createSession('unsupported-fd-test');
    opened.push(s);
    const nul = openSync('/dev/null', 'r');
    try {
      assert.equal(await errnoOf(s.preserveFd(nul, 0xdead)), 'ENOENT');
    } finally {
      closeSync(nul);
    }
    assert.equal(await errnoOf(s.preserveFd(1 << 20, 0xdeae)), 'EBADF');
  });
  // prevent_double_preservation, with a file standing in for a memfd, and with a real memfd
  await withDevice(async (dev, opened) => {
    const s1 = await dev.createSession('double-preserve-session-1');
    const s2 = await dev.createSession('double-preserve-session-2');
    opened.push(s1, s2);
    const path = join(dir, 'double.bin');
    writeFileSync(path, 'data');
    assert.equal(await errnoOf(s1.preserveFile(path, 0x1111)), 'ok');
    assert.equal(await errnoOf(s2.preserveFile(path, 0x2222)), 'EBUSY');
    assert.equal(await errnoOf(s1.preserveFile(path, 0x3333)), 'EBUSY');
    assert.equal(await errnoOf(s1.preserveBuffer('x', 0x1111)), 'EEXIST');
    const h = await memfdHolder('dbl', new TextEncoder().encode('real'));
    try {
      const src = { pid: h.pid, seals: h.seals, hiddenFd: h.hiddenFd };
      await s1.ioctl(0xba40, fdArg(h.fd, 0x4444), { source: { kind: 'fd', ...src } });
      assert.equal(await errnoOf(s2.ioctl(0xba40, fdArg(h.fd, 0x5555), { source: { kind: 'fd', ...src } })), 'EBUSY');
      assert.equal(await errnoOf(s2.ioctl(0xba40, fdArg(h.hiddenFd, 0x5555), { source: { kind: 'fd', ...src } })), 'EBUSY');
    } finally {
      h.stop();
    }
  });
  // create_session_no_null_termination: 64 x 'X' (raw struct)
  await withDevice(async (dev) => {
    const b = new Uint8Array(72);
    new DataView(b.buffer).setUint32(0, 72, true);
    b.fill(0x58, 8);
    const r = await client.rawConnection();
    assert.equal(await errnoOf(dev.ioctl(0xba00, b, { newConn: r.connId })), 'EINVAL');
    r.destroy();
  });
  assert.equal(daemon.status().sessions.outgoing.length, 0);
});

const fdArg = (fd: number, token: number, size = 16): Uint8Array => {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, size, true);
  v.setInt32(4, fd, true);
  v.setBigUint64(8, BigInt(token), true);
  return b;
};
const sized = (len: number, size: number, fill?: (b: Uint8Array) => void): Uint8Array => {
  const b = new Uint8Array(len);
  new DataView(b.buffer).setUint32(0, size, true);
  fill?.(b);
  return b;
};

interface RawCase {
  name: string;
  on: 'device' | 'session';
  cmd: number;
  arg: () => Uint8Array | undefined;
}

const RAW: RawCase[] = [
  { name: 'session ioctl on the device', on: 'device', cmd: 0xba40, arg: () => fdArg(0, 1) },
  { name: 'nr past the device table', on: 'device', cmd: 0xba02, arg: () => sized(72, 72) },
  { name: 'full command differs', on: 'device', cmd: 0x4048ba00, arg: () => sized(72, 72, (b) => b.set([0x61], 8)) },
  { name: 'bad pointer', on: 'device', cmd: 0xba00, arg: () => undefined },
  { name: 'size below the minimum', on: 'device', cmd: 0xba00, arg: () => sized(72, 8, (b) => b.set([0x61], 8)) },
  { name: 'larger struct with a nonzero tail', on: 'device', cmd: 0xba00, arg: () => sized(80, 80, (b) => { b.set([0x62], 8); b[79] = 1; }) },
  { name: 'larger struct with a zero tail', on: 'device', cmd: 0xba00, arg: () => sized(80, 80, (b) => b.set([0x63], 8)) },
  { name: 'struct not all accessible', on: 'device', cmd: 0xba00, arg: () => sized(40, 72, (b) => b.set([0x64], 8)) },
  { name: 'retrieve of a missing session', on: 'device', cmd: 0xba01, arg: () => sized(72, 72, (b) => b.set([0x65], 8)) },
  { name: 'FINISH on an outgoing session', on: 'session', cmd: 0xba42, arg: () => sized(8, 8) },
  { name: 'RETRIEVE_FD on an outgoing session', on: 'session', cmd: 0xba41, arg: () => fdArg(0, 1) },
  { name: 'GET_NAME with reserved set', on: 'session', cmd: 0xba43, arg: () => sized(72, 72, (b) => b.set([1], 4)) },
  { name: 'device ioctl on a session', on: 'session', cmd: 0xba00, arg: () => sized(72, 72) },
  { name: 'PRESERVE_FD of an fd that is not open', on: 'session', cmd: 0xba40, arg: () => fdArg(777, 5) },
  { name: 'PRESERVE_FD short size', on: 'session', cmd: 0xba40, arg: () => fdArg(777, 5, 12) },
  { name: 'GET_NAME', on: 'session', cmd: 0xba43, arg: () => sized(72, 72) },
  { name: 'FIONREAD (generic VFS)', on: 'session', cmd: 0x541b, arg: () => sized(4, 0) },
  { name: 'unknown command', on: 'session', cmd: 0x1234, arg: () => sized(16, 16) },
];

test('raw ioctls over the socket: same errno and copied-back bytes as the in-process uapi', async () => {
  // Reference: the same bytes on an in-process kernel.
  const m = new Machine({ ramSize: 1n << 30n });
  const p: Process = processesOf(m.kernel).spawn();
  const refDev = p.open('/dev/liveupdate', O_RDWR);
  const refSess = sized(72, 72, (b) => b.set(new TextEncoder().encode('raw-session'), 8));
  assert.equal(p.ioctl(refDev, 0xba00, refSess), 0);
  const refS = new DataView(refSess.buffer).getInt32(4, true);

  await withDevice(async (dev, opened) => {
    const s = await dev.createSession('raw-session');
    opened.push(s);
    for (const c of RAW) {
      const refArg = c.arg();
      const ret = p.ioctl(c.on === 'device' ? refDev : refS, c.cmd, refArg);
      const want = ret < 0 ? p.errno! : 'ok';
      const arg = c.arg();
      const target = c.on === 'device' ? dev : s;
      const reservation = c.on === 'device' && (c.cmd === 0xba00 || c.cmd === 0xba01) ? await client.rawConnection() : undefined;
      let got: ErrnoName | 'ok';
      try {
        await target.ioctl(c.cmd, arg, reservation ? { newConn: reservation.connId } : {});
        got = 'ok';
      } catch (e) {
        if (!(e instanceof LuoError)) throw e;
        got = e.errno;
      }
      assert.equal(got, want, c.name);
      if (want === 'ok' && arg && refArg) {
        // The fd field of a new session differs (the client's own fd); everything else matches.
        const strip = (b: Uint8Array) => (c.cmd === 0xba00 ? Uint8Array.from(b).fill(0, 4, 8) : b);
        if (c.cmd !== 0xba00) assert.deepEqual(strip(arg), strip(refArg), `${c.name}: bytes`);
      }
      if (reservation && got === 'ok') opened.push(new (s.constructor as typeof LuoSession)(client, reservation, 'raw'));
      else reservation?.destroy();
    }
  });
});

test('malformed and oversized frames: an error reply, the connection closed, others unaffected', async () => {
  const other = await client.openDevice();
  const sess = await other.createSession('keeps-working');
  const cases: Array<{ name: string; bytes: Uint8Array; errno: number }> = [
    { name: 'oversized', bytes: encodeFrame(MSG.STATUS, 7, new Uint8Array(0)).fill(0xff, 0, 4), errno: 90 },
    { name: 'reserved word set', bytes: (() => { const b = encodeFrame(MSG.STATUS, 7, new Uint8Array(0)); b.writeUInt32LE(1, 12); return b; })(), errno: 71 },
    { name: 'unknown type', bytes: encodeFrame(99, 7, new Uint8Array(0)), errno: 71 },
    { name: 'truncated IOCTL payload', bytes: encodeFrame(MSG.IOCTL, 7, new Uint8Array(10)), errno: 71 },
    { name: 'IOCTL arg_len beyond the payload', bytes: encodeFrame(MSG.IOCTL, 7, new PayloadWriter().u32(0xba43).u32(0).u32(1000).i32(0).i32(0).u32(0).u32(0).i32(-1).u64(0).u32(0).u32(0).finish()), errno: 71 },
    { name: 'HELLO twice', bytes: encodeFrame(MSG.HELLO, 7, new PayloadWriter().u32(1).i32(process.pid).u32(0).u32(0).finish()), errno: 71 },
    // plugin files (4.11)
    { name: 'OPEN_PLUGIN name_len over 255', bytes: encodeFrame(MSG.OPEN_PLUGIN, 7, new PayloadWriter().u32(2).u32(256).u32(0).u32(0).bytes(new Uint8Array(256)).finish()), errno: 71 },
    { name: 'OPEN_PLUGIN args_len beyond the payload', bytes: encodeFrame(MSG.OPEN_PLUGIN, 7, new PayloadWriter().u32(2).u32(1).u32(5000).u32(0).bytes(new Uint8Array([0x61])).finish()), errno: 71 },
    { name: 'OPEN_PLUGIN reserved set', bytes: encodeFrame(MSG.OPEN_PLUGIN, 7, new PayloadWriter().u32(2).u32(1).u32(0).u32(1).bytes(new Uint8Array([0x61])).finish()), errno: 71 },
    { name: 'FILE_READ count over 8 MiB', bytes: encodeFrame(MSG.FILE_READ, 7, new PayloadWriter().u32((8 << 20) + 1).u32(0).finish()), errno: 71 },
    { name: 'FILE_READ truncated', bytes: encodeFrame(MSG.FILE_READ, 7, new Uint8Array(3)), errno: 71 },
    { name: 'ATTACH truncated', bytes: encodeFrame(MSG.ATTACH, 7, new Uint8Array(12)), errno: 71 },
    { name: 'IOCTL src_kind CONN with a 3-byte src', bytes: encodeFrame(MSG.IOCTL, 7, new PayloadWriter().u32(0xba40).u32(0).u32(0).i32(0).i32(0).u32(4).u32(0).i32(-1).u64(0).u32(3).u32(0).bytes(new Uint8Array(3)).finish()), errno: 71 },
    { name: 'IOCTL src_kind 5', bytes: encodeFrame(MSG.IOCTL, 7, new PayloadWriter().u32(0xba40).u32(0).u32(0).i32(0).i32(0).u32(5).u32(0).i32(-1).u64(0).u32(0).u32(0).finish()), errno: 71 },
  ];
  for (const c of cases) {
    const conn = await client.rawConnection();
    const got = new Promise<{ type: number; seq: number; errno: number }>((resolve) => {
      conn.sock.removeAllListeners('data');
      conn.sock.once('data', (d: Buffer) => resolve({ type: d.readUInt32LE(4), seq: d.readUInt32LE(8), errno: d.readUInt32LE(20) }));
    });
    conn.writeRaw(c.bytes);
    const r = await got;
    assert.equal(r.type, ERROR_TYPE, c.name);
    assert.equal(r.errno, c.errno, c.name);
    await conn.waitClosed();
    assert.equal(await sess.getName(), 'keeps-working', `${c.name}: another client continues`);
  }
  // Not framing errors: the reply says so and the connection stays.
  {
    const conn = await client.rawConnection();
    const { decodePrefix } = await import('../../src/daemon/wire.ts');
    const ask = async (type: number, payload: Uint8Array) => decodePrefix(await conn.request(type, payload));
    const enc = new TextEncoder();
    const open = (name: string, args: Uint8Array) => new PayloadWriter().u32(2).u32(enc.encode(name).length).u32(args.length).u32(0).bytes(enc.encode(name)).bytes(args).finish();
    assert.deepEqual(await ask(MSG.OPEN_PLUGIN, open('none-here', new Uint8Array(0))).then((r) => [r.ret, r.errno]), [-1, 2], 'no such plugin: ENOENT');
    assert.deepEqual(await ask(MSG.OPEN_PLUGIN, open('a/b', new Uint8Array(0))).then((r) => [r.ret, r.errno]), [-1, 2], 'a slash: ENOENT');
    assert.deepEqual(await ask(MSG.OPEN_PLUGIN, open('none-here', enc.encode('{not json'))).then((r) => [r.ret, r.errno]), [-1, 22], 'bad JSON: EINVAL');
    assert.deepEqual(await ask(MSG.FILE_READ, new PayloadWriter().u32(8).u32(0).finish()).then((r) => [r.ret, r.errno]), [-1, 9], 'read without a file: EBADF');
    assert.deepEqual(await ask(MSG.ATTACH, new PayloadWriter().u32(sess.conn.connId).u32(0).u64(3n).finish()).then((r) => [r.ret, r.errno]), [-1, 9], 'ATTACH of nothing: EBADF');
    // read and write of LUO's own files: EINVAL, as vfs_read says
    assert.deepEqual(decodePrefix(await sess.conn.request(MSG.FILE_READ, new PayloadWriter().u32(8).u32(0).finish())).errno, 22);
    assert.deepEqual(decodePrefix(await sess.conn.request(MSG.FILE_WRITE, new Uint8Array(8))).errno, 22);
    await conn.end();
    assert.equal(await sess.getName(), 'keeps-working');
  }
  // A first frame that is not HELLO, on a raw socket.
  const { createConnection } = await import('node:net');
  const raw = createConnection(socket);
  const first = await new Promise<Buffer>((resolve) => {
    raw.once('data', resolve);
    raw.write(encodeFrame(MSG.STATUS, 1, new Uint8Array(0)));
  });
  assert.equal(first.readUInt32LE(4), ERROR_TYPE);
  await new Promise((r) => raw.once('close', r));
  // A payload at exactly the maximum is not an error (a BUFFER of ~16 MiB reaches the kernel).
  const big = new Uint8Array(MAX_PAYLOAD - 48 - 16);
  big[big.length - 1] = 7;
  await sess.preserveBuffer(big, 99);
  assert.equal(daemon.status().sessions.outgoing.find((o) => o.name === 'keeps-working')!.files[0]!.size, big.length);
  await sess.close();
  await other.close();
});

test('a client process that vanishes is cleaned up like a process exit', async () => {
  const script = join(dir, 'vanish.mts');
  writeFileSync(script, `
import { LuoClient } from ${JSON.stringify(join(ROOT, 'src/client/index.ts'))};
const c = await LuoClient.connect(${JSON.stringify(socket)});
const dev = await c.openDevice();
const s = await dev.createSession('orphan-1');
await s.preserveBuffer('lost with its process', 1);
const t = await dev.createSession('orphan-2');
console.log('ready');
setInterval(() => {}, 1000);
`);
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout!.on('data', (b: Buffer) => b.toString().includes('ready') && resolve()));
  const names = () => daemon.status().sessions.outgoing.map((s) => s.name);
  assert.deepEqual(names().filter((n) => n.startsWith('orphan')).sort(), ['orphan-1', 'orphan-2']);
  assert.equal(daemon.status().device.open, true);
  const pagesBefore = daemon.status().preserved.pages;
  child.kill('SIGKILL');
  await until(() => !names().some((n) => n.startsWith('orphan')) && !daemon.status().device.open, 'orphan sessions released');
  assert.ok(daemon.status().preserved.pages < pagesBefore, 'the preserved memfd was unpreserved');
  // The names and the device are free again.
  await withDevice(async (dev, opened) => {
    opened.push(await dev.createSession('orphan-1'));
  });
});

test('a process exit through the control connection: fork-shared files die with the last reference', async () => {
  // Two connections of one (synthetic) pid: the process is gone only when both are.
  const pid = (1 << 22) + 17;
  const c2 = await LuoClient.connect(socket, { pid });
  const dev = await c2.openDevice();
  const s = await dev.createSession('two-conns');
  await dev.close();
  assert.ok(daemon.status().sessions.outgoing.some((o) => o.name === 'two-conns'));
  await c2.close();
  assert.ok(daemon.status().sessions.outgoing.some((o) => o.name === 'two-conns'), 'the session fd still holds it');
  s.conn.destroy();
  await until(() => !daemon.status().sessions.outgoing.some((o) => o.name === 'two-conns'), 'session released at EOF');
});

const nameArg = (name: string): Uint8Array => {
  const b = new Uint8Array(72);
  new DataView(b.buffer).setUint32(0, 72, true);
  b.set(new TextEncoder().encode(name), 8);
  return b;
};

test('release ordering: a file whose last reference went just before a request is released first', async () => {
  // The EOF of one connection and a request on another, both written before the daemon wakes up
  // (a close(2) of a shared fd, a process exit, then the next syscall): the EOF is handled first,
  // as the kernel had released the file before that syscall.
  for (let i = 0; i < 10; i++) {
    const dev = await client.openDevice();
    const s = await dev.createSession('released-first');
    const next = await client.rawConnection();
    s.conn.destroy();
    dev.conn.destroy();
    const r = await next.request(MSG.OPEN_DEVICE, new PayloadWriter().u32(O_RDWR).u32(0).finish());
    assert.equal(r.readInt32LE(0), 0, `round ${i}: OPEN_DEVICE right after the device's EOF gave errno ${r.readUInt32LE(4)}`);
    const dev2 = new LuoDevice(client, next);
    const s2 = await dev2.createSession('released-second');
    const reservation = await client.rawConnection();
    s2.conn.destroy();
    const again = await errnoOf(dev2.ioctl(0xba00, nameArg('released-second'), { newConn: reservation.connId }));
    assert.equal(again, 'ok', `round ${i}: CREATE_SESSION right after the session's EOF`);
    const first = await dev2.createSession('released-first');
    first.conn.destroy();
    reservation.destroy();
    next.destroy();
    await until(() => daemon.status().sessions.outgoing.length === 0 && !daemon.status().device.open, 'everything released');
  }
});

test('NO_FD: a client that could not reserve the new fd gets EMFILE where the kernel allocates it', async () => {
  assert.equal(client.control.hello!.features & FEATURE_IOCTL_NO_FD, FEATURE_IOCTL_NO_FD, 'HELLO advertises NO_FD');
  // Reference: the in-process kernel with RLIMIT_NOFILE's soft limit at the fd table's end.
  const m = new Machine({ ramSize: 1n << 30n });
  const p: Process = processesOf(m.kernel).spawn();
  const refDev = p.open('/dev/liveupdate', O_RDWR);
  assert.equal(p.ioctl(refDev, 0xba00, nameArg('nofd-taken')), 0);
  const refArg = nameArg('nofd-outgoing');
  assert.equal(p.ioctl(refDev, 0xba00, refArg), 0);
  const refS = new DataView(refArg.buffer).getInt32(4, true);
  const limit = Math.max(...p.openFds()) + 1;
  assert.equal(p.setrlimit(RLIMIT_NOFILE, { cur: limit, max: p.getrlimit(RLIMIT_NOFILE).max }), 0);

  const cases: RawCase[] = [
    { name: 'create', on: 'device', cmd: 0xba00, arg: () => nameArg('nofd-new') },
    { name: 'create of a taken name', on: 'device', cmd: 0xba00, arg: () => nameArg('nofd-taken') },
    { name: 'create, size below the minimum', on: 'device', cmd: 0xba00, arg: () => sized(72, 8, (b) => b.set([0x61], 8)) },
    { name: 'create, larger struct with a nonzero tail', on: 'device', cmd: 0xba00, arg: () => sized(80, 80, (b) => { b.set([0x62], 8); b[79] = 1; }) },
    { name: 'create, bad pointer', on: 'device', cmd: 0xba00, arg: () => undefined },
    { name: 'create, struct not all accessible', on: 'device', cmd: 0xba00, arg: () => sized(40, 72, (b) => b.set([0x64], 8)) },
    { name: 'create, full command differs', on: 'device', cmd: 0x4048ba00, arg: () => nameArg('nofd-new') },
    { name: 'retrieve of a missing session', on: 'device', cmd: 0xba01, arg: () => nameArg('nofd-missing') },
    { name: 'RETRIEVE_FD on an outgoing session', on: 'session', cmd: 0xba41, arg: () => fdArg(0, 1) },
    { name: 'GET_NAME (makes no fd: the flag is ignored)', on: 'session', cmd: 0xba43, arg: () => sized(72, 72) },
  ];
  await withDevice(async (dev, opened) => {
    opened.push(await dev.createSession('nofd-taken'));
    const s = await dev.createSession('nofd-outgoing');
    opened.push(s);
    for (const c of cases) {
      const ret = p.ioctl(c.on === 'device' ? refDev : refS, c.cmd, c.arg());
      const want = ret < 0 ? p.errno! : 'ok';
      const got = await errnoOf((c.on === 'device' ? dev : s).ioctl(c.cmd, c.arg(), { noFd: true }));
      assert.equal(got, want, c.name);
    }
    assert.deepEqual(daemon.status().sessions.outgoing.map((o) => o.name).sort(), ['nofd-outgoing', 'nofd-taken'], 'nothing was created');
    // NO_FD together with a reservation is a misuse
    const r = await client.rawConnection();
    assert.equal(await errnoOf(dev.ioctl(0xba00, nameArg('nofd-new'), { noFd: true, newConn: r.connId })), 'EPROTO');
    r.destroy();
  });
});
