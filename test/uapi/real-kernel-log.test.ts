/**
 * The real 7.3.4 run of luoprobe (fixtures/real-kernel/tools/luoprobe.c) replayed against luo's
 * processes and ioctls: uapi, stage 1, kexec_file_load + kexec, stage 2. Every `UAPI` and `FILE`
 * line the real kernel's serial console shows must come out the same, errno for errno.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Machine } from '../../src/kernel/machine.ts';
import { ERRNO } from '../../src/errno.ts';
import { LIVEUPDATE_IOCTL } from '../../src/abi/uapi.ts';
import { F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL, SEEK_CUR, SEEK_SET } from '../../src/handlers/memfd-file.ts';
import { argFd, F_ADD_SEALS, F_GET_SEALS, fdTokenArg, finishArg, getNameArg, O_RDWR, type Process, processesOf } from '../../src/uapi/index.ts';

const LOG = readFileSync(new URL('../fixtures/real-kernel/logs/fixtures-serial.log', import.meta.url), 'latin1');
const REAL = LOG.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.startsWith('UAPI ') || l.startsWith('FILE '));
const PG = 4096;
const enc = (s: string) => new TextEncoder().encode(s);

/** luoprobe.c, line for line, on a luo Process. */
class Probe {
  constructor(readonly p: Process, readonly out: string[]) {}

  res(what: string, r: number): void {
    const e = this.p.errno;
    this.out.push(r < 0 ? `UAPI ${what.padEnd(44)} ret=${r} errno=${e ? ERRNO[e] : 0}(${e})` : `UAPI ${what.padEnd(44)} ret=${r}`);
  }

  nameArg(name: string | Uint8Array, size = 72, total = 72): Uint8Array {
    const a = new Uint8Array(total);
    new DataView(a.buffer).setUint32(0, size, true);
    a.set(typeof name === 'string' ? enc(name).subarray(0, 64) : name, 8);
    return a;
  }
  createSession(luo: number, name: string): number {
    const a = this.nameArg(name);
    return this.p.ioctl(luo, LIVEUPDATE_IOCTL.CREATE_SESSION, a) < 0 ? -1 : argFd(a);
  }
  retrieveSession(luo: number, name: string): number {
    const a = this.nameArg(name);
    return this.p.ioctl(luo, LIVEUPDATE_IOCTL.RETRIEVE_SESSION, a) < 0 ? -1 : argFd(a);
  }
  preserveFd(s: number, fd: number, token: number): number {
    return this.p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, fdTokenArg(fd, token));
  }
  retrieveFd(s: number, token: number): number {
    const a = fdTokenArg(0, token);
    return this.p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD, a) < 0 ? -1 : argFd(a);
  }
  finish(s: number): number {
    return this.p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_FINISH, finishArg());
  }
  getName(s: number): { r: number; name: string } {
    const a = getNameArg();
    const r = this.p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_GET_NAME, a);
    const n = a.subarray(8);
    return { r, name: String.fromCharCode(...n.subarray(0, n.indexOf(0) < 0 ? 64 : n.indexOf(0))) };
  }

  describeFd(tag: string, fd: number): void {
    const p = this.p;
    const st = p.fstat(fd);
    assert.notEqual(st, -1);
    const n = st === -1 ? 0 : st.size;
    const pos = p.lseek(fd, 0, SEEK_CUR);
    const seals = p.fcntl(fd, F_GET_SEALS);
    const buf = new Uint8Array(n || 1);
    const got = p.pread(fd, buf.subarray(0, n), 0);
    let h = 0xcbf29ce484222325n;
    for (let i = 0; i < n; i++) h = ((h ^ BigInt(buf[i]!)) * 0x100000001b3n) & 0xffffffffffffffffn;
    let head = '';
    for (let i = 0; i < n && i < 24; i++) head += buf[i]! >= 32 && buf[i]! < 127 ? String.fromCharCode(buf[i]!) : '.';
    this.out.push(`FILE ${tag} size=${n} pos=${pos} seals=0x${seals.toString(16)} read=${got} fnv1a64=${h.toString(16).padStart(16, '0')} head="${head}"`);
    let pages = `FILE ${tag} pages:`;
    for (let off = 0; off < n; off += PG) pages += ` [${off / PG}]=0x${buf[off]!.toString(16).padStart(2, '0')}`;
    this.out.push(pages);
  }

  cmdUapi(): void {
    const p = this.p;
    const luo = p.open('/dev/liveupdate', O_RDWR);
    assert.equal(luo, 3);
    let r = p.open('/dev/liveupdate', O_RDWR);
    this.res('second open(/dev/liveupdate)', r);
    if (r >= 0) p.close(r);
    r = this.retrieveSession(luo, 'does-not-exist');
    this.res('RETRIEVE_SESSION nonexistent', r);
    let s = this.createSession(luo, 'uapi-s1');
    this.res('CREATE_SESSION uapi-s1', s);
    r = this.createSession(luo, 'uapi-s1');
    this.res('CREATE_SESSION duplicate uapi-s1', r);
    r = this.createSession(luo, '');
    this.res('CREATE_SESSION empty name', r);
    if (r >= 0) p.close(r);
    {
      const a = this.nameArg(new Uint8Array(64).fill(0x78)); // no NUL terminator
      r = p.ioctl(luo, LIVEUPDATE_IOCTL.CREATE_SESSION, a);
      this.res('CREATE_SESSION 64-byte unterminated name', r < 0 ? r : argFd(a));
      if (r >= 0) p.close(argFd(a));
    }
    {
      const a = this.nameArg('short-size', 4);
      r = p.ioctl(luo, LIVEUPDATE_IOCTL.CREATE_SESSION, a);
      this.res('CREATE_SESSION size=4', r < 0 ? r : argFd(a));
      if (r >= 0) p.close(argFd(a));
    }
    {
      let big = this.nameArg('big-size-zero-tail', 80, 80);
      r = p.ioctl(luo, LIVEUPDATE_IOCTL.CREATE_SESSION, big);
      this.res('CREATE_SESSION size=sizeof+8 zero tail', r < 0 ? r : argFd(big));
      if (r >= 0) p.close(argFd(big));
      big = this.nameArg('big-size-nonzero-tail', 80, 80);
      big[72] = 1; // extra = 1 (little-endian u64)
      r = p.ioctl(luo, LIVEUPDATE_IOCTL.CREATE_SESSION, big);
      this.res('CREATE_SESSION size=sizeof+8 nonzero tail', r < 0 ? r : argFd(big));
      if (r >= 0) p.close(argFd(big));
    }
    const name = new Uint8Array(64).fill(0xa5); // an uninitialized char[64] on the stack
    r = p.ioctl(luo, 0xba07, name);
    this.res('unknown ioctl nr 0x07 on /dev/liveupdate', r);
    let g = this.getName(s);
    this.res('SESSION_GET_NAME', g.r);
    if (g.r === 0) this.out.push(`UAPI   name="${g.name}"`);
    const m = p.memfdCreate('u', 0);
    p.write(m, enc('x'));
    this.res('PRESERVE_FD memfd token=7', this.preserveFd(s, m, 7));
    this.res('PRESERVE_FD same memfd again token=8', this.preserveFd(s, m, 8));
    const m2 = p.memfdCreate('u2', 0);
    this.res('PRESERVE_FD other memfd duplicate token=7', this.preserveFd(s, m2, 7));
    const pfd: number[] = [];
    p.pipe(pfd);
    this.res('PRESERVE_FD pipe', this.preserveFd(s, pfd[0]!, 9));
    this.res('PRESERVE_FD bad fd', this.preserveFd(s, 12345, 10));
    const h = p.memfdCreate('sealed', MFD_ALLOW_SEALING);
    p.fcntl(h, F_ADD_SEALS, F_SEAL_WRITE);
    this.res('PRESERVE_FD memfd with F_SEAL_WRITE', this.preserveFd(s, h, 11));
    const ne = p.memfdCreate('noexec', MFD_NOEXEC_SEAL);
    this.res('memfd_create MFD_NOEXEC_SEAL', ne);
    if (ne >= 0) this.res('PRESERVE_FD memfd MFD_NOEXEC_SEAL', this.preserveFd(s, ne, 12));
    this.res('RETRIEVE_FD on outgoing session', this.retrieveFd(s, 7));
    this.res('SESSION_FINISH on outgoing session', this.finish(s));
    this.res('unknown ioctl nr 0x47 on session', p.ioctl(s, 0xba47, name));
    p.close(s);
    s = this.createSession(luo, 'uapi-s1');
    this.res('CREATE_SESSION uapi-s1 after close', s);
    this.res('PRESERVE_FD memfd token=7 in new session', this.preserveFd(s, m, 7));
    p.close(s);
    for (const fd of [m, m2, h, pfd[0]!, pfd[1]!]) p.close(fd);
    p.close(luo);
    g = { r: 0, name: '' };
  }

  /** Returns the holder child that keeps the session fds open. */
  cmdStage1(): Process {
    const p = this.p;
    const luo = p.open('/dev/liveupdate', O_RDWR);
    const sa = this.createSession(luo, 'conf-session-a');
    const sb = this.createSession(luo, 'conf-session-b-empty');
    const sc = this.createSession(luo, 'conf-session-c-finish-early');
    assert.ok(sa >= 0 && sb >= 0 && sc >= 0);
    const m4 = p.memfdCreate('conf-early', 0);
    p.write(m4, enc('finish-early'));
    this.res('PRESERVE_FD early token=0x4D', this.preserveFd(sc, m4, 0x4d));
    const m1 = p.memfdCreate('conf-hello', 0);
    p.write(m1, enc('hello kexec world'));
    const m2 = p.memfdCreate('conf-pages', MFD_ALLOW_SEALING);
    p.pwrite(m2, new Uint8Array(PG).fill(0x41), 0);
    p.pwrite(m2, new Uint8Array(PG).fill(0x43), 2 * PG);
    assert.equal(p.fallocate(m2, 0, 3 * PG, PG), 0);
    p.lseek(m2, 100, SEEK_SET);
    assert.equal(p.fcntl(m2, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK), 0);
    const m3 = p.memfdCreate('conf-empty', 0);
    this.describeFd('stage1/hello', m1);
    this.describeFd('stage1/pages', m2);
    this.describeFd('stage1/empty', m3);
    this.res('PRESERVE_FD hello token=0x1A', this.preserveFd(sa, m1, 0x1a));
    this.res('PRESERVE_FD pages token=0x2B', this.preserveFd(sa, m2, 0x2b));
    this.res('PRESERVE_FD empty token=0x3C', this.preserveFd(sa, m3, 0x3c));
    p.lseek(m1, 5, SEEK_SET); // captured at freeze time
    p.close(luo);
    const pfd: number[] = [];
    p.pipe(pfd);
    const child = p.fork();
    child.close(pfd[0]!);
    child.write(pfd[1]!, enc('k'));
    child.close(pfd[1]!);
    p.close(pfd[1]!);
    const c = new Uint8Array(1);
    assert.equal(p.read(pfd[0]!, c), 1);
    return child;
  }

  cmdStage2(): void {
    const p = this.p;
    const luo = p.open('/dev/liveupdate', O_RDWR);
    let r = this.createSession(luo, 'conf-session-a');
    this.res('CREATE_SESSION name of incoming session', r);
    if (r >= 0) p.close(r);
    const sa = this.retrieveSession(luo, 'conf-session-a');
    this.res('RETRIEVE_SESSION conf-session-a', sa);
    r = this.retrieveSession(luo, 'conf-session-a');
    this.res('RETRIEVE_SESSION conf-session-a again', r);
    const sb = this.retrieveSession(luo, 'conf-session-b-empty');
    this.res('RETRIEVE_SESSION conf-session-b-empty', sb);
    const sc = this.retrieveSession(luo, 'conf-session-c-finish-early');
    this.res('RETRIEVE_SESSION conf-session-c-finish-early', sc);
    const g = this.getName(sa);
    this.res('SESSION_GET_NAME a', g.r);
    if (!g.r) this.out.push(`UAPI   name="${g.name}"`);
    this.res('PRESERVE_FD into incoming session', this.preserveFd(sa, 0, 99));
    this.res('RETRIEVE_FD unknown token 0x99', this.retrieveFd(sa, 0x99));
    const f1 = this.retrieveFd(sa, 0x1a);
    this.res('RETRIEVE_FD 0x1A', f1);
    this.res('RETRIEVE_FD 0x1A again', this.retrieveFd(sa, 0x1a));
    const f2 = this.retrieveFd(sa, 0x2b);
    this.res('RETRIEVE_FD 0x2B', f2);
    const f3 = this.retrieveFd(sa, 0x3c);
    this.res('RETRIEVE_FD 0x3C', f3);
    if (f1 >= 0) this.describeFd('stage2/hello', f1);
    if (f2 >= 0) this.describeFd('stage2/pages', f2);
    if (f3 >= 0) this.describeFd('stage2/empty', f3);
    if (f2 >= 0) {
      this.res('ftruncate restored pages (F_SEAL_GROW)', p.ftruncate(f2, 100 * PG));
      this.res('pwrite restored pages', p.pwrite(f2, enc('Z'), 0));
    }
    this.res('SESSION_FINISH c before retrieving its fd', this.finish(sc));
    this.res('RETRIEVE_FD 0x4D after finish', this.retrieveFd(sc, 0x4d));
    this.res('SESSION_FINISH a', this.finish(sa));
    this.res('RETRIEVE_FD 0x2B after finish', this.retrieveFd(sa, 0x2b));
    this.res('SESSION_FINISH b', this.finish(sb));
    this.res('SESSION_FINISH b again', this.finish(sb));
    p.close(sa);
    p.close(sb);
    p.close(sc);
    this.res('RETRIEVE_SESSION a after finish+close', this.retrieveSession(luo, 'conf-session-a'));
    this.res('CREATE_SESSION a after finish+close', this.createSession(luo, 'conf-session-a'));
    p.close(luo);
  }
}

test('the log holds the lines this test reproduces', () => {
  assert.equal(REAL.filter((l) => l.startsWith('UAPI ')).length, 53);
  assert.equal(REAL.filter((l) => l.startsWith('FILE ')).length, 12);
});

test('every UAPI and FILE line of the real 7.3.4 luoprobe run, reproduced by luo', () => {
  const m = new Machine({ ramSize: 1n << 30n, cmdline: 'console=ttyS0 kho=on liveupdate=on nokaslr panic=-1' });
  const out: string[] = [];
  const t1 = processesOf(m.kernel);
  // luoprobe uapi
  const pu = t1.spawn();
  new Probe(pu, out).cmdUapi();
  pu.exit(0);
  assert.equal(m.kernel.luo!.sessions.outgoing.length, 0, 'the uapi probe leaves no session behind');
  // luoprobe stage1: the parent returns, the forked holder keeps the session fds.
  const ps = t1.spawn();
  const holder = new Probe(ps, out).cmdStage1();
  ps.exit(0);
  assert.equal(holder.state, 'running');
  assert.deepEqual(m.kernel.luo!.sessions.outgoing.map((s) => s.name), ['conf-session-a', 'conf-session-b-empty', 'conf-session-c-finish-early']);
  // luoprobe kexec: kexec_file_load with luo_stage=2, then reboot(RB_KEXEC).
  const pk = t1.spawn();
  m.kernel.kexecLoad({ cmdline: `${m.kernel.cmdline.raw} luo_stage=2` });
  new Probe(pk, out).res('kexec_file_load', 0);
  const k2 = m.kexec();
  assert.equal(k2.luo!.incomingNum, 1);
  assert.throws(() => holder.close(4), /kexec has replaced/);
  // luoprobe stage2 on the new kernel.
  const p2 = processesOf(k2).spawn();
  new Probe(p2, out).cmdStage2();
  p2.exit(0);
  assert.deepEqual(out, REAL);
});
