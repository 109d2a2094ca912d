/**
 * tools/testing/selftests/liveupdate/liveupdate.c, the 15 harness cases, against luo's processes
 * and ioctls with raw structs as the C helpers build them. As the kselftest harness does, each case
 * runs in a child forked from one harness process on one kernel, and the TAP result lines must
 * equal the real 7.3.4 run (fixtures/real-kernel/logs/selftests-serial.log).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Machine } from '../../src/kernel/machine.ts';
import { LIVEUPDATE_IOCTL } from '../../src/abi/uapi.ts';
import { SEEK_SET } from '../../src/handlers/memfd-file.ts';
import {
  cString, luoCreateSession, luoEnsureNofileLimit, luoGetSessionName, luoSessionPreserveFd, O_RDWR, type Process, processesOf,
} from '../../src/uapi/index.ts';

const LIVEUPDATE_DEV = '/dev/liveupdate';
const EEXIST = 17;
const EBUSY = 16;
const ENOENT = 2;
const EINVAL = 22;
const EPERM = 1;
const enc = (s: string) => new TextEncoder().encode(s);

class Skip extends Error {}

/** FIXTURE(liveupdate_device): fd1 and fd2, closed by the teardown. */
interface Fixture {
  fd1: number;
  fd2: number;
}

function openDev(p: Process, self: Fixture): void {
  self.fd1 = p.open(LIVEUPDATE_DEV, O_RDWR);
  if (self.fd1 < 0 && p.errno === 'ENOENT') throw new Skip(`${LIVEUPDATE_DEV} does not exist`);
  assert.ok(self.fd1 >= 0);
}

function readStr(p: Process, fd: number): string {
  const buf = new Uint8Array(64);
  const n = p.read(fd, buf);
  assert.ok(n >= 0);
  return cString(buf.subarray(0, n));
}

const CASES: Array<[string, (p: Process, self: Fixture) => void]> = [
  ['basic_open_close', (p, self) => {
    openDev(p, self);
    assert.equal(p.close(self.fd1), 0);
    self.fd1 = -1;
  }],
  ['exclusive_open', (p, self) => {
    openDev(p, self);
    self.fd2 = p.open(LIVEUPDATE_DEV, O_RDWR);
    assert.ok(self.fd2 < 0);
    assert.equal(p.errno, 'EBUSY');
  }],
  ['create_duplicate_session', (p, self) => {
    openDev(p, self);
    const s1 = luoCreateSession(p, self.fd1, 'duplicate-session-test');
    assert.ok(s1 >= 0);
    const s2 = luoCreateSession(p, self.fd1, 'duplicate-session-test');
    assert.ok(s2 < 0);
    assert.equal(-s2, EEXIST);
    assert.equal(p.close(s1), 0);
  }],
  ['create_distinct_sessions', (p, self) => {
    openDev(p, self);
    const s1 = luoCreateSession(p, self.fd1, 'distinct-session-1');
    assert.ok(s1 >= 0);
    const s2 = luoCreateSession(p, self.fd1, 'distinct-session-2');
    assert.ok(s2 >= 0);
    assert.equal(p.close(s1), 0);
    assert.equal(p.close(s2), 0);
  }],
  ['preserve_memfd', (p, self) => {
    const str = 'hello liveupdate';
    openDev(p, self);
    const s = luoCreateSession(p, self.fd1, 'preserve-memfd-test');
    assert.ok(s >= 0);
    const m = p.memfdCreate('test-memfd', 0);
    assert.ok(m >= 0);
    assert.equal(p.write(m, enc(str)), str.length);
    assert.equal(luoSessionPreserveFd(p, s, m, 0x1234), 0);
    assert.equal(p.close(s), 0);
    assert.equal(p.lseek(m, 0, SEEK_SET), 0);
    assert.equal(readStr(p, m), str);
    assert.equal(p.close(m), 0);
  }],
  ['preserve_multiple_memfds', (p, self) => {
    const str1 = 'data for memfd one';
    const str2 = 'data for memfd two';
    openDev(p, self);
    const s = luoCreateSession(p, self.fd1, 'preserve-multi-memfd-test');
    assert.ok(s >= 0);
    const m1 = p.memfdCreate('test-memfd-1', 0);
    const m2 = p.memfdCreate('test-memfd-2', 0);
    assert.ok(m1 >= 0 && m2 >= 0);
    assert.equal(p.write(m1, enc(str1)), str1.length);
    assert.equal(p.write(m2, enc(str2)), str2.length);
    assert.equal(luoSessionPreserveFd(p, s, m1, 0xaaaa), 0);
    assert.equal(luoSessionPreserveFd(p, s, m2, 0xbbbb), 0);
    assert.equal(p.lseek(m1, 0, SEEK_SET), 0);
    assert.equal(readStr(p, m1), str1);
    assert.equal(p.lseek(m2, 0, SEEK_SET), 0);
    assert.equal(readStr(p, m2), str2);
    assert.equal(p.close(m1), 0);
    assert.equal(p.close(m2), 0);
    assert.equal(p.close(s), 0);
  }],
  ['preserve_complex_scenario', (p, self) => {
    const data1 = 'data for session 1';
    const data2 = 'data for session 2';
    openDev(p, self);
    const s1 = luoCreateSession(p, self.fd1, 'complex-session-1');
    const s2 = luoCreateSession(p, self.fd1, 'complex-session-2');
    assert.ok(s1 >= 0 && s2 >= 0);
    const d1 = p.memfdCreate('data1', 0);
    assert.equal(p.write(d1, enc(data1)), data1.length);
    const e1 = p.memfdCreate('empty1', 0);
    const d2 = p.memfdCreate('data2', 0);
    assert.equal(p.write(d2, enc(data2)), data2.length);
    const e2 = p.memfdCreate('empty2', 0);
    assert.ok(e1 >= 0 && e2 >= 0);
    assert.equal(luoSessionPreserveFd(p, s1, d1, 0x1111), 0);
    assert.equal(luoSessionPreserveFd(p, s1, e1, 0x2222), 0);
    assert.equal(luoSessionPreserveFd(p, s2, d2, 0x3333), 0);
    assert.equal(luoSessionPreserveFd(p, s2, e2, 0x4444), 0);
    assert.equal(p.lseek(d1, 0, SEEK_SET), 0);
    assert.equal(readStr(p, d1), data1);
    assert.equal(p.lseek(d2, 0, SEEK_SET), 0);
    assert.equal(readStr(p, d2), data2);
    assert.equal(p.lseek(e1, 0, SEEK_SET), 0);
    assert.equal(p.read(e1, new Uint8Array(64)), 0);
    assert.equal(p.lseek(e2, 0, SEEK_SET), 0);
    assert.equal(p.read(e2, new Uint8Array(64)), 0);
    for (const fd of [d1, e1, d2, e2, s1, s2]) assert.equal(p.close(fd), 0);
  }],
  ['preserve_unsupported_fd', (p, self) => {
    openDev(p, self);
    const s = luoCreateSession(p, self.fd1, 'unsupported-fd-test');
    assert.ok(s >= 0);
    const u = p.open('/dev/null', O_RDWR);
    assert.ok(u >= 0);
    assert.equal(luoSessionPreserveFd(p, s, u, 0xdead), -ENOENT);
    assert.equal(p.close(u), 0);
    assert.equal(p.close(s), 0);
  }],
  ['prevent_double_preservation', (p, self) => {
    openDev(p, self);
    const s1 = luoCreateSession(p, self.fd1, 'double-preserve-session-1');
    const s2 = luoCreateSession(p, self.fd1, 'double-preserve-session-2');
    assert.ok(s1 >= 0 && s2 >= 0);
    const m = p.memfdCreate('test-memfd', 0);
    assert.ok(m >= 0);
    assert.equal(luoSessionPreserveFd(p, s1, m, 0x1111), 0);
    assert.equal(luoSessionPreserveFd(p, s2, m, 0x2222), -EBUSY);
    assert.equal(luoSessionPreserveFd(p, s1, m, 0x3333), -EBUSY);
    assert.equal(p.close(m), 0);
    assert.equal(p.close(s1), 0);
    assert.equal(p.close(s2), 0);
  }],
  ['create_session_no_null_termination', (p, self) => {
    openDev(p, self);
    const args = new Uint8Array(72);
    new DataView(args.buffer).setUint32(0, 72, true);
    args.fill(0x58, 8, 72); // 'X' x 64, no terminator
    assert.ok(p.ioctl(self.fd1, LIVEUPDATE_IOCTL.CREATE_SESSION, args) < 0);
    assert.equal(p.errno, 'EINVAL');
  }],
  ['create_session_empty_name', (p, self) => {
    openDev(p, self);
    assert.equal(luoCreateSession(p, self.fd1, ''), -EINVAL);
  }],
  ['get_session_name', (p, self) => {
    const name = 'get-name-test-session';
    openDev(p, self);
    const s = luoCreateSession(p, self.fd1, name);
    assert.ok(s >= 0);
    const buf = new Uint8Array(64);
    assert.equal(luoGetSessionName(p, s, buf), 0);
    assert.equal(cString(buf), name);
    assert.equal(p.close(s), 0);
  }],
  ['get_session_name_max_length', (p, self) => {
    const name = 'A'.repeat(63);
    openDev(p, self);
    const s = luoCreateSession(p, self.fd1, name);
    assert.ok(s >= 0);
    const buf = new Uint8Array(64);
    assert.equal(luoGetSessionName(p, s, buf), 0);
    assert.equal(cString(buf), name);
    assert.equal(p.close(s), 0);
  }],
  ['preserve_many_sessions', (p, self) => {
    const MANY = 2000;
    openDev(p, self);
    const ret = luoEnsureNofileLimit(p, MANY);
    if (ret === -EPERM) throw new Skip('Insufficient privileges to set RLIMIT_NOFILE');
    assert.equal(ret, 0);
    const fds: number[] = [];
    for (let i = 0; i < MANY; i++) {
      fds.push(luoCreateSession(p, self.fd1, `many-session-${i}`));
      assert.ok(fds[i]! >= 0, `session ${i}: ${fds[i]}`);
    }
    for (const fd of fds) assert.equal(p.close(fd), 0);
  }],
  ['preserve_many_files', (p, self) => {
    const MANY = 500;
    openDev(p, self);
    const s = luoCreateSession(p, self.fd1, 'many-files-test');
    assert.ok(s >= 0);
    const ret = luoEnsureNofileLimit(p, MANY + 10);
    if (ret === -EPERM) throw new Skip('Insufficient privileges to set RLIMIT_NOFILE');
    assert.equal(ret, 0);
    const fds: number[] = [];
    for (let i = 0; i < MANY; i++) {
      fds.push(p.memfdCreate('test-memfd', 0));
      assert.ok(fds[i]! >= 0);
      assert.equal(luoSessionPreserveFd(p, s, fds[i]!, i), 0);
    }
    for (const fd of fds) assert.equal(p.close(fd), 0);
    assert.equal(p.close(s), 0);
  }],
];

/** The harness's TAP lines from the real run. */
const REAL_TAP = readFileSync(new URL('../fixtures/real-kernel/logs/selftests-serial.log', import.meta.url), 'latin1')
  .split('\n')
  .map((l) => l.replace(/\r$/, ''))
  .filter((l) => /^(ok|not ok) \d+ liveupdate_device\./.test(l) || /^1\.\.\d+$/.test(l) || l.startsWith('# PASSED:'));

test('liveupdate.c: the 15 harness cases, each in a forked child, as in the real run', async (t) => {
  const m = new Machine({ ramSize: 1n << 30n });
  const table = processesOf(m.kernel);
  const harness = table.spawn();
  const tap: string[] = [`1..${CASES.length}`];
  let passed = 0;
  for (const [i, [name, body]] of CASES.entries()) {
    await t.test(name, () => {
      const child = harness.fork();
      const self: Fixture = { fd1: -1, fd2: -1 };
      let ok = false;
      try {
        body(child, self);
        ok = true;
      } finally {
        // FIXTURE_TEARDOWN, then the child exits (closing whatever the case left open).
        if (self.fd1 >= 0) child.close(self.fd1);
        if (self.fd2 >= 0) child.close(self.fd2);
        child.exit(ok ? 0 : 1);
        tap.push(`${ok ? 'ok' : 'not ok'} ${i + 1} liveupdate_device.${name}`);
        if (ok) passed++;
      }
    });
  }
  tap.push(`# PASSED: ${passed} / ${CASES.length} tests passed.`);
  assert.deepEqual(tap, REAL_TAP);
  const luo = m.kernel.luo!;
  assert.equal(luo.sessions.outgoing.length, 0, 'every case cleaned up its sessions');
  assert.equal(luo.isOpen, false, 'the device is free again');
  assert.equal(harness.openFds().length, 3, 'the harness holds only stdio');
});

test('preserve_many_sessions without CAP_SYS_RESOURCE and a low hard limit: luo_ensure_nofile_limit gives -EPERM (the case skips)', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const p = processesOf(m.kernel).spawn({ privileged: false, rlimitNofile: { cur: 1024, max: 1024 } });
  assert.equal(luoEnsureNofileLimit(p, 2000), -EPERM);
  assert.equal(p.errno, 'EPERM');
  assert.deepEqual(p.getrlimit(7), { cur: 1024, max: 1024 });
});
