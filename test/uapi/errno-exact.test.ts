/**
 * Where a real 7.3.4 answered differently from luo under random testing (issue 10), in process:
 * each case is also run through the LD_PRELOAD shim by native/conformance (lu_uapi, lu_kexec errno).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import type { ErrnoName } from '../../src/errno.ts';
import { F_SEAL_EXEC, F_SEAL_FUTURE_WRITE, F_SEAL_WRITE, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL } from '../../src/handlers/memfd-file.ts';
import {
  argFd, F_ADD_SEALS, fdTokenArg, FIGETBSZ, FIOASYNC, FIOQSIZE, FIONREAD, finishArg, luoCreateSession, luoRetrieveSession, luoSessionFinish,
  luoSessionPreserveFd, luoSessionRetrieveFd, O_RDWR, type Process, processesOf, sessionNameArg,
} from '../../src/uapi/index.ts';
import { LIVEUPDATE_IOCTL as C } from '../../src/abi/uapi.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const PAGE = 4096;

function expectErr(p: Process, r: number, errno: ErrnoName, msg?: string): void {
  assert.equal(r, -1, msg);
  assert.equal(p.errno, errno, msg);
}

function fresh() {
  const m = new Machine({ ramSize: 1n << 30n });
  const p = processesOf(m.kernel).spawn();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  assert.ok(dev >= 0);
  return { m, p, dev };
}

test('3. the VFS answers FIOQSIZE (ENOTTY), FIGETBSZ (4096) and FIOASYNC (ENOTTY: no fasync) before LUO', () => {
  const { p, dev } = fresh();
  const s = luoCreateSession(p, dev, 'vfs');
  for (const fd of [dev, s]) {
    const q = new Uint8Array(8).fill(0xee);
    expectErr(p, p.ioctl(fd, FIOQSIZE, q), 'ENOTTY');
    assert.deepEqual([...q], new Array(8).fill(0xee), 'nothing written');
    const b = new Uint8Array(4);
    assert.equal(p.ioctl(fd, FIGETBSZ, b), 0);
    assert.equal(new DataView(b.buffer).getInt32(0, true), 4096);
    expectErr(p, p.ioctl(fd, FIGETBSZ, undefined), 'EFAULT');
    expectErr(p, p.ioctl(fd, FIOASYNC, Uint8Array.of(1, 0, 0, 0)), 'ENOTTY');
    assert.equal(p.ioctl(fd, FIOASYNC, new Uint8Array(4)), 0, 'no change of FASYNC: 0');
    expectErr(p, p.ioctl(fd, FIOASYNC, undefined), 'EFAULT');
    expectErr(p, p.ioctl(fd, FIONREAD, new Uint8Array(4)), 'EINVAL', 'FIONREAD reaches LUO');
  }
  // a memfd is a regular shmem file: FIOQSIZE is its allocated bytes; a pipe has fasync
  const mfd = p.memfdCreate('m', 0);
  p.ftruncate(mfd, 3 * PAGE);
  p.pwrite(mfd, 'x', PAGE);
  const q = new Uint8Array(8);
  assert.equal(p.ioctl(mfd, FIOQSIZE, q), 0);
  assert.equal(new DataView(q.buffer).getBigInt64(0, true), 4096n);
  expectErr(p, p.ioctl(mfd, FIOASYNC, Uint8Array.of(1, 0, 0, 0)), 'ENOTTY');
  const pfd: number[] = [];
  p.pipe(pfd);
  assert.equal(p.ioctl(pfd[0]!, FIOASYNC, Uint8Array.of(1, 0, 0, 0)), 0);
  assert.ok(p.fcntl(pfd[0]!, 3) & 0o20000, 'FASYNC shows in F_GETFL');
});

test('4. PRESERVE_FD allocates every hole: st_blocks covers the size, before and after the kexec', () => {
  const { m, p, dev } = fresh();
  const s = luoCreateSession(p, dev, 'blocks');
  const mfd = p.memfdCreate('holes', 0);
  p.ftruncate(mfd, 10 * PAGE + 100);
  p.pwrite(mfd, 'three', 3 * PAGE);
  assert.equal((p.fstat(mfd) as { blocks: number }).blocks, 8);
  assert.equal(luoSessionPreserveFd(p, s, mfd, 1), 0);
  assert.equal((p.fstat(mfd) as { blocks: number }).blocks, 88);
  p.fork();
  p.exit(0);
  const k = m.kexec();
  const p2 = processesOf(k).spawn();
  const dev2 = p2.open('/dev/liveupdate', O_RDWR);
  const inc = luoRetrieveSession(p2, dev2, 'blocks');
  const r = luoSessionRetrieveFd(p2, inc, 1);
  assert.ok(r >= 0);
  assert.deepEqual(p2.fstat(r), { mode: 0o100777, size: 10 * PAGE + 100, blocks: 88 });
});

test('5. F_SEAL_WRITE, or F_SEAL_EXEC implying it on an exec-mode memfd, is EBUSY on pinned pages', () => {
  const { p, dev } = fresh();
  const s = luoCreateSession(p, dev, 'seals');
  const [a, b, z, n] = [p.memfdCreate('a', MFD_ALLOW_SEALING), p.memfdCreate('b', MFD_ALLOW_SEALING), p.memfdCreate('z', MFD_ALLOW_SEALING), p.memfdCreate('n', MFD_NOEXEC_SEAL)];
  for (const fd of [a!, b!, n!]) p.ftruncate(fd, PAGE);
  [a, b, z, n].forEach((fd, i) => assert.equal(luoSessionPreserveFd(p, s, fd!, i + 1), 0));
  expectErr(p, p.fcntl(a!, F_ADD_SEALS, F_SEAL_WRITE), 'EBUSY');
  expectErr(p, p.fcntl(b!, F_ADD_SEALS, F_SEAL_EXEC), 'EBUSY', 'F_SEAL_EXEC implies F_SEAL_WRITE before the pin check');
  expectErr(p, p.fcntl(a!, F_ADD_SEALS, 0x4000), 'EINVAL');
  assert.equal(p.fcntl(a!, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);
  assert.equal(p.fcntl(z!, F_ADD_SEALS, F_SEAL_WRITE), 0, 'an empty memfd pins nothing');
  assert.equal(p.fcntl(n!, F_ADD_SEALS, F_SEAL_EXEC), 0, 'no exec bits: nothing implied');
  p.close(s);
  assert.equal(p.fcntl(a!, F_ADD_SEALS, F_SEAL_WRITE), 0, 'unpinned after unpreserve');
});

test('6. a zero-length write at or past the frozen size returns 0', () => {
  const { p, dev } = fresh();
  const s = luoCreateSession(p, dev, 'zero');
  const mfd = p.memfdCreate('z', 0);
  p.ftruncate(mfd, PAGE);
  assert.equal(luoSessionPreserveFd(p, s, mfd, 1), 0);
  assert.equal(p.pwrite(mfd, new Uint8Array(0), PAGE), 0);
  assert.equal(p.pwrite(mfd, new Uint8Array(0), 10 * PAGE), 0);
  expectErr(p, p.pwrite(mfd, 'x', 10 * PAGE), 'EPERM');
});

test('7. PRESERVE_FD whose reply faults: EFAULT, and the file stays preserved, frozen and handed over', () => {
  const { m, p, dev } = fresh();
  const s = luoCreateSession(p, dev, 'faulted');
  const mfd = p.memfdCreate('m', 0);
  p.ftruncate(mfd, PAGE);
  const arg = fdTokenArg(mfd, 7);
  expectErr(p, p.ioctl(s, C.SESSION_PRESERVE_FD, { bytes: arg, readOnly: true }), 'EFAULT');
  expectErr(p, p.pwrite(mfd, 'grow', PAGE), 'EPERM', 'frozen');
  expectErr(p, p.fallocate(mfd, 0, 0, PAGE), 'EPERM', 'fallocate inside the size of a frozen memfd (8)');
  assert.equal(p.pwrite(mfd, 'after', 0), 5);
  assert.equal(luoSessionPreserveFd(p, s, mfd, 8), -16, 'EBUSY: already preserved');
  p.fork();
  p.exit(0);
  const p2 = processesOf(m.kexec()).spawn();
  const inc = luoRetrieveSession(p2, p2.open('/dev/liveupdate', O_RDWR), 'faulted');
  const r = luoSessionRetrieveFd(p2, inc, 7);
  assert.ok(r >= 0);
  const buf = new Uint8Array(5);
  p2.pread(r, buf, 0);
  assert.equal(new TextDecoder().decode(buf), 'after');
});

test('8. CREATE_SESSION with a 64 KiB + 8 zero-tailed struct succeeds; a nonzero tail byte is E2BIG', () => {
  const { p, dev } = fresh();
  const big = (64 << 10) + 8;
  const a = new Uint8Array(big);
  a.set(sessionNameArg('huge', big));
  assert.equal(p.ioctl(dev, C.CREATE_SESSION, a), 0);
  assert.ok(argFd(a) >= 0);
  const b = new Uint8Array(big);
  b.set(sessionNameArg('huge-2', big));
  b[big - 1] = 1;
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, b), 'E2BIG');
  // as the daemon receives it from a client that scanned the tail itself (protocol 4.3)
  const c = new Uint8Array(65536);
  c.set(sessionNameArg('huge-3', 1 << 20));
  assert.equal(p.ioctl(dev, C.CREATE_SESSION, { bytes: c, tail: { kind: 'zero', end: 1 << 20 } }), 0);
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, { bytes: c, tail: { kind: 'zero', end: 100_000 } }), 'EFAULT');
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, { bytes: c, tail: { kind: 'nonzero' } }), 'E2BIG');
});

test('1, 2. a retrieved file is LUO\'s until FINISH (EBUSY); FINISH with reserved != 0 is EINVAL and finishes nothing', () => {
  const { m, p, dev } = fresh();
  const s = luoCreateSession(p, dev, 'in');
  const mfd = p.memfdCreate('payload', 0);
  p.write(mfd, enc('payload'));
  assert.equal(luoSessionPreserveFd(p, s, mfd, 1), 0);
  p.fork();
  p.exit(0);
  const p2 = processesOf(m.kexec()).spawn();
  const dev2 = p2.open('/dev/liveupdate', O_RDWR);
  const inc = luoRetrieveSession(p2, dev2, 'in');
  const fin = finishArg();
  new DataView(fin.buffer).setUint32(4, 1, true);
  expectErr(p2, p2.ioctl(inc, C.SESSION_FINISH, fin), 'EINVAL');
  const r = luoSessionRetrieveFd(p2, inc, 1);
  assert.ok(r >= 0, 'not finished: the file can still be retrieved');
  const out = luoCreateSession(p2, dev2, 'out');
  assert.equal(luoSessionPreserveFd(p2, out, r, 1), -16, 'EBUSY before FINISH');
  assert.equal(luoSessionFinish(p2, inc), 0);
  assert.equal(luoSessionPreserveFd(p2, out, r, 1), 0, 'after FINISH');
});

test('found by the two-path property: ftruncate to the same size drops folios fallocated past EOF (shmem_setattr)', () => {
  const { p } = fresh();
  const mfd = p.memfdCreate('k', 0);
  assert.equal(p.fallocate(mfd, 1 /* FALLOC_FL_KEEP_SIZE */, 0, 2 * PAGE), 0);
  assert.deepEqual(p.fstat(mfd), { mode: 0o100777, size: 0, blocks: 16 });
  assert.equal(p.ftruncate(mfd, 0), 0);
  assert.deepEqual(p.fstat(mfd), { mode: 0o100777, size: 0, blocks: 0 });
});
