/**
 * ioctl(2) on the simulated kernel: the VFS part (fs/ioctl.c do_vfs_ioctl: EBADF, the generic
 * FIOCLEX/FIONCLEX/FIONBIO/FIOASYNC/FIOQSIZE/FIGETBSZ, FIONREAD of regular files, ENOIOCTLCMD ->
 * ENOTTY) and LUO's two table dispatchers over the raw bytes of the user's argument, for
 * /dev/liveupdate (luo_core.c) and session fds (luo_session.c, newest mainline).
 */
import { LuoError } from '../errno.ts';
import { LIVEUPDATE_IOCTL, LIVEUPDATE_SESSION_NAME_LENGTH } from '../abi/uapi.ts';
import { readCString, readI32, readU32, readU64, stringBytes, writeI32 } from '../bytes/cursor.ts';
import { MemfdFile } from '../handlers/memfd-file.ts';
import type { Luo } from '../luo/core.ts';
import { FASYNC, O_NONBLOCK, type OpenFile, PipeFile, VfsFile, fileFlags, setFileFlags } from './file.ts';
import { LuoDeviceFile, PluginFile, SessionFile } from './luo-files.ts';
import type { KernelFile } from '../luo/file-handler.ts';
import type { Process } from './process.ts';
import { copyStructFromUser, copyToUser, getUserI32, getUserU32, putUserI32, putUserI64, type UserBuffer } from './usercopy.ts';

/** Generic commands the VFS handles before any driver (include/uapi/asm-generic/ioctls.h, linux/fs.h). */
export const FIONREAD = 0x541b;
export const FIONBIO = 0x5421;
export const FIONCLEX = 0x5450;
export const FIOCLEX = 0x5451;
export const FIOASYNC = 0x5452;
export const FIOQSIZE = 0x5460;
/** _IO(0x00, 2) */
export const FIGETBSZ = 2;
/**
 * The generic commands luo models. The VFS has more (FIFREEZE, FITHAW, FS_IOC_FIEMAP, FICLONE*,
 * FS_IOC_*FLAGS, ...) that luo does not: they reach the driver (LUO: EINVAL).
 */
export const VFS_GENERIC_IOCTLS: readonly number[] = [FIONREAD, FIONBIO, FIONCLEX, FIOCLEX, FIOASYNC, FIOQSIZE, FIGETBSZ];

/** Which sessions an op applies to (enum luo_ioctl_type). */
export type SessionOpType = 'incoming' | 'outgoing' | 'all';

/** One table entry (struct luo_ioctl_op): the full command, struct size and minimum size. */
export interface IoctlOp<C> {
  readonly name: string;
  readonly cmd: number;
  readonly size: number;
  readonly minSize: number;
  readonly type: SessionOpType;
  /** Runs with the kernel's copy of the struct; `respond` copies min(usize, size) bytes back. */
  execute(ctx: C, kbuf: Uint8Array, respond: () => void): number;
}

export interface IoctlTable<C> {
  /** _IOC_NR of the first entry (LIVEUPDATE_CMD_BASE / LIVEUPDATE_CMD_SESSION_BASE). */
  readonly base: number;
  readonly ops: readonly IoctlOp<C>[];
}

interface DeviceCtx {
  readonly proc: Process;
  readonly luo: Luo;
}
interface SessionCtx {
  readonly proc: Process;
  readonly file: SessionFile;
}

/**
 * The common dispatcher, checks in the kernel's order: nr outside the table (EINVAL); get_user of
 * the size (EFAULT); the full command (ENOIOCTLCMD); the session direction (EINVAL); the minimum
 * size (EINVAL); copy_struct_from_user (E2BIG/EFAULT); then the op.
 */
function dispatch<C>(table: IoctlTable<C>, ctx: C, cmd: number, arg: UserBuffer, typeValid: (t: SessionOpType) => boolean): number {
  const nr = cmd & 0xff;
  const idx = nr - table.base;
  if (idx < 0 || idx >= table.ops.length) throw new LuoError('EINVAL', `ioctl nr 0x${nr.toString(16)} is outside this file's table (0x${table.base.toString(16)}..0x${(table.base + table.ops.length - 1).toString(16)})`);
  const usize = getUserU32(arg);
  const op = table.ops[idx]!;
  if (op.cmd !== cmd) throw new LuoError('ENOIOCTLCMD', `ioctl 0x${cmd.toString(16)} is not ${op.name} (0x${op.cmd.toString(16)})`);
  if (!typeValid(op.type)) throw new LuoError('EINVAL', `${op.name} is only for ${op.type} sessions`);
  if (usize < op.minSize) throw new LuoError('EINVAL', `${op.name}: size ${usize} is below the minimum ${op.minSize}`);
  const kbuf = copyStructFromUser(op.size, arg, usize);
  return op.execute(ctx, kbuf, () => copyToUser(arg, kbuf, Math.min(usize, op.size)));
}

/** The bytes of a u8[64] name field as the C string the kernel sees (may lack a terminator). */
const nameAt = (kbuf: Uint8Array, off: number): string => readCString(kbuf, off, LIVEUPDATE_SESSION_NAME_LENGTH);

/**
 * The session-fd-returning ops: reserve an fd with O_CLOEXEC first (EMFILE), do the work, write
 * the fd into the struct and respond, then install; any failure releases what was made.
 */
function withNewFd(proc: Process, kbuf: Uint8Array, respond: () => void, make: () => OpenFile): number {
  const fd = proc.fds.alloc(0, proc.nofileLimit, true);
  writeI32(kbuf, 4, fd, 'le');
  let file: OpenFile | undefined;
  try {
    file = make();
    respond();
  } catch (e) {
    file?.close();
    proc.fds.putUnused(fd);
    throw e;
  }
  proc.fds.install(fd, file);
  return 0;
}

const warnOf = (proc: Process) => (msg: string): void => proc.kernel.print('warn', msg);

export const LUO_DEVICE_IOCTLS: IoctlTable<DeviceCtx> = {
  base: 0x00,
  ops: [
    {
      name: 'LIVEUPDATE_IOCTL_CREATE_SESSION', cmd: LIVEUPDATE_IOCTL.CREATE_SESSION, size: 72, minSize: 72, type: 'all',
      execute: ({ proc, luo }, kbuf, respond) => withNewFd(proc, kbuf, respond, () => new SessionFile(luo, luo.createSession(nameAt(kbuf, 8)), warnOf(proc))),
    },
    {
      name: 'LIVEUPDATE_IOCTL_RETRIEVE_SESSION', cmd: LIVEUPDATE_IOCTL.RETRIEVE_SESSION, size: 72, minSize: 72, type: 'all',
      execute: ({ proc, luo }, kbuf, respond) => withNewFd(proc, kbuf, respond, () => new SessionFile(luo, luo.retrieveSession(nameAt(kbuf, 8)), warnOf(proc))),
    },
  ],
};

/** Files handed out by RETRIEVE_FD: the first fd takes over the reference the handler made. */
const handedOut = new WeakSet<object>();

function adoptRetrieved(f: unknown): OpenFile {
  // a plugin's file: a new anon inode around it for each fd handed out
  if (!(f instanceof MemfdFile) && !(f instanceof VfsFile)) return new PluginFile(f as KernelFile);
  if (!handedOut.has(f)) {
    handedOut.add(f);
    return f;
  }
  return f.get();
}

export const LUO_SESSION_IOCTLS: IoctlTable<SessionCtx> = {
  base: 0x40,
  ops: [
    {
      name: 'LIVEUPDATE_SESSION_PRESERVE_FD', cmd: LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, size: 16, minSize: 16, type: 'outgoing',
      execute: ({ proc, file }, kbuf, respond) => {
        const fd = readI32(kbuf, 4, 'le');
        const token = readU64(kbuf, 8, 'le');
        // luo_preserve_file resolves the fd itself, after its token and block checks (EBADF).
        const f = proc.fds.get(fd)?.file;
        file.luo.sessions.preserveFile(file.session, token, f instanceof PluginFile ? f.inner : f);
        respond();
        return 0;
      },
    },
    {
      name: 'LIVEUPDATE_SESSION_RETRIEVE_FD', cmd: LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD, size: 16, minSize: 16, type: 'incoming',
      execute: ({ proc, file }, kbuf, respond) =>
        withNewFd(proc, kbuf, respond, () => adoptRetrieved(file.luo.sessions.retrieveFile(file.session, readU64(kbuf, 8, 'le')))),
    },
    {
      name: 'LIVEUPDATE_SESSION_FINISH', cmd: LIVEUPDATE_IOCTL.SESSION_FINISH, size: 8, minSize: 8, type: 'incoming',
      execute: ({ file }, kbuf, respond) => {
        // luo_session_finish refuses a nonzero reserved word before anything else (7.3.4).
        if (readU32(kbuf, 4, 'le') !== 0) throw new LuoError('EINVAL', 'FINISH: reserved must be 0');
        file.luo.sessions.finish(file.session);
        respond();
        return 0;
      },
    },
    {
      name: 'LIVEUPDATE_SESSION_GET_NAME', cmd: LIVEUPDATE_IOCTL.SESSION_GET_NAME, size: 72, minSize: 72, type: 'all',
      execute: ({ file }, kbuf, respond) => {
        if (readU32(kbuf, 4, 'le') !== 0) throw new LuoError('EINVAL', 'GET_NAME: reserved must be 0');
        // strscpy: the name and its NUL; the bytes after it keep what the user passed in.
        const b = stringBytes(file.session.name).subarray(0, LIVEUPDATE_SESSION_NAME_LENGTH - 1);
        kbuf.set(b, 8);
        kbuf[8 + b.length] = 0;
        respond();
        return 0;
      },
    },
  ],
};

/**
 * The first merged uAPI (luo_session.c @7f790dd): three session ops, no GET_NAME (its nr is past
 * the table: EINVAL), and no direction check in the dispatcher. That kernel ran an op of the wrong
 * direction against the session's own file set — RETRIEVE_FD of an outgoing file called the
 * handler's retrieve on data never handed over, FINISH of an outgoing set the handlers' finish, a
 * PRESERVE_FD into a retrieved session added a file nothing would serialize. luo keeps the ops'
 * own direction checks there (EINVAL, as later kernels answer) rather than act out those paths.
 */
export const LUO_SESSION_IOCTLS_V1: IoctlTable<SessionCtx> = { base: LUO_SESSION_IOCTLS.base, ops: LUO_SESSION_IOCTLS.ops.slice(0, 3) };

/** The driver part of ioctl (vfs_ioctl): f_op->unlocked_ioctl, or ENOTTY when the file has none. */
function driverIoctl(proc: Process, f: OpenFile, cmd: number, arg: UserBuffer): number {
  if (f instanceof LuoDeviceFile) return dispatch(LUO_DEVICE_IOCTLS, { proc, luo: f.luo }, cmd, arg, () => true);
  if (f instanceof SessionFile) {
    const retrieved = f.session.retrieved;
    const { getName, directionChecks } = f.luo.uapi;
    return dispatch(getName ? LUO_SESSION_IOCTLS : LUO_SESSION_IOCTLS_V1, { proc, file: f }, cmd, arg, directionChecks ? (t) => (t === 'all' ? true : t === 'incoming' ? retrieved : !retrieved) : () => true);
  }
  if (f instanceof PipeFile) {
    if (cmd === FIONREAD) {
      putUserI32(arg, f.pipe.bytes);
      return 0;
    }
    throw new LuoError('ENOIOCTLCMD', `pipe: ioctl 0x${cmd.toString(16)} is not supported`);
  }
  throw new LuoError('ENOTTY', `ioctl 0x${cmd.toString(16)}: the file has no ioctl operation`);
}

/** s_blocksize of the superblock a file lives on: hugetlbfs uses its page size, the rest PAGE_SIZE. */
function blockSize(f: OpenFile): number {
  return f instanceof MemfdFile && f.inode.hugetlb ? 2 << 20 : 4096;
}

/**
 * sys_ioctl after the fd lookup: do_vfs_ioctl's generic commands (fs/ioctl.c, 7.3.4), then the
 * driver. Throws LuoError.
 */
export function doIoctl(proc: Process, fd: number, cmdIn: number, arg: UserBuffer): number {
  const cmd = cmdIn >>> 0;
  const e = proc.fds.get(fd);
  if (!e) throw new LuoError('EBADF', `ioctl: fd ${fd} is not open`);
  const f = e.file;
  switch (cmd) {
    case FIOCLEX:
      e.cloexec = true;
      return 0;
    case FIONCLEX:
      e.cloexec = false;
      return 0;
    case FIONBIO: {
      const on = getUserI32(arg);
      setFileFlags(f, on ? fileFlags(f) | O_NONBLOCK : fileFlags(f) & ~O_NONBLOCK);
      return 0;
    }
    case FIOASYNC: {
      // ioctl_fioasync: changing FASYNC needs f_op->fasync. Of the files here only pipes have one
      // (the LUO device, session files and shmem have none: ENOTTY); no change is always 0.
      const on = getUserI32(arg) !== 0;
      if (on !== ((fileFlags(f) & FASYNC) !== 0)) {
        if (!(f instanceof PipeFile)) throw new LuoError('ENOTTY', `FIOASYNC: ${f instanceof MemfdFile ? 'shmem' : f.path} has no fasync operation`);
        setFileFlags(f, on ? fileFlags(f) | FASYNC : fileFlags(f) & ~FASYNC);
      }
      return 0;
    }
    case FIOQSIZE:
      // Directories, symlinks and regular files that are not anonymous inodes: inode_get_bytes.
      if (f instanceof MemfdFile) {
        putUserI64(arg, BigInt(f.stat().blocks) * 512n);
        return 0;
      }
      throw new LuoError('ENOTTY', `FIOQSIZE: ${f.path} is not a regular file, directory or symlink`);
    case FIGETBSZ:
      putUserI32(arg, blockSize(f));
      return 0;
    case FIONREAD:
      // file_ioctl, regular files only: i_size - f_pos as an int; others go to the driver.
      if (f instanceof MemfdFile) {
        putUserI32(arg, (f.stat().size - f.pos) | 0);
        return 0;
      }
      break;
  }
  try {
    return driverIoctl(proc, f, cmd, arg);
  } catch (err) {
    if (err instanceof LuoError && err.errno === 'ENOIOCTLCMD') throw new LuoError('ENOTTY', err.message, { cause: err });
    throw err;
  }
}

/**
 * ioctl(2): returns the op's result (0 for every LUO command; new fds are written into the
 * struct) or -1 with `proc.errno` set. `arg` is the user's buffer, shorter or longer than the
 * struct as the caller likes; undefined is an unmapped pointer.
 */
export function ioctl(proc: Process, fd: number, cmd: number, arg: UserBuffer): number {
  return proc.syscall(() => doIoctl(proc, fd, cmd, arg));
}
