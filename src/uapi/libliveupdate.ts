/**
 * The LUO selftests' userspace helpers (tools/testing/selftests/liveupdate/lib/lu_utils.c, earlier
 * luo_test_utils.c) over Process and ioctl: argument structs built byte by byte as C lays them out,
 * results as the helpers return them (the value, or -errno).
 */
import { LIVEUPDATE_IOCTL, LIVEUPDATE_SESSION_NAME_LENGTH } from '../abi/uapi.ts';
import { stringBytes } from '../bytes/cursor.ts';
import { O_RDWR } from './file.ts';
import { LIVEUPDATE_DEV } from './luo-files.ts';
import { type Process, RLIMIT_NOFILE } from './process.ts';

const PAGE = 4096;

const le = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const negErrno = (p: Process): number => -p.errnoNumber;

/** struct liveupdate_ioctl_create_session / retrieve_session: {size, fd, name[64]} with at most 63 name bytes. */
export function sessionNameArg(name: string, size = 72): Uint8Array {
  const b = new Uint8Array(72);
  le(b).setUint32(0, size, true);
  b.set(stringBytes(name).subarray(0, LIVEUPDATE_SESSION_NAME_LENGTH - 1), 8);
  return b;
}

/** struct liveupdate_session_preserve_fd / retrieve_fd: {size, fd, token}. */
export function fdTokenArg(fd: number, token: bigint | number, size = 16): Uint8Array {
  const b = new Uint8Array(16);
  le(b).setUint32(0, size, true);
  le(b).setInt32(4, fd, true);
  le(b).setBigUint64(8, BigInt.asUintN(64, BigInt(token)), true);
  return b;
}

/** struct liveupdate_session_finish: {size, reserved}. */
export function finishArg(size = 8): Uint8Array {
  const b = new Uint8Array(8);
  le(b).setUint32(0, size, true);
  return b;
}

/** struct liveupdate_session_get_name: {size, reserved, name[64]}. */
export function getNameArg(size = 72, reserved = 0): Uint8Array {
  const b = new Uint8Array(72);
  le(b).setUint32(0, size, true);
  le(b).setUint32(4, reserved, true);
  return b;
}

/** The s32 `fd` out field at offset 4. */
export const argFd = (b: Uint8Array): number => le(b).getInt32(4, true);

/** A NUL-terminated string out of a byte field. */
export function cString(b: Uint8Array, off = 0, len = b.length - off): string {
  const f = b.subarray(off, off + len);
  const n = f.indexOf(0);
  return String.fromCharCode(...f.subarray(0, n < 0 ? f.length : n));
}

/** luo_create_session: the new session fd, or -errno. */
export function luoCreateSession(p: Process, luoFd: number, name: string): number {
  const a = sessionNameArg(name);
  return p.ioctl(luoFd, LIVEUPDATE_IOCTL.CREATE_SESSION, a) < 0 ? negErrno(p) : argFd(a);
}

/** luo_retrieve_session: the session fd, or -errno. */
export function luoRetrieveSession(p: Process, luoFd: number, name: string): number {
  const a = sessionNameArg(name);
  return p.ioctl(luoFd, LIVEUPDATE_IOCTL.RETRIEVE_SESSION, a) < 0 ? negErrno(p) : argFd(a);
}

export function luoSessionPreserveFd(p: Process, s: number, fd: number, token: bigint | number): number {
  return p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, fdTokenArg(fd, token)) < 0 ? negErrno(p) : 0;
}

/** luo_session_retrieve_fd: the new fd, or -errno. */
export function luoSessionRetrieveFd(p: Process, s: number, token: bigint | number): number {
  const a = fdTokenArg(0, token);
  return p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD, a) < 0 ? negErrno(p) : argFd(a);
}

export function luoSessionFinish(p: Process, s: number): number {
  return p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_FINISH, finishArg()) < 0 ? negErrno(p) : 0;
}

/** luo_get_session_name: strncpy of the name into buf (buf.length - 1 bytes, then a NUL); 0 or -errno. */
export function luoGetSessionName(p: Process, s: number, buf: Uint8Array): number {
  const a = getNameArg();
  if (p.ioctl(s, LIVEUPDATE_IOCTL.SESSION_GET_NAME, a) < 0) return negErrno(p);
  const n = Math.min(buf.length - 1, LIVEUPDATE_SESSION_NAME_LENGTH);
  const name = a.subarray(8, 8 + n);
  const len = name.indexOf(0) < 0 ? n : name.indexOf(0);
  buf.set(name.subarray(0, len));
  buf.fill(0, len, n + 1);
  return 0;
}

/** luo_ensure_nofile_limit: RLIMIT_NOFILE of at least n + 32 (0, or -EPERM when not allowed). */
export function luoEnsureNofileLimit(p: Process, n: number): number {
  const want = n + 32;
  const r = p.getrlimit(RLIMIT_NOFILE);
  if (r.cur >= want) return 0;
  return p.setrlimit(RLIMIT_NOFILE, { cur: want, max: Math.max(r.max, want) }) < 0 ? negErrno(p) : 0;
}

/**
 * create_and_preserve_memfd: a one-page memfd "test_mfd" holding `str` (NUL-terminated) at offset 0,
 * preserved under `token`, then its fd closed (LUO keeps the file). The C helper writes through a
 * MAP_SHARED mapping; pwrite puts the same bytes in the page cache. 0 or -errno.
 */
export function createAndPreserveMemfd(p: Process, s: number, token: bigint | number, str: string): number {
  const fd = p.memfdCreate('test_mfd', 0);
  if (fd < 0) return negErrno(p);
  let ret = 0;
  if (p.ftruncate(fd, PAGE) < 0 || p.pwrite(fd, new Uint8Array([...stringBytes(str), 0]), 0) < 0) ret = negErrno(p);
  else ret = luoSessionPreserveFd(p, s, fd, token);
  p.close(fd);
  return ret;
}

/**
 * restore_and_verify_memfd: retrieves `token`, reads its first page and compares the C string there
 * with `expected` (unless undefined). The fd, -errno, or -EINVAL on a mismatch.
 */
export function restoreAndVerifyMemfd(p: Process, s: number, token: bigint | number, expected?: string): number {
  const fd = luoSessionRetrieveFd(p, s, token);
  if (fd < 0) return fd;
  if (expected === undefined) return fd;
  const page = new Uint8Array(PAGE);
  if (p.pread(fd, page, 0) < 0) {
    const e = negErrno(p);
    p.close(fd);
    return e;
  }
  if (cString(page) !== expected) {
    p.close(fd);
    return -22;
  }
  return fd;
}

/** create_state_file: session `name` with a memfd holding the decimal `nextStage`; the session fd stays open. */
export function createStateFile(p: Process, luoFd: number, name: string, token: bigint | number, nextStage: number): number {
  const s = luoCreateSession(p, luoFd, name);
  if (s < 0) return s;
  const r = createAndPreserveMemfd(p, s, token, String(nextStage));
  if (r < 0) {
    p.close(s);
    return r;
  }
  return s;
}

/** restore_and_read_stage: retrieves the state memfd, read()s it from its position, parses it like atoi. */
export function restoreAndReadStage(p: Process, stateFd: number, token: bigint | number): number {
  const fd = restoreAndVerifyMemfd(p, stateFd, token, undefined);
  if (fd < 0) return fd;
  const buf = new Uint8Array(31);
  const n = p.read(fd, buf);
  p.close(fd);
  if (n < 0) return negErrno(p);
  const m = /^\s*[-+]?\d+/.exec(cString(buf.subarray(0, n)));
  return m ? parseInt(m[0], 10) : 0;
}

/** ksft_print_msg: "# " and the message on stdout. */
export function ksftPrintMsg(p: Process, msg: string): void {
  p.write(1, `# ${msg}`);
}

/**
 * daemonize_and_wait: fork; the child (setsid, stdio closed) keeps every other fd, session fds
 * included, across the reboot; the parent exits with 0. Returns the child.
 */
export function daemonizeAndWait(p: Process): Process {
  ksftPrintMsg(p, '[STAGE 1] Forking persistent child to hold sessions...\n');
  const child = p.fork();
  for (const fd of [0, 1, 2]) if (child.file(fd)) child.close(fd);
  ksftPrintMsg(p, `[STAGE 1] Child PID: ${child.pid}. Resources are pinned.\n`);
  ksftPrintMsg(p, '[STAGE 1] You may now perform kexec reboot.\n');
  p.exit(0);
  return child;
}

export type StageResult = 'pass' | 'skip' | 'fail';

/**
 * luo_test: opens /dev/liveupdate (skip when it cannot), tells the stage from RETRIEVE_SESSION of
 * the state session (ENOENT: stage 1, success: stage 2, anything else: fail), checks it against the
 * requested stage, and runs that stage. A stage returns whether it passed.
 */
export function luoTest(
  p: Process,
  opts: {
    readonly stage: 1 | 2;
    readonly stateName: string;
    readonly stage1: (luoFd: number) => boolean;
    readonly stage2: (luoFd: number, stateFd: number) => boolean;
  },
): StageResult {
  const luoFd = p.open(LIVEUPDATE_DEV, O_RDWR);
  if (luoFd < 0) return 'skip';
  const stateFd = luoRetrieveSession(p, luoFd, opts.stateName);
  let detected: 1 | 2;
  if (stateFd === -2) detected = 1;
  else if (stateFd >= 0) detected = 2;
  else return 'fail';
  if (detected !== opts.stage) return 'fail';
  const ok = detected === 1 ? opts.stage1(luoFd) : opts.stage2(luoFd, stateFd);
  return ok ? 'pass' : 'fail';
}
