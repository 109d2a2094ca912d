/**
 * fd semantics around LUO: lowest-free allocation and RLIMIT_NOFILE, O_CLOEXEC on the fds LUO
 * returns and exec closing them, fork sharing open files, close/exit releasing sessions the way
 * luo_session_release does, EMFILE leaving nothing behind, and the generic file syscalls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import type { ErrnoName } from '../../src/errno.ts';
import { LIVEUPDATE_IOCTL as C } from '../../src/abi/uapi.ts';
import { F_SEAL_SEAL, MFD_CLOEXEC, SEEK_CUR, SEEK_END, SEEK_SET, type MemfdFile } from '../../src/handlers/memfd-file.ts';
import {
  cString, F_ADD_SEALS, F_DUPFD, F_DUPFD_CLOEXEC, F_GET_SEALS, F_GETFD, F_GETFL, F_SETFD, F_SETFL, FD_CLOEXEC, fdTokenArg, FIONCLEX,
  luoCreateSession, luoGetSessionName, luoRetrieveSession, luoSessionFinish, luoSessionPreserveFd, luoSessionRetrieveFd, NR_OPEN, O_APPEND,
  O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, type Process, processesOf, RLIMIT_NOFILE, sessionNameArg,
} from '../../src/uapi/index.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const GiB = 1n << 30n;

function expectErr(p: Process, r: number, errno: ErrnoName, msg?: string): void {
  assert.equal(r, -1, msg);
  assert.equal(p.errno, errno, msg);
}

function boot() {
  const m = new Machine({ ramSize: GiB });
  const p = processesOf(m.kernel).spawn();
  return { m, k: m.kernel, luo: m.kernel.luo!, p };
}

/** A kernel booted after a kexec whose previous kernel preserved session "in" with memfd token 1 ("payload"). */
function bootWithIncoming() {
  const m = new Machine({ ramSize: GiB });
  const p1 = processesOf(m.kernel).spawn();
  const dev = p1.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p1, dev, 'in');
  const mf = p1.memfdCreate('payload', 0);
  p1.write(mf, enc('payload'));
  assert.equal(luoSessionPreserveFd(p1, s, mf, 1), 0);
  p1.fork();
  p1.exit(0);
  const k = m.kexec();
  return { m, k, luo: k.luo!, p: processesOf(k).spawn() };
}

test('fd allocation: lowest free first, close gives EBADF for what is not open, dup/dup2/dup3 as Linux', () => {
  const { p } = boot();
  assert.deepEqual(p.openFds(), [0, 1, 2], 'stdio on the console');
  const a = p.open('/dev/null', O_RDWR);
  const b = p.open('/dev/null', O_RDWR);
  assert.deepEqual([a, b], [3, 4]);
  assert.equal(p.close(a), 0);
  expectErr(p, p.close(a), 'EBADF', 'double close');
  expectErr(p, p.close(-1), 'EBADF');
  expectErr(p, p.close(1 << 20), 'EBADF');
  assert.equal(p.memfdCreate('x', 0), 3, 'the freed slot is reused');
  assert.equal(p.dup(b), 5);
  assert.equal(p.file(5), p.file(b), 'dup shares the open file');
  expectErr(p, p.dup(42), 'EBADF');
  assert.equal(p.dup2(b, b), b);
  expectErr(p, p.dup2(42, 42), 'EBADF');
  expectErr(p, p.dup3(b, b, 0), 'EINVAL');
  expectErr(p, p.dup3(b, 9, 0x40), 'EINVAL');
  expectErr(p, p.dup3(b, 1024, 0), 'EBADF', 'newfd at RLIMIT_NOFILE');
  assert.equal(p.dup3(b, 10, O_CLOEXEC), 10);
  assert.equal(p.fcntl(10, F_GETFD), FD_CLOEXEC);
  assert.equal(p.fcntl(b, F_DUPFD, 7), 7);
  assert.equal(p.fcntl(b, F_DUPFD_CLOEXEC, 7), 8);
  assert.equal(p.fcntl(8, F_GETFD), FD_CLOEXEC);
  expectErr(p, p.fcntl(b, F_DUPFD, 1024), 'EINVAL');
  expectErr(p, p.fcntl(b, 9999), 'EINVAL');
  assert.equal(p.fcntl(b, F_SETFD, FD_CLOEXEC), 0);
  assert.equal(p.fcntl(b, F_GETFD), FD_CLOEXEC);
  assert.equal(p.fcntl(b, F_GETFL), O_RDWR | 0o100000);
  assert.equal(p.fcntl(b, F_SETFL, O_NONBLOCK), 0);
  assert.equal(p.fcntl(5, F_GETFL) & O_NONBLOCK, O_NONBLOCK, 'status flags live in the shared open file');
});

test('RLIMIT_NOFILE: EMFILE for every new fd, EMFILE before ENOENT, setrlimit checks', () => {
  const { p } = boot();
  assert.equal(p.setrlimit(RLIMIT_NOFILE, { cur: 5, max: 4096 }), 0);
  const a = p.open('/dev/null', O_RDWR);
  const b = p.memfdCreate('m', 0);
  assert.deepEqual([a, b], [3, 4]);
  expectErr(p, p.open('/dev/null', O_RDWR), 'EMFILE');
  expectErr(p, p.open('/no/such/file', O_RDONLY), 'EMFILE', 'the fd is reserved before the lookup');
  expectErr(p, p.memfdCreate('m', 0), 'EMFILE');
  expectErr(p, p.memfdCreate('m', 0x1000), 'EINVAL', 'memfd_create checks its flags before reserving an fd');
  expectErr(p, p.pipe([]), 'EMFILE');
  expectErr(p, p.dup(a), 'EMFILE');
  expectErr(p, p.fcntl(a, F_DUPFD, 0), 'EMFILE');
  p.close(b);
  expectErr(p, p.pipe([]), 'EMFILE', 'a pipe needs two fds');
  assert.deepEqual(p.openFds(), [0, 1, 2, 3], 'the failed pipe gave its first fd back');
  expectErr(p, p.setrlimit(RLIMIT_NOFILE, { cur: 10, max: 5 }), 'EINVAL');
  expectErr(p, p.setrlimit(RLIMIT_NOFILE, { cur: 10, max: NR_OPEN + 1 }), 'EPERM');
  const u = processesOf(p.kernel).spawn({ privileged: false });
  expectErr(u, u.setrlimit(RLIMIT_NOFILE, { cur: 10, max: 8192 }), 'EPERM', 'raising the hard limit needs CAP_SYS_RESOURCE');
  assert.equal(u.setrlimit(RLIMIT_NOFILE, { cur: 4096, max: 4096 }), 0);
});

test('paths: /dev/null and /dev/liveupdate only; the device is ENOENT without LUO; O_CREAT|O_EXCL is EEXIST', () => {
  const { p } = boot();
  expectErr(p, p.open('/dev/zero', O_RDWR), 'ENOENT');
  expectErr(p, p.open('/dev/null', O_RDWR | 0o100 | 0o200), 'EEXIST');
  assert.equal(p.fdPath(0), '/dev/console');
  const off = new Machine({ ramSize: GiB, cmdline: 'console=ttyS0 kho=on liveupdate=off' });
  const q = processesOf(off.kernel).spawn();
  expectErr(q, q.open('/dev/liveupdate', O_RDWR), 'ENOENT');
});

test('the device is exclusive per open file: a fork copy keeps it busy, the last close frees it', () => {
  const { p, luo } = boot();
  const other = processesOf(p.kernel).spawn();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  expectErr(other, other.open('/dev/liveupdate', O_RDWR), 'EBUSY');
  expectErr(p, p.open('/dev/liveupdate', O_RDWR), 'EBUSY', 'even for the same process');
  const dup = p.dup(dev);
  assert.equal(p.close(dev), 0);
  expectErr(other, other.open('/dev/liveupdate', O_RDWR), 'EBUSY', 'a dup keeps it open');
  const child = p.fork();
  assert.equal(p.close(dup), 0);
  assert.equal(luo.isOpen, true, 'the fork copy keeps it open');
  assert.ok(luoCreateSession(child, dup, 'from-child') >= 0, 'the child can use the shared device fd');
  child.exit(0);
  assert.equal(luo.isOpen, false);
  assert.equal(luo.sessions.outgoing.length, 0, 'the child\'s session went with it');
  assert.equal(other.open('/dev/liveupdate', O_RDWR), 3);
});

test('O_CLOEXEC on the fds CREATE_SESSION, RETRIEVE_SESSION and RETRIEVE_FD return; named [luo_session] <name>', () => {
  const { p } = bootWithIncoming();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  assert.equal(p.fcntl(dev, F_GETFD), 0, 'open without O_CLOEXEC');
  const out = luoCreateSession(p, dev, 'out-session');
  const inc = luoRetrieveSession(p, dev, 'in');
  const mf = luoSessionRetrieveFd(p, inc, 1);
  for (const fd of [out, inc, mf]) assert.equal(p.fcntl(fd, F_GETFD), FD_CLOEXEC, `fd ${fd}`);
  assert.equal(p.fdPath(out), 'anon_inode:[luo_session] out-session');
  assert.equal(p.fdPath(inc), 'anon_inode:[luo_session] in');
  assert.equal(p.fcntl(out, F_GETFL), O_RDWR);
  const dev2 = p.open('/dev/null', O_RDWR | O_CLOEXEC);
  assert.equal(p.fcntl(dev2, F_GETFD), FD_CLOEXEC);
  assert.equal(p.fcntl(p.memfdCreate('c', MFD_CLOEXEC), F_GETFD), FD_CLOEXEC);
});

test('exec closes the O_CLOEXEC session fd and so unpreserves the session\'s files; FIONCLEX keeps one', () => {
  const { p, luo } = boot();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p, dev, 'agent');
  const keep = luoCreateSession(p, dev, 'kept');
  assert.equal(p.ioctl(keep, FIONCLEX, undefined), 0);
  const mf = p.memfdCreate('state', 0);
  p.write(mf, enc('state'));
  assert.equal(luoSessionPreserveFd(p, s, mf, 7), 0);
  const file = p.file(mf) as MemfdFile;
  assert.equal(file.luoRefs, 1);
  assert.equal(p.exec(), 0);
  assert.deepEqual(p.openFds(), [0, 1, 2, dev, keep, mf]);
  assert.deepEqual(luo.sessions.outgoing.map((x) => x.name), ['kept'], 'the session went with its fd');
  assert.equal(file.luoRefs, 0, 'its file is no longer preserved');
  assert.equal(luoSessionPreserveFd(p, keep, mf, 7), 0, 'so it can be preserved again, with the same token');
  assert.equal(luoCreateSession(p, dev, 'agent') >= 0, true, 'and the name is free again');
});

test('fork shares session fds: the session lives until the last copy is closed; memfd positions are shared', () => {
  const { p, luo } = boot();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p, dev, 'shared');
  const mf = p.memfdCreate('m', 0);
  p.write(mf, enc('0123456789'));
  const child = p.fork();
  assert.equal(child.file(s), p.file(s), 'the same open file');
  assert.equal(child.lseek(mf, 3, SEEK_SET), 3);
  assert.equal(p.lseek(mf, 0, SEEK_CUR), 3, 'one file position for both');
  assert.equal(p.close(s), 0);
  assert.equal(luo.sessions.outgoing.length, 1, 'the child still holds the session');
  assert.equal(luoSessionPreserveFd(child, s, mf, 1), 0);
  const name = new Uint8Array(64);
  assert.equal(luoGetSessionName(child, s, name), 0);
  assert.equal(cString(name), 'shared');
  expectErr(p, p.ioctl(s, C.SESSION_GET_NAME, new Uint8Array(72)), 'EBADF', 'the parent\'s fd is gone');
  child.exit(0);
  assert.equal(luo.sessions.outgoing.length, 0, 'exit released it like a close: unpreserved and removed');
  assert.equal((p.file(mf) as MemfdFile).luoRefs, 0);
});

test('closing a preserved memfd does not unpreserve it: LUO holds its own reference', () => {
  const { m, p, luo } = boot();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p, dev, 'keep');
  const s2 = luoCreateSession(p, dev, 'other');
  const mf = p.memfdCreate('m', 0);
  p.write(mf, enc('still here'));
  const file = p.file(mf) as MemfdFile;
  assert.equal(luoSessionPreserveFd(p, s, mf, 5), 0);
  const dupd = p.dup(mf);
  assert.equal(luoSessionPreserveFd(p, s2, dupd, 6), -16, 'EBUSY: the same open file through a dup');
  assert.equal(p.close(mf), 0);
  assert.equal(p.close(dupd), 0);
  assert.equal(file.closed, false, 'the open file survives its last fd');
  assert.equal(luo.sessions.outgoing[0]!.fileSet.count, 1);
  const again = p.memfdCreate('n', 0);
  assert.equal(luoSessionPreserveFd(p, s2, again, 5), 0, 'a different memfd is fine');
  const holder = p.fork();
  p.exit(0);
  const k2 = m.kexec();
  assert.equal(holder.state, 'running');
  const q = processesOf(k2).spawn();
  const d2 = q.open('/dev/liveupdate', O_RDWR);
  const inc = luoRetrieveSession(q, d2, 'keep');
  const fd = luoSessionRetrieveFd(q, inc, 5);
  const buf = new Uint8Array(32);
  assert.equal(q.pread(fd, buf, 0), 10);
  assert.equal(cString(buf), 'still here');
});

test('closing an outgoing session unpreserves its files (releasing a memfd nobody else holds)', () => {
  const { p } = boot();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p, dev, 'temp');
  const mf = p.memfdCreate('m', 0);
  const file = p.file(mf) as MemfdFile;
  assert.equal(luoSessionPreserveFd(p, s, mf, 1), 0);
  p.close(mf);
  assert.equal(file.closed, false);
  p.close(s);
  assert.equal(file.closed, true, 'LUO\'s reference was the last one');
  assert.equal(file.inode.released, true);
});

test('exit of a process on the new kernel finishes its incoming sessions, as close does', () => {
  const { p, luo } = bootWithIncoming();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const inc = luoRetrieveSession(p, dev, 'in');
  assert.ok(inc >= 0);
  const mf = luoSessionRetrieveFd(p, inc, 1);
  const file = p.file(mf) as MemfdFile;
  assert.equal(file.luoRefs, 1);
  const dup = p.dup(mf);
  assert.equal(p.file(dup), file);
  const again = luoSessionRetrieveFd(p, inc, 1);
  assert.notEqual(again, mf);
  assert.equal(p.file(again), file, 'a repeated RETRIEVE_FD is another fd to the same open file');
  p.exit(0);
  assert.equal(luo.sessions.incoming.length, 0, 'finished and removed');
  assert.equal(file.closed, true);
  const q = processesOf(p.kernel).spawn();
  const d = q.open('/dev/liveupdate', O_RDWR);
  assert.equal(d, 3, 'the device is free again');
  assert.equal(luoRetrieveSession(q, d, 'in'), -2, 'ENOENT once finished and closed');
});

test('EMFILE with a low RLIMIT_NOFILE: nothing is created, retrieved or consumed', () => {
  const { p, luo } = bootWithIncoming();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const inc = luoRetrieveSession(p, dev, 'in');
  assert.equal(p.setrlimit(RLIMIT_NOFILE, { cur: p.openFds().length, max: 4096 }), 0);
  const a = sessionNameArg('never');
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, a), 'EMFILE');
  assert.equal(new DataView(a.buffer).getInt32(4, true), 0, 'no reply was written');
  assert.equal(luo.sessions.outgoing.length, 0, 'no session behind');
  expectErr(p, p.ioctl(inc, C.SESSION_RETRIEVE_FD, fdTokenArg(0, 1)), 'EMFILE');
  assert.equal(luo.sessions.incoming[0]!.fileSet.files[0]!.retrieveStatus, 0, 'the file was not retrieved');
  // EMFILE comes before the session's own errors.
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, sessionNameArg('')), 'EMFILE');
  expectErr(p, p.ioctl(dev, C.RETRIEVE_SESSION, sessionNameArg('nope')), 'EMFILE');
  assert.equal(p.setrlimit(RLIMIT_NOFILE, { cur: 1024, max: 4096 }), 0);
  assert.ok(luoCreateSession(p, dev, 'never') >= 0, 'the name was never taken');
  assert.ok(luoSessionRetrieveFd(p, inc, 1) >= 0);
  assert.equal(luoSessionFinish(p, inc), 0);
});

test('EMFILE on RETRIEVE_SESSION leaves the session retrievable', () => {
  const { p, luo } = bootWithIncoming();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  p.setrlimit(RLIMIT_NOFILE, { cur: 4, max: 4096 });
  expectErr(p, p.ioctl(dev, C.RETRIEVE_SESSION, sessionNameArg('in')), 'EMFILE');
  assert.equal(luo.sessions.incoming[0]!.retrieved, false);
  p.setrlimit(RLIMIT_NOFILE, { cur: 1024, max: 4096 });
  assert.equal(luoRetrieveSession(p, dev, 'in'), 4);
});

test('dup2 over a session fd releases the session when that was its last reference', () => {
  const { p, luo } = boot();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p, dev, 'replaced');
  const n = p.open('/dev/null', O_RDWR);
  assert.equal(p.dup2(n, s), s);
  assert.equal(luo.sessions.outgoing.length, 0);
  assert.equal(p.fdPath(s), '/dev/null');
});

test('file syscalls: memfds, pipes, /dev/null and LUO files give the VFS errnos', () => {
  const { p } = boot();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p, dev, 'io');
  const mf = p.memfdCreate('io', 0);
  assert.equal(p.write(mf, 'hello'), 5);
  assert.equal(p.lseek(mf, 0, SEEK_END), 5);
  expectErr(p, p.lseek(mf, 0, 5), 'EINVAL');
  expectErr(p, p.pread(mf, new Uint8Array(1), -1), 'EINVAL');
  assert.equal(p.fcntl(mf, F_GET_SEALS), F_SEAL_SEAL);
  expectErr(p, p.fcntl(mf, F_ADD_SEALS, 4), 'EPERM', 'no MFD_ALLOW_SEALING');
  assert.equal(p.fcntl(mf, F_SETFL, O_APPEND), 0);
  p.lseek(mf, 0, SEEK_SET);
  assert.equal(p.write(mf, '!'), 1);
  const b = new Uint8Array(8);
  assert.equal(p.pread(mf, b, 0), 6);
  assert.equal(cString(b), 'hello!', 'O_APPEND writes at the end');
  // Preserved: the mapping is frozen; writes inside work, growing does not.
  assert.equal(luoSessionPreserveFd(p, s, mf, 1), 0);
  assert.equal(p.pwrite(mf, 'J', 0), 1);
  expectErr(p, p.ftruncate(mf, 100), 'EPERM');
  expectErr(p, p.fallocate(mf, 0, 0, 8192), 'EPERM');
  expectErr(p, p.ftruncate(mf, -1), 'EINVAL');
  // Pipes.
  const pfd: number[] = [];
  assert.equal(p.pipe2(pfd, O_CLOEXEC), 0);
  assert.equal(p.fcntl(pfd[0]!, F_GETFD), FD_CLOEXEC);
  expectErr(p, p.read(pfd[0]!, b), 'EAGAIN', 'empty with a writer');
  assert.equal(p.write(pfd[1]!, 'abc'), 3);
  expectErr(p, p.write(pfd[0]!, 'x'), 'EBADF', 'the read end');
  expectErr(p, p.read(pfd[1]!, b), 'EBADF', 'the write end');
  expectErr(p, p.lseek(pfd[0]!, 0, SEEK_SET), 'ESPIPE');
  expectErr(p, p.pread(pfd[0]!, b, 0), 'ESPIPE');
  expectErr(p, p.ftruncate(pfd[1]!, 0), 'EINVAL');
  expectErr(p, p.fallocate(pfd[1]!, 0, 0, 1), 'ESPIPE');
  expectErr(p, p.fcntl(pfd[0]!, F_GET_SEALS), 'EINVAL');
  assert.equal(p.read(pfd[0]!, b), 3);
  p.close(pfd[1]!);
  assert.equal(p.read(pfd[0]!, b), 0, 'EOF once no writer is left');
  const q: number[] = [];
  p.pipe(q);
  p.close(q[0]!);
  expectErr(p, p.write(q[1]!, 'x'), 'EPIPE');
  // /dev/null.
  const n = p.open('/dev/null', O_WRONLY);
  assert.equal(p.write(n, 'gone'), 4);
  expectErr(p, p.read(n, b), 'EBADF');
  assert.equal(p.lseek(n, 123, SEEK_SET), 0);
  expectErr(p, p.fallocate(n, 0, 0, 1), 'ENODEV');
  // The LUO files have no read, write or llseek.
  expectErr(p, p.read(s, b), 'EINVAL');
  expectErr(p, p.write(dev, 'x'), 'EINVAL');
  expectErr(p, p.lseek(s, 0, SEEK_SET), 'ESPIPE');
  // pread/pwrite: a session is an anon inode without FMODE_PREAD (ESPIPE before any access check);
  // the device was opened as a char device and has it (EINVAL: no read); a negative offset first
  expectErr(p, p.pread(s, b, 0), 'ESPIPE');
  expectErr(p, p.pwrite(s, 'x', 0), 'ESPIPE');
  expectErr(p, p.pread(s, b, -1), 'EINVAL');
  expectErr(p, p.pread(dev, b, 0), 'EINVAL');
  const st = p.fstat(mf);
  assert.ok(st !== -1 && st.size === 6 && (st.mode & 0o170000) === 0o100000);
  assert.equal(p.fstat(99), -1);
  assert.equal(p.errno, 'EBADF');
  // stdout is the console.
  p.write(1, 'hello console\n');
  assert.match(processesOf(p.kernel).console, /hello console/);
});

test('processes of a kernel that kexec replaced cannot make syscalls; exited ones neither', () => {
  const { m, p } = boot();
  const q = processesOf(m.kernel).spawn();
  q.exit(3);
  assert.equal(q.exitCode, 3);
  assert.throws(() => q.open('/dev/null'), /has exited/);
  m.kexec();
  assert.throws(() => p.close(0), /kexec has replaced/);
  assert.notEqual(processesOf(m.kernel), processesOf(p.kernel));
});
