/**
 * Userspace processes of one simulated kernel: an fd table over shared open files, RLIMIT_NOFILE,
 * fork/exec/exit, and the file syscalls LUO users need (open of /dev/liveupdate and /dev/null,
 * memfd_create, pipe2, dup*, fcntl, read/write/lseek/ftruncate/fallocate, ioctl). Mirrors
 * fs/open.c, fs/file.c, fs/fcntl.c, fs/read_write.c, kernel/fork.c and kernel/exit.c in outline.
 *
 * Convention: every syscall returns what the C call returns; a failure returns -1 and sets
 * `errno` (an ErrnoName such as 'EBADF'; `errnoNumber` is its value, `lastError` the full error).
 * errno is left alone by a success, as in C.
 */
import { type ErrnoName, ERRNO, LuoError } from '../errno.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { MemfdFile, MFD_CLOEXEC, memfdCreate } from '../handlers/memfd-file.ts';
import { FdTable } from './fdtable.ts';
import {
  ConsoleFile, type FileStat, fileFlags, NullFile, O_APPEND, O_CLOEXEC, O_CREAT, O_EXCL, O_NONBLOCK, type OpenFile, pathOf, Pipe, PipeFile,
  setFileFlags, statOf,
} from './file.ts';
import { ioctl } from './ioctl.ts';
import * as rw from './rw.ts';
import { KmsgFile, LIVEUPDATE_DEV, LuoDeviceFile, PLUGIN_DEV_DIR, PluginFile } from './luo-files.ts';
import { pluginCall } from '../luo/plugin.ts';
import type { KernelFile } from '../luo/file-handler.ts';
import type { UserBuffer } from './usercopy.ts';

export const RLIMIT_NOFILE = 7;
/** The kernel's initial RLIMIT_NOFILE (INR_OPEN_CUR, INR_OPEN_MAX) and fs.nr_open. */
export const INR_OPEN_CUR = 1024;
export const INR_OPEN_MAX = 4096;
export const NR_OPEN = 1048576;

export const F_DUPFD = 0;
export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_DUPFD_CLOEXEC = 1030;
export const F_ADD_SEALS = 1033;
export const F_GET_SEALS = 1034;
export const FD_CLOEXEC = 1;
/** The F_SETFL bits luo models (the kernel's SETFL_MASK also has O_DIRECT, O_NOATIME, FASYNC). */
const SETFL_MASK = O_APPEND | O_NONBLOCK;

export interface Rlimit {
  readonly cur: number;
  readonly max: number;
}

export interface SpawnOptions {
  /** Open the console on fds 0, 1 and 2 (default true). */
  readonly stdio?: boolean;
  /** CAP_SYS_RESOURCE: may raise the hard RLIMIT_NOFILE (default true: the tests run as root). */
  readonly privileged?: boolean;
  readonly rlimitNofile?: Rlimit;
}

/** The processes of one kernel, and its console. */
export class ProcessTable {
  readonly processes = new Map<number, Process>();
  private nextPid = 1;
  private nextPipeIno = 1;
  private consoleText = '';

  constructor(readonly kernel: Kernel) {}

  /** A new process (pid 1 first), as init or a shell would start it. */
  spawn(opts: SpawnOptions = {}): Process {
    const p = new Process(this, this.nextPid++, 0, {
      privileged: opts.privileged ?? true,
      rlimit: opts.rlimitNofile ?? { cur: INR_OPEN_CUR, max: INR_OPEN_MAX },
    });
    this.processes.set(p.pid, p);
    if (opts.stdio ?? true) {
      const tty = new ConsoleFile((t) => this.writeConsole(t));
      for (let fd = 0; fd < 3; fd++) {
        p.fds.alloc(fd, p.nofileLimit, false);
        p.fds.install(fd, fd === 0 ? tty : tty.get());
      }
    }
    return p;
  }

  /** @internal fork's child. */
  adopt(parent: Process): Process {
    const child = new Process(this, this.nextPid++, parent.pid, { privileged: parent.privileged, rlimit: parent.getrlimit(RLIMIT_NOFILE) });
    this.processes.set(child.pid, child);
    return child;
  }

  /** @internal */
  reap(p: Process): void {
    this.processes.delete(p.pid);
  }

  newPipe(): Pipe {
    return new Pipe(this.nextPipeIno++);
  }

  writeConsole(text: string): void {
    this.consoleText += text;
  }

  /** Everything processes wrote to the console. */
  get console(): string {
    return this.consoleText;
  }
}

const tables = new WeakMap<Kernel, ProcessTable>();

/** The process table of a running kernel (created on first use). */
export function processesOf(kernel: Kernel): ProcessTable {
  let t = tables.get(kernel);
  if (!t) {
    t = new ProcessTable(kernel);
    tables.set(kernel, t);
  }
  return t;
}

export class Process {
  readonly fds = new FdTable();
  errno: ErrnoName | undefined;
  lastError: LuoError | undefined;
  state: 'running' | 'exited' = 'running';
  exitCode: number | undefined;
  readonly privileged: boolean;
  private rlimit: Rlimit;

  constructor(readonly table: ProcessTable, readonly pid: number, readonly ppid: number, opts: { privileged: boolean; rlimit: Rlimit }) {
    this.privileged = opts.privileged;
    this.rlimit = opts.rlimit;
  }

  get kernel(): Kernel {
    return this.table.kernel;
  }

  /** The errno name of the last failure (the same as `errno`, as strerrorname_np gives it). */
  get errnoName(): ErrnoName | undefined {
    return this.errno;
  }

  /** errno as a number (0 when no call failed yet). */
  get errnoNumber(): number {
    return this.errno ? ERRNO[this.errno] : 0;
  }

  /** RLIMIT_NOFILE's soft limit: every new fd is below it. */
  get nofileLimit(): number {
    return this.rlimit.cur;
  }

  private assertAlive(): void {
    if (this.state !== 'running') throw new Error(`process ${this.pid} has exited`);
    if (this.kernel.state !== 'running') throw new Error(`process ${this.pid} ran on a kernel that kexec has replaced`);
  }

  /** Runs a syscall body: its result, or -1 with errno set when it throws a LuoError. */
  syscall<T extends number>(body: () => T): T | -1 {
    this.assertAlive();
    try {
      return body();
    } catch (e) {
      if (!(e instanceof LuoError)) throw e;
      this.errno = e.errno;
      this.lastError = e;
      return -1;
    }
  }

  private entry(fd: number) {
    const e = this.fds.get(fd);
    if (!e) throw new LuoError('EBADF', `fd ${fd} is not open in process ${this.pid}`);
    return e;
  }

  /** Reserve an fd, make the file, install it; the reservation is given back on failure. */
  private installNew(cloexec: boolean, make: () => OpenFile): number {
    const fd = this.fds.alloc(0, this.nofileLimit, cloexec);
    let file: OpenFile;
    try {
      file = make();
    } catch (e) {
      this.fds.putUnused(fd);
      throw e;
    }
    this.fds.install(fd, file);
    return fd;
  }

  // ------------------------------------------------------------ fds

  /** An fd for a file handler plugin's file (its `open`, as eventfd(2) or a driver's open would make one). */
  openPluginFile(make: () => KernelFile): number {
    return this.syscall(() => this.installNew(true, () => new PluginFile(make())));
  }

  /**
   * open(2) of /dev/liveupdate, /dev/null, /dev/kmsg, or `/dev/luo/<compatible>`: the device node of
   * a handler plugin built into this kernel (its `open` makes the file, from `pluginArgs` when a
   * tool gives some; a C program gives none). Anything else: ENOENT. EMFILE comes first.
   */
  open(path: string, flags = 0, pluginArgs?: unknown): number {
    if (path.startsWith(PLUGIN_DEV_DIR)) return this.syscall(() => this.installNew((flags & O_CLOEXEC) !== 0, () => this.openPluginDevice(path, flags, pluginArgs)));
    return this.syscall(() =>
      this.installNew((flags & O_CLOEXEC) !== 0, () => {
        const exists = path === '/dev/null' || path === '/dev/kmsg' || (path === LIVEUPDATE_DEV && this.kernel.luo?.deviceRegistered === true);
        if (!exists) throw new LuoError('ENOENT', `open: ${path} does not exist`);
        if ((flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL)) throw new LuoError('EEXIST', `open: ${path} exists (O_CREAT|O_EXCL)`);
        if (path === '/dev/null') return new NullFile(flags);
        if (path === '/dev/kmsg') return new KmsgFile(this.kernel.log, flags);
        const luo = this.kernel.luo!;
        luo.open(); // EBUSY while open elsewhere; EIO after a failed deserialization
        return new LuoDeviceFile(luo, flags);
      }),
    );
  }

  /** A plugin's device node: there while the plugin is registered in this kernel; ENODEV when it makes no files. */
  private openPluginDevice(path: string, flags: number, args: unknown): PluginFile {
    const compatible = path.slice(PLUGIN_DEV_DIR.length);
    const plugin = this.kernel.build.handlers?.find((p) => p.compatible === compatible);
    const registered = this.kernel.luo?.fileHandlers.some((h) => h.compatible === compatible) === true;
    if (!plugin || !registered || compatible.includes('/')) throw new LuoError('ENOENT', `open: ${path} does not exist (no handler plugin "${compatible}" is registered in this kernel)`);
    if ((flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL)) throw new LuoError('EEXIST', `open: ${path} exists (O_CREAT|O_EXCL)`);
    if (!plugin.open) throw new LuoError('ENODEV', `open: handler plugin "${compatible}" makes no files (it has no open())`);
    const inner = pluginCall(`handler plugin "${compatible}" open`, () => plugin.open!(args));
    if (inner === null || typeof inner !== 'object') throw new LuoError('EIO', `handler plugin "${compatible}" open returned no file object`);
    return new PluginFile(inner, flags);
  }

  /** close(2): the fd goes; the file is released when its last reference does. */
  close(fd: number): number {
    return this.syscall(() => {
      const f = this.fds.remove(fd);
      if (!f) throw new LuoError('EBADF', `close: fd ${fd} is not open`);
      f.close();
      return 0;
    });
  }

  dup(fd: number): number {
    return this.syscall(() => {
      const f = this.entry(fd).file;
      return this.installNew(false, () => f.get());
    });
  }

  dup2(oldfd: number, newfd: number): number {
    if (oldfd === newfd) return this.syscall(() => (this.entry(oldfd), newfd));
    return this.dup3(oldfd, newfd, 0);
  }

  /** dup3(2): EINVAL for flags other than O_CLOEXEC or equal fds, EBADF for newfd past the limit. */
  dup3(oldfd: number, newfd: number, flags: number): number {
    return this.syscall(() => {
      if (flags & ~O_CLOEXEC) throw new LuoError('EINVAL', `dup3: flags 0x${flags.toString(16)}`);
      if (oldfd === newfd) throw new LuoError('EINVAL', 'dup3: oldfd equals newfd');
      if (!Number.isInteger(newfd) || newfd < 0 || newfd >= this.nofileLimit) throw new LuoError('EBADF', `dup3: fd ${newfd} is beyond RLIMIT_NOFILE (${this.nofileLimit})`);
      const f = this.entry(oldfd).file;
      const old = this.fds.replace(newfd, f.get(), (flags & O_CLOEXEC) !== 0);
      old?.close();
      return newfd;
    });
  }

  /** fcntl(2): F_DUPFD(_CLOEXEC), F_GETFD/F_SETFD, F_GETFL/F_SETFL, F_ADD_SEALS/F_GET_SEALS. */
  fcntl(fd: number, cmd: number, arg = 0): number {
    return this.syscall(() => {
      const e = this.entry(fd);
      const f = e.file;
      switch (cmd) {
        case F_DUPFD:
        case F_DUPFD_CLOEXEC:
          if (!Number.isInteger(arg) || arg < 0 || arg >= this.nofileLimit) throw new LuoError('EINVAL', `F_DUPFD: ${arg} is beyond RLIMIT_NOFILE (${this.nofileLimit})`);
        {
          const nfd = this.fds.alloc(arg, this.nofileLimit, cmd === F_DUPFD_CLOEXEC);
          this.fds.install(nfd, f.get());
          return nfd;
        }
        case F_GETFD:
          return e.cloexec ? FD_CLOEXEC : 0;
        case F_SETFD:
          e.cloexec = (arg & FD_CLOEXEC) !== 0;
          return 0;
        case F_GETFL:
          return fileFlags(f);
        case F_SETFL:
          setFileFlags(f, (fileFlags(f) & ~SETFL_MASK) | (arg & SETFL_MASK));
          return 0;
        case F_ADD_SEALS:
        case F_GET_SEALS:
          if (!(f instanceof MemfdFile)) throw new LuoError('EINVAL', `fcntl: ${pathOf(f)} is not a memfd (no seals)`);
          if (cmd === F_GET_SEALS) return f.getSeals();
          f.addSeals(arg);
          return 0;
        default:
          throw new LuoError('EINVAL', `fcntl: command ${cmd} is not supported`);
      }
    });
  }

  /** ioctl(2) (see ioctl.ts): `arg` is the user's buffer, undefined for a bad pointer. */
  ioctl(fd: number, cmd: number, arg: UserBuffer): number {
    return ioctl(this, fd, cmd, arg);
  }

  // ------------------------------------------------------------ file creation

  /** memfd_create(2): flags and the name are checked before an fd is reserved (EMFILE). */
  memfdCreate(name: string, flags = 0): number {
    return this.syscall(() => {
      let fd: number;
      try {
        fd = this.fds.alloc(0, this.nofileLimit, (flags & MFD_CLOEXEC) !== 0);
      } catch (e) {
        try {
          memfdCreate(this.kernel.memfd, name, flags).close();
        } catch (v) {
          if (v instanceof LuoError && v.errno === 'EINVAL') throw v;
        }
        throw e;
      }
      let file: OpenFile;
      try {
        file = memfdCreate(this.kernel.memfd, name, flags);
      } catch (e) {
        this.fds.putUnused(fd);
        throw e;
      }
      this.fds.install(fd, file);
      return fd;
    });
  }

  /** pipe2(2): fills out[0] (read end) and out[1] (write end). */
  pipe2(out: number[], flags = 0): number {
    return this.syscall(() => {
      if (flags & ~(O_CLOEXEC | O_NONBLOCK)) throw new LuoError('EINVAL', `pipe2: flags 0x${flags.toString(16)}`);
      const pipe = this.table.newPipe();
      const r = new PipeFile(pipe, 'read', flags);
      const w = new PipeFile(pipe, 'write', flags);
      const cloexec = (flags & O_CLOEXEC) !== 0;
      let fd0: number;
      let fd1: number;
      try {
        fd0 = this.fds.alloc(0, this.nofileLimit, cloexec);
      } catch (e) {
        r.close();
        w.close();
        throw e;
      }
      try {
        fd1 = this.fds.alloc(0, this.nofileLimit, cloexec);
      } catch (e) {
        this.fds.putUnused(fd0);
        r.close();
        w.close();
        throw e;
      }
      this.fds.install(fd0, r);
      this.fds.install(fd1, w);
      out[0] = fd0;
      out[1] = fd1;
      return 0;
    });
  }

  pipe(out: number[]): number {
    return this.pipe2(out, 0);
  }

  // ------------------------------------------------------------ I/O (rw.ts)

  /** read(2) into `buf` (up to its length) at the file position; returns the bytes read. */
  read(fd: number, buf: Uint8Array): number {
    return this.syscall(() => rw.read(this.fds, fd, buf));
  }

  /** write(2) at the file position (at the end under O_APPEND); a string is written as UTF-8. */
  write(fd: number, data: Uint8Array | string): number {
    return this.syscall(() => rw.write(this.fds, fd, typeof data === 'string' ? new TextEncoder().encode(data) : data));
  }

  /** pread64(2): EINVAL for a negative offset, ESPIPE on pipes and ttys. */
  pread(fd: number, buf: Uint8Array, off: number): number {
    return this.syscall(() => rw.pread(this.fds, fd, buf, off));
  }

  pwrite(fd: number, data: Uint8Array | string, off: number): number {
    return this.syscall(() => rw.pwrite(this.fds, fd, typeof data === 'string' ? new TextEncoder().encode(data) : data, off));
  }

  /** lseek(2): EINVAL for whence > SEEK_HOLE, ESPIPE for files without llseek. */
  lseek(fd: number, off: number, whence: number): number {
    return this.syscall(() => rw.lseek(this.fds, fd, off, whence));
  }

  /** ftruncate(2): EINVAL for a negative length, and for anything but a memfd. */
  ftruncate(fd: number, len: number): number {
    return this.syscall(() => rw.ftruncate(this.fds, fd, len));
  }

  /** fallocate(2) (argument order as in C): memfds allocate; pipes ESPIPE, devices ENODEV. */
  fallocate(fd: number, mode: number, off: number, len: number): number {
    return this.syscall(() => rw.fallocate(this.fds, fd, mode, off, len));
  }

  /** fstat(2): the stat fields luo models, or -1. */
  fstat(fd: number): FileStat | -1 {
    this.assertAlive();
    const e = this.fds.get(fd);
    if (!e) {
      this.errno = 'EBADF';
      this.lastError = new LuoError('EBADF', `fstat: fd ${fd} is not open`);
      return -1;
    }
    return statOf(e.file);
  }

  // ------------------------------------------------------------ introspection (/proc/<pid>/fd)

  /** The open file behind `fd`, or undefined. */
  file(fd: number): OpenFile | undefined {
    return this.fds.get(fd)?.file;
  }

  /** readlink("/proc/<pid>/fd/<fd>"): e.g. "anon_inode:[luo_session] name", "/dev/null". */
  fdPath(fd: number): string | undefined {
    const f = this.file(fd);
    return f ? pathOf(f) : undefined;
  }

  /** Open fds in ascending order. */
  openFds(): number[] {
    return [...this.fds.entries()].map(([fd]) => fd);
  }

  // ------------------------------------------------------------ limits

  getrlimit(_resource: typeof RLIMIT_NOFILE): Rlimit {
    return { ...this.rlimit };
  }

  /** setrlimit(2) for RLIMIT_NOFILE: EINVAL if cur > max; EPERM past fs.nr_open or raising max unprivileged. */
  setrlimit(_resource: typeof RLIMIT_NOFILE, r: Rlimit): number {
    return this.syscall(() => {
      if (r.cur > r.max) throw new LuoError('EINVAL', `setrlimit: soft limit ${r.cur} is above the hard limit ${r.max}`);
      if (r.max > NR_OPEN) throw new LuoError('EPERM', `setrlimit: ${r.max} is above fs.nr_open (${NR_OPEN})`);
      if (r.max > this.rlimit.max && !this.privileged) throw new LuoError('EPERM', 'setrlimit: raising the hard limit needs CAP_SYS_RESOURCE');
      this.rlimit = { cur: r.cur, max: r.max };
      return 0;
    });
  }

  // ------------------------------------------------------------ lifecycle

  /** fork(2): the child gets every fd, pointing at the same open files (shared positions). */
  fork(): Process {
    this.assertAlive();
    const child = this.table.adopt(this);
    for (const [fd, e] of this.fds.entries()) child.fds.replace(fd, e.file.get(), e.cloexec);
    return child;
  }

  /** execve(2)'s do_close_on_exec: every O_CLOEXEC fd is closed, in ascending order. */
  exec(): number {
    this.assertAlive();
    for (const [fd, e] of [...this.fds.entries()]) {
      if (!e.cloexec) continue;
      this.fds.remove(fd);
      e.file.close();
    }
    return 0;
  }

  /** exit(2): every fd is closed as close(2) would (sessions released), then the process is gone. */
  exit(code = 0): void {
    this.assertAlive();
    for (const [fd, e] of [...this.fds.entries()]) {
      this.fds.remove(fd);
      e.file.close();
    }
    this.state = 'exited';
    this.exitCode = code;
    this.table.reap(this);
  }
}
