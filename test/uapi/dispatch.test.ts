/**
 * The ioctl dispatchers of /dev/liveupdate and session fds (kernel-abi.md §2.2): every check in the
 * kernel's order with crafted commands, sizes and buffers, then a property over random commands,
 * sizes, buffer lengths and trailing bytes against a small reference model of that order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Machine } from '../../src/kernel/machine.ts';
import type { ErrnoName } from '../../src/errno.ts';
import { LIVEUPDATE_IOCTL as C } from '../../src/abi/uapi.ts';
import {
  argFd, FIOCLEX, FIONCLEX, FIONREAD, F_GETFD, fdTokenArg, finishArg, getNameArg, luoCreateSession, luoRetrieveSession, luoSessionPreserveFd,
  O_RDWR, type Process, processesOf, sessionNameArg, VFS_GENERIC_IOCTLS,
} from '../../src/uapi/index.ts';

const enc = (s: string) => new TextEncoder().encode(s);
const u32 = (b: Uint8Array, off = 0) => new DataView(b.buffer, b.byteOffset).getUint32(off, true);

/** One process on a kernel that has an incoming session "in" (token 1: "payload") and an outgoing one. */
function world() {
  const m = new Machine({ ramSize: 1n << 30n });
  const p1 = processesOf(m.kernel).spawn();
  const l1 = p1.open('/dev/liveupdate', O_RDWR);
  const s = luoCreateSession(p1, l1, 'in');
  const mf = p1.memfdCreate('payload', 0);
  p1.write(mf, enc('payload'));
  assert.equal(luoSessionPreserveFd(p1, s, mf, 1), 0);
  p1.fork(); // the holder
  p1.exit(0);
  const k = m.kexec();
  const p = processesOf(k).spawn();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  const inc = luoRetrieveSession(p, dev, 'in');
  const out = luoCreateSession(p, dev, 'out');
  assert.deepEqual([dev, inc, out], [3, 4, 5]);
  return { m, k, p, dev, inc, out };
}

function expectErr(p: Process, r: number, errno: ErrnoName, msg?: string): void {
  assert.equal(r, -1, msg);
  assert.equal(p.errno, errno, msg);
}

test('check 1: an nr outside the table is EINVAL before the argument is even read', () => {
  const { p, dev, inc, out } = world();
  expectErr(p, p.ioctl(dev, 0xba07, undefined), 'EINVAL');
  expectErr(p, p.ioctl(dev, C.SESSION_PRESERVE_FD, undefined), 'EINVAL', 'a session ioctl on the device');
  expectErr(p, p.ioctl(out, C.CREATE_SESSION, undefined), 'EINVAL', 'a device ioctl on a session');
  expectErr(p, p.ioctl(inc, 0xba44, undefined), 'EINVAL', 'mm-only RETRIEVE_INTO_FD is not in mainline');
  expectErr(p, p.ioctl(out, 0xba3f, new Uint8Array(16)), 'EINVAL');
  // Only _IOC_NR matters here: any type and direction bits with nr 0x07 give EINVAL too.
  expectErr(p, p.ioctl(dev, 0xc0481207, undefined), 'EINVAL');
});

test('check 2: the u32 size is read next (EFAULT for a bad pointer or fewer than 4 bytes)', () => {
  const { p, dev, inc } = world();
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, undefined), 'EFAULT');
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, new Uint8Array(3)), 'EFAULT');
  // EFAULT wins over a command mismatch (ENOTTY) and over the direction check.
  expectErr(p, p.ioctl(dev, 0xc048ba00, new Uint8Array(2)), 'EFAULT');
  expectErr(p, p.ioctl(inc, C.SESSION_PRESERVE_FD, undefined), 'EFAULT');
});

test('check 3: a full command that is not the table entry is ENOTTY (ENOIOCTLCMD)', () => {
  const { p, dev, inc, out } = world();
  // _IOWR(0xBA, 0, 72) has nr 0 but is not _IO(0xBA, 0).
  expectErr(p, p.ioctl(dev, 0xc048ba00, sessionNameArg('x')), 'ENOTTY');
  expectErr(p, p.ioctl(dev, 0x0001, sessionNameArg('x')), 'ENOTTY', 'type 0 with nr 1');
  // Before the direction check: RETRIEVE_FD's nr with other bits on an outgoing session.
  expectErr(p, p.ioctl(out, 0x4000ba41, fdTokenArg(0, 1)), 'ENOTTY');
  expectErr(p, p.ioctl(inc, 0xbb43, getNameArg()), 'ENOTTY');
});

test('check 4: the session direction (newest mainline), before the size and the copy', () => {
  const { p, inc, out } = world();
  expectErr(p, p.ioctl(out, C.SESSION_RETRIEVE_FD, fdTokenArg(0, 1)), 'EINVAL');
  expectErr(p, p.ioctl(out, C.SESSION_FINISH, finishArg()), 'EINVAL');
  expectErr(p, p.ioctl(inc, C.SESSION_PRESERVE_FD, fdTokenArg(0, 99)), 'EINVAL');
  // Before the copy: a nonzero tail (E2BIG elsewhere) or a short buffer (EFAULT elsewhere).
  const big = new Uint8Array(24);
  big.set(fdTokenArg(0, 1, 24));
  big[20] = 1;
  expectErr(p, p.ioctl(out, C.SESSION_RETRIEVE_FD, big), 'EINVAL');
  expectErr(p, p.ioctl(inc, C.SESSION_RETRIEVE_FD, big), 'E2BIG', 'the same buffer on an incoming session');
  expectErr(p, p.ioctl(out, C.SESSION_FINISH, finishArg().subarray(0, 4)), 'EINVAL');
  expectErr(p, p.ioctl(inc, C.SESSION_FINISH, finishArg().subarray(0, 4)), 'EFAULT');
  // GET_NAME applies to both.
  assert.equal(p.ioctl(out, C.SESSION_GET_NAME, getNameArg()), 0);
  assert.equal(p.ioctl(inc, C.SESSION_GET_NAME, getNameArg()), 0);
});

test('check 5: a size below the minimum is EINVAL, even when the buffer is shorter still', () => {
  const { p, dev, inc } = world();
  for (const [fd, cmd, min] of [[dev, C.CREATE_SESSION, 72], [dev, C.RETRIEVE_SESSION, 72], [inc, C.SESSION_RETRIEVE_FD, 16], [inc, C.SESSION_FINISH, 8], [inc, C.SESSION_GET_NAME, 72]] as const) {
    for (const size of [0, 4, min - 1]) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, size, true);
      expectErr(p, p.ioctl(fd, cmd, b), 'EINVAL', `cmd 0x${cmd.toString(16)} size ${size}`);
    }
  }
});

test('check 6: copy_struct_from_user: a zero tail is accepted, a nonzero one is E2BIG, a missing one EFAULT', () => {
  const { p, dev } = world();
  const arg = (name: string, size: number, len: number) => {
    const b = new Uint8Array(len);
    b.set(sessionNameArg(name, size).subarray(0, Math.min(72, len)));
    return b;
  };
  // size = 80 with a zero tail: accepted; the reply writes 72 bytes and leaves the tail alone.
  let b = arg('tail-zero', 80, 88);
  b.fill(0xee, 80);
  assert.equal(p.ioctl(dev, C.CREATE_SESSION, b), 0);
  assert.ok(argFd(b) > 0);
  assert.deepEqual([...b.subarray(72, 80)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...b.subarray(80)], new Array(8).fill(0xee), 'bytes past size are never touched');
  // A nonzero byte anywhere in [72, size): E2BIG.
  b = arg('tail-nonzero', 80, 80);
  b[79] = 1;
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, b), 'E2BIG');
  // size beyond the buffer: EFAULT unless a nonzero byte comes first.
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, arg('short', 80, 76)), 'EFAULT');
  b = arg('short-nonzero', 80, 76);
  b[73] = 7;
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, b), 'E2BIG');
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, arg('short-struct', 72, 40)), 'EFAULT');
  expectErr(p, p.ioctl(dev, C.CREATE_SESSION, arg('huge', 0xffffffff, 100)), 'EFAULT', 'a 4 GiB size with a zero tail runs off the buffer');
  assert.deepEqual(p.kernel.luo!.sessions.outgoing.map((s) => s.name), ['out', 'tail-zero'], 'no failed create left a session');
});

test('the reply echoes the kernel copy: input fields and the out fd; GET_NAME keeps the bytes after the NUL', () => {
  const { p, dev, inc, out } = world();
  const a = sessionNameArg('echo');
  a.fill(0x55, 4, 8); // fd field: garbage in, fd out
  assert.equal(p.ioctl(dev, C.CREATE_SESSION, a), 0);
  assert.equal(argFd(a), 6);
  assert.deepEqual(a.subarray(8, 13), enc('echo\0'));
  assert.equal(u32(a), 72);
  const g = getNameArg();
  g.fill(0x78, 8);
  assert.equal(p.ioctl(out, C.SESSION_GET_NAME, g), 0);
  assert.deepEqual(g.subarray(8, 12), enc('out\0'));
  assert.ok(g.subarray(12).every((x) => x === 0x78), 'strscpy does not pad: the rest is the caller\'s bytes');
  expectErr(p, p.ioctl(inc, C.SESSION_GET_NAME, getNameArg(72, 1)), 'EINVAL', 'reserved must be 0');
  const f = finishArg();
  new DataView(f.buffer).setUint32(4, 0xdeadbeef, true);
  expectErr(p, p.ioctl(inc, C.SESSION_FINISH, f), 'EINVAL', 'FINISH: reserved must be 0 (luo_session.c, 7.3.4)');
  assert.equal(u32(f, 4), 0xdeadbeef, 'nothing copied back');
});

test('the VFS around the dispatchers: EBADF, ENOTTY for other files, the generic commands first', () => {
  const { p, dev, out } = world();
  expectErr(p, p.ioctl(99, C.CREATE_SESSION, sessionNameArg('x')), 'EBADF');
  const mfd = p.memfdCreate('m', 0);
  const nul = p.open('/dev/null', O_RDWR);
  const pfd: number[] = [];
  p.pipe(pfd);
  for (const fd of [mfd, nul, pfd[0]!, 0]) expectErr(p, p.ioctl(fd, C.CREATE_SESSION, sessionNameArg('x')), 'ENOTTY', `fd ${fd}`);
  // FIONCLEX/FIOCLEX never reach LUO.
  assert.equal(p.ioctl(out, FIONCLEX, undefined), 0);
  assert.equal(p.fcntl(out, F_GETFD), 0);
  assert.equal(p.ioctl(out, FIOCLEX, undefined), 0);
  assert.equal(p.fcntl(out, F_GETFD), 1);
  // FIONREAD is generic only for regular files; on a session or the device it reaches LUO (nr 0x1b: EINVAL).
  p.write(mfd, enc('12345'));
  p.lseek(mfd, 2, 0);
  const n = new Uint8Array(4);
  assert.equal(p.ioctl(mfd, FIONREAD, n), 0);
  assert.equal(u32(n), 3);
  expectErr(p, p.ioctl(out, FIONREAD, n), 'EINVAL');
  expectErr(p, p.ioctl(dev, FIONREAD, n), 'EINVAL');
  p.write(pfd[1]!, enc('abc'));
  assert.equal(p.ioctl(pfd[0]!, FIONREAD, n), 0);
  assert.equal(u32(n), 3);
});

// ---------------------------------------------------------------- the property

type Target = 'device' | 'outgoing' | 'incoming';
interface ModelOp {
  readonly cmd: number;
  readonly ksize: number;
  readonly min: number;
  readonly dir: 'all' | 'incoming' | 'outgoing';
}
/** The spec's tables (§2.3), written out independently of src/uapi. */
const DEVICE_TABLE: readonly ModelOp[] = [
  { cmd: 0xba00, ksize: 72, min: 72, dir: 'all' },
  { cmd: 0xba01, ksize: 72, min: 72, dir: 'all' },
];
const SESSION_TABLE: readonly ModelOp[] = [
  { cmd: 0xba40, ksize: 16, min: 16, dir: 'outgoing' },
  { cmd: 0xba41, ksize: 16, min: 16, dir: 'incoming' },
  { cmd: 0xba42, ksize: 8, min: 8, dir: 'incoming' },
  { cmd: 0xba43, ksize: 72, min: 72, dir: 'all' },
];

/** §2.2's order: the errno a dispatcher gives, or the op that runs. */
function model(target: Target, cmd: number, buf: Uint8Array | undefined): { errno: ErrnoName } | { op: ModelOp } {
  const table = target === 'device' ? DEVICE_TABLE : SESSION_TABLE;
  const base = target === 'device' ? 0 : 0x40;
  const nr = cmd & 0xff;
  if (nr < base || nr - base >= table.length) return { errno: 'EINVAL' };
  if (!buf || buf.length < 4) return { errno: 'EFAULT' };
  const usize = u32(buf);
  const op = table[nr - base]!;
  if (op.cmd !== cmd) return { errno: 'ENOTTY' };
  if (target !== 'device' && op.dir !== 'all' && op.dir !== target) return { errno: 'EINVAL' };
  if (usize < op.min) return { errno: 'EINVAL' };
  for (let i = op.ksize; i < usize; i++) {
    if (i >= buf.length) return { errno: 'EFAULT' };
    if (buf[i] !== 0) return { errno: 'E2BIG' };
  }
  if (buf.length < Math.min(usize, op.ksize)) return { errno: 'EFAULT' };
  return { op };
}

const KNOWN = [0xba00, 0xba01, 0xba40, 0xba41, 0xba42, 0xba43];
const cmdArb = fc
  .oneof(
    { arbitrary: fc.constantFrom(...KNOWN), weight: 6 },
    fc.integer({ min: 0, max: 255 }).map((nr) => 0xba00 | nr),
    fc.tuple(fc.constantFrom(0x00, 0x01, 0x40, 0x41, 0x42, 0x43, 0x44, 0x07), fc.integer({ min: 0, max: 0xffffff })).map(([nr, hi]) => ((hi << 8) | nr) >>> 0),
    fc.integer({ min: 0, max: 0xffffffff }),
  )
  .filter((c) => !VFS_GENERIC_IOCTLS.includes(c));
const sizeArb = fc.oneof(
  fc.constantFrom(0, 3, 4, 7, 8, 9, 15, 16, 17, 24, 71, 72, 73, 80, 4096, 0xffffffff),
  fc.integer({ min: 0, max: 200 }),
);
const bufArb = fc.record({
  size: sizeArb,
  len: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 160 })),
  tail: fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 255 })), { maxLength: 160 }),
  target: fc.constantFrom<Target>('device', 'outgoing', 'incoming'),
  /** Well-formed: size = sizeof (+ 0, 8 or 16 tail bytes) and a buffer that holds it. */
  exact: fc.boolean(),
  extra: fc.integer({ min: 0, max: 2 }),
});

test('property: random commands, sizes, buffer lengths and trailing bytes follow the reference order', () => {
  const { p, dev, inc, out } = world();
  const fdOf = { device: dev, incoming: inc, outgoing: out };
  let serial = 0;
  let finished = false;
  let runs = 0;
  fc.assert(
    fc.property(cmdArb, bufArb, (cmd, { size: rsize, len: rlen, tail, target, exact, extra }) => {
      serial++;
      // A valid body for whichever op the nr selects, then the random tail after the struct.
      const table = target === 'device' ? DEVICE_TABLE : SESSION_TABLE;
      const op = table[(cmd & 0xff) - (target === 'device' ? 0 : 0x40)];
      const size = exact && op ? op.ksize + 8 * extra : rsize;
      const len = exact && op ? Math.max(rlen, size) : rlen;
      const memfd = op?.cmd === 0xba40 ? p.memfdCreate(`m${serial}`, 0) : -1;
      let body: Uint8Array;
      switch (op?.cmd) {
        case 0xba00: body = sessionNameArg(`prop-${serial}`); break;
        case 0xba01: body = sessionNameArg('no-such-session'); break;
        case 0xba40: body = fdTokenArg(memfd, 1000 + serial); break;
        case 0xba41: body = fdTokenArg(0, 1); break;
        case 0xba42: body = finishArg(); break;
        default: body = getNameArg();
      }
      const buf = len < 0 ? undefined : new Uint8Array(len);
      if (buf) {
        buf.set(body.subarray(0, Math.min(len, body.length)));
        for (let i = body.length; i < len; i++) buf[i] = tail[i - body.length] ?? 0;
        if (len >= 4) new DataView(buf.buffer).setUint32(0, size >>> 0, true);
      }
      const before = buf?.slice();
      const want = model(target, cmd >>> 0, buf);
      const r = p.ioctl(fdOf[target], cmd, buf);
      if (memfd >= 0) p.close(memfd);
      if ('errno' in want) {
        assert.equal(r, -1);
        assert.equal(p.errno, want.errno, `cmd 0x${(cmd >>> 0).toString(16)} size ${size} len ${len} ${target}`);
        assert.deepEqual(buf, before, 'a failed ioctl writes nothing back');
        return;
      }
      runs++;
      const o = want.op;
      const reply = Math.min(u32(buf!), o.ksize);
      assert.deepEqual(buf!.subarray(reply), before!.subarray(reply), 'nothing past min(size, sizeof) is written');
      switch (o.cmd) {
        case 0xba00:
          assert.equal(r, 0);
          assert.ok(argFd(buf!) > 5);
          assert.equal(p.fdPath(argFd(buf!)), `anon_inode:[luo_session] prop-${serial}`);
          p.close(argFd(buf!));
          break;
        case 0xba01:
          assert.equal(p.errno, 'ENOENT');
          break;
        case 0xba40:
          assert.equal(r, 0);
          break;
        case 0xba41:
          if (finished) {
            assert.equal(r, -1);
            assert.equal(p.errno, 'ENOENT');
          } else {
            assert.equal(r, 0);
            assert.ok(argFd(buf!) > 5);
            p.close(argFd(buf!));
          }
          break;
        case 0xba42:
          assert.equal(r, 0);
          finished = true;
          break;
        case 0xba43:
          assert.equal(r, 0);
          {
            const name = target === 'incoming' ? 'in' : 'out';
            assert.deepEqual(buf!.subarray(8, 9 + name.length), enc(`${name}\0`));
          }
          break;
      }
    }),
    { numRuns: 3000 },
  );
  assert.ok(runs > 120, `only ${runs} runs reached an op`);
  assert.deepEqual(p.openFds(), [0, 1, 2, dev, inc, out], 'no fd leaked');
});

test('PRESERVE_FD resolves its fd inside LUO: a used token (EEXIST) wins over a bad fd (EBADF), which wins over no handler', () => {
  const { p, out } = world();
  const mf = p.memfdCreate('m', 0);
  assert.equal(p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(mf, 1)), 0);
  expectErr(p, p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(4242, 1)), 'EEXIST');
  expectErr(p, p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(-1, 2)), 'EBADF');
  expectErr(p, p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(4242, 2)), 'EBADF');
  expectErr(p, p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(out, 2)), 'ENOENT', 'a session fd has no handler');
  expectErr(p, p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(mf, 2)), 'EBUSY');
  // Tokens are full u64 values.
  const m2 = p.memfdCreate('m2', 0);
  assert.equal(p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(m2, 0xffffffffffffffffn)), 0);
  expectErr(p, p.ioctl(out, C.SESSION_PRESERVE_FD, fdTokenArg(mf, -1n)), 'EEXIST', 'the same u64 token');
});
