/**
 * Open file descriptions (struct file) as the VFS sees them: one reference count shared by every fd
 * and fork copy (LUO's references included), an access mode, flags, and per-type operations. Generic
 * types live here: /dev/null, the console and pipes. Mirrors fs/file_table.c (fput and release),
 * fs/read_write.c (FMODE_* gates), drivers/char/mem.c (/dev/null) and fs/pipe.c.
 */
import { LuoError } from '../errno.ts';
import type { KernelFile } from '../luo/file-handler.ts';
import { MemfdFile } from '../handlers/memfd-file.ts';

// ---------------------------------------------------------------- open(2) and fcntl(2) constants (x86_64)

export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_ACCMODE = 0o3;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
/** O_ASYNC: set by FIOASYNC / F_SETFL on files with a fasync operation. */
export const FASYNC = 0o20000;
export const O_LARGEFILE = 0o100000;
export const O_CLOEXEC = 0o2000000;

/** File type bits of st_mode. */
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFREG = 0o100000;

export interface FileStat {
  readonly mode: number;
  readonly size: number;
  /** 512-byte units. */
  readonly blocks: number;
}

/**
 * What an fd points at. MemfdFile (the memfd model) already has this shape; every other type is a
 * VfsFile. get() takes a reference (dup, fork, fget); close() drops one (fput), and the release runs
 * when neither an fd nor LUO holds the file any more.
 */
export type OpenFile = MemfdFile | VfsFile;

export interface FileModes {
  readonly read: boolean;
  readonly write: boolean;
  /** FMODE_PREAD/FMODE_PWRITE: cleared by stream_open/nonseekable_open (pipes, ttys). */
  readonly positional: boolean;
}

/** OPEN_FMODE: the access mode O_RDONLY/O_WRONLY/O_RDWR gives (3 gives neither). */
export function modesOf(flags: number, positional: boolean): FileModes {
  const acc = (flags + 1) & O_ACCMODE;
  return { read: (acc & 1) !== 0, write: (acc & 2) !== 0, positional };
}

/** A struct file of a type other than memfd. Subclasses override the operations they have. */
export abstract class VfsFile implements KernelFile {
  abstract readonly kind: string;
  pos = 0;
  /** f_flags as F_GETFL shows them (access mode, O_NONBLOCK, O_APPEND, O_LARGEFILE). */
  flags: number;
  private refs = 1;
  private luoRefCount = 0;
  private releasedFlag = false;

  constructor(readonly modes: FileModes, flags: number) {
    this.flags = flags;
  }

  /** /proc/<pid>/fd/<n> link text. */
  abstract get path(): string;
  abstract get statMode(): number;

  get luoRefs(): number {
    return this.luoRefCount;
  }
  set luoRefs(n: number) {
    this.luoRefCount = n;
    this.maybeRelease();
  }
  get closed(): boolean {
    return this.releasedFlag;
  }
  /** Number of references held by fds (and fork copies): for tests and diagnostics. */
  get fdRefs(): number {
    return this.refs;
  }

  get(): this {
    if (this.releasedFlag) throw new LuoError('EBADF', `${this.path}: the file has been released`);
    this.refs++;
    return this;
  }

  close(): void {
    if (this.refs === 0) throw new LuoError('EBADF', `${this.path}: no reference left to drop`);
    this.refs--;
    this.maybeRelease();
  }

  private maybeRelease(): void {
    if (this.releasedFlag || this.refs > 0 || this.luoRefCount > 0) return;
    this.releasedFlag = true;
    this.release();
  }

  /** f_op->release: runs once, when the last reference is gone. */
  protected release(): void {}

  /** f_op->read (at f_pos where the type has one); none means EINVAL (vfs_read). */
  read(_n: number): Uint8Array {
    throw new LuoError('EINVAL', `read: ${this.path} cannot be read`);
  }
  write(_data: Uint8Array): number {
    throw new LuoError('EINVAL', `write: ${this.path} cannot be written`);
  }
  /** f_op->llseek; none means ESPIPE. */
  llseek(_off: number, _whence: number): number {
    throw new LuoError('ESPIPE', `lseek: ${this.path} is not seekable`);
  }
  stat(): FileStat {
    return { mode: this.statMode, size: 0, blocks: 0 };
  }
}

/** /dev/null (drivers/char/mem.c): reads give EOF, writes swallow everything, seeks go to 0. */
export class NullFile extends VfsFile {
  readonly kind = 'chrdev:null';
  constructor(flags: number) {
    super(modesOf(flags, true), (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)) | O_LARGEFILE);
  }
  get path(): string {
    return '/dev/null';
  }
  get statMode(): number {
    return S_IFCHR | 0o666;
  }
  override read(): Uint8Array {
    return new Uint8Array(0);
  }
  override write(data: Uint8Array): number {
    return data.length;
  }
  override llseek(): number {
    this.pos = 0;
    return 0;
  }
}

/** The console (ttyS0): what processes write to it is collected; reading gives no input (0). */
export class ConsoleFile extends VfsFile {
  readonly kind = 'chrdev:tty';
  constructor(private readonly sink: (text: string) => void) {
    super(modesOf(O_RDWR, false), O_RDWR | O_LARGEFILE);
  }
  get path(): string {
    return '/dev/console';
  }
  get statMode(): number {
    return S_IFCHR | 0o600;
  }
  override read(): Uint8Array {
    return new Uint8Array(0);
  }
  override write(data: Uint8Array): number {
    this.sink(new TextDecoder().decode(data));
    return data.length;
  }
}

/** PIPE_DEF_BUFFERS pages: the capacity of a new pipe. */
export const PIPE_CAPACITY = 16 * 4096;
/** Writes up to PIPE_BUF bytes are atomic. */
export const PIPE_BUF = 4096;

/** The pipe_inode_info both ends share. */
export class Pipe {
  readonly chunks: Uint8Array[] = [];
  bytes = 0;
  readers = 0;
  writers = 0;
  constructor(readonly ino: number) {}
}

/**
 * One end of a pipe (fs/pipe.c). This simulation never sleeps: a read of an empty pipe that still
 * has writers, or a write to a full one, gives EAGAIN as with O_NONBLOCK. A write with no reader
 * left gives EPIPE (SIGPIPE is taken as ignored).
 */
export class PipeFile extends VfsFile {
  readonly kind = 'pipe';
  constructor(readonly pipe: Pipe, readonly end: 'read' | 'write', flags: number) {
    super(modesOf(end === 'read' ? O_RDONLY : O_WRONLY, false), (end === 'read' ? O_RDONLY : O_WRONLY) | (flags & O_NONBLOCK));
    if (end === 'read') pipe.readers++;
    else pipe.writers++;
  }
  get path(): string {
    return `pipe:[${this.pipe.ino}]`;
  }
  get statMode(): number {
    return S_IFIFO | 0o600;
  }
  protected override release(): void {
    if (this.end === 'read') this.pipe.readers--;
    else this.pipe.writers--;
  }
  override read(n: number): Uint8Array {
    const p = this.pipe;
    if (n === 0) return new Uint8Array(0);
    if (p.bytes === 0) {
      if (p.writers === 0) return new Uint8Array(0);
      throw new LuoError('EAGAIN', `read: ${this.path} is empty (a blocking read would sleep)`);
    }
    const out = new Uint8Array(Math.min(n, p.bytes));
    let got = 0;
    while (got < out.length) {
      const c = p.chunks[0]!;
      const take = Math.min(c.length, out.length - got);
      out.set(c.subarray(0, take), got);
      got += take;
      if (take === c.length) p.chunks.shift();
      else p.chunks[0] = c.subarray(take);
    }
    p.bytes -= got;
    return out;
  }
  override write(data: Uint8Array): number {
    const p = this.pipe;
    if (p.readers === 0) throw new LuoError('EPIPE', `write: ${this.path} has no reader`);
    if (data.length === 0) return 0;
    const room = PIPE_CAPACITY - p.bytes;
    if (room === 0 || (data.length <= PIPE_BUF && room < data.length)) throw new LuoError('EAGAIN', `write: ${this.path} is full (a blocking write would sleep)`);
    const n = Math.min(room, data.length);
    p.chunks.push(data.slice(0, n));
    p.bytes += n;
    return n;
  }
}

/** The kind of file behind an fd, as fstat's S_IFMT shows it. */
export function statOf(f: OpenFile): FileStat {
  if (f instanceof MemfdFile) {
    const s = f.stat();
    return { mode: s.mode, size: s.size, blocks: s.blocks };
  }
  return f.stat();
}

/** The /proc/<pid>/fd link text of a file. */
export function pathOf(f: OpenFile): string {
  if (f instanceof MemfdFile) return `/${f.inode.name} (deleted)`;
  return f.path;
}

/** f_flags of memfds (the memfd model keeps none): memfd_create opens O_RDWR | O_LARGEFILE. */
const memfdFlags = new WeakMap<MemfdFile, number>();

/** f_flags of any open file, as F_GETFL returns them. */
export function fileFlags(f: OpenFile): number {
  if (f instanceof MemfdFile) return memfdFlags.get(f) ?? O_RDWR | O_LARGEFILE;
  return f.flags;
}

/** Sets f_flags (F_SETFL, FIONBIO). */
export function setFileFlags(f: OpenFile, flags: number): void {
  if (f instanceof MemfdFile) memfdFlags.set(f, flags);
  else f.flags = flags;
}
