/**
 * The two kinds of LUO files userspace holds: the /dev/liveupdate misc device (its release frees
 * the exclusive open; kernel/liveupdate/luo_core.c) and session files, anon-inode files named
 * "[luo_session] <name>" whose release unpreserves or finishes the session (luo_session.c).
 */
import { LuoError } from '../errno.ts';
import type { Luo } from '../luo/core.ts';
import type { LuoSession } from '../luo/session.ts';
import type { KernelFile } from '../luo/file-handler.ts';
import { pluginCall, type PluginFileIo } from '../luo/plugin.ts';
import type { KernelLog, LogLevel } from '../kernel/log.ts';
import { modesOf, O_CLOEXEC, O_CREAT, O_EXCL, O_LARGEFILE, O_NOCTTY, O_RDWR, O_TRUNC, S_IFCHR, VfsFile } from './file.ts';

export const LIVEUPDATE_DEV = '/dev/liveupdate';

/** An open /dev/liveupdate. Only one exists at a time; ioctls go to the device dispatcher. */
export class LuoDeviceFile extends VfsFile {
  readonly kind = 'chrdev:liveupdate';
  constructor(readonly luo: Luo, flags: number) {
    super(modesOf(flags, true), (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)) | O_LARGEFILE);
  }
  get path(): string {
    return LIVEUPDATE_DEV;
  }
  get statMode(): number {
    return S_IFCHR | 0o600;
  }
  /** luo_release: the device may be opened again. Sessions are not touched. */
  protected override release(): void {
    this.luo.close();
  }
}

/**
 * A session fd's file (anon_inode_getfile, O_RDWR). Its release is luo_session_release: an
 * outgoing session is unpreserved and removed, an incoming one finished and removed; a failure
 * (an EBUSY finish, or state frozen by a kexec in progress) is logged, as close(2) ignores it.
 */
export class SessionFile extends VfsFile {
  readonly kind = 'anon:luo_session';
  constructor(readonly luo: Luo, readonly session: LuoSession, private readonly warn: (msg: string) => void) {
    // An anon inode file (anon_inode_getfile -> alloc_file_pseudo) never gets FMODE_PREAD/PWRITE,
    // which only do_dentry_open sets (7.3.4 fs/open.c): pread/pwrite are ESPIPE before any access
    // check. Found by `luo conform` against a real 7.3.4.
    super(modesOf(O_RDWR, false), O_RDWR);
  }
  /** The anon inode's dentry name, as /proc/<pid>/fd shows it. */
  get path(): string {
    return `anon_inode:${this.session.fileName}`;
  }
  get statMode(): number {
    return 0o600;
  }
  protected override release(): void {
    try {
      this.luo.sessions.release(this.session);
    } catch (e) {
      if (!(e instanceof LuoError)) throw e;
      this.warn(`luo_session: Unable to ${this.session.retrieved ? 'finish' : 'release'} session [${this.session.name}] on release: ${e.errno}`);
    }
  }
}

/**
 * An fd of a file handler plugin's kind (an eventfd, a VFIO device...): an anon inode around the
 * plugin's own file object, which is what LUO and the plugin's callbacks see (PRESERVE_FD unwraps
 * it; RETRIEVE_FD wraps what the plugin's retrieve made).
 */
/** Where a handler plugin's device node is: `/dev/luo/<compatible>`. */
export const PLUGIN_DEV_DIR = '/dev/luo/';

export class PluginFile extends VfsFile {
  readonly kind = 'anon:luo_plugin';
  constructor(readonly inner: KernelFile, flags = O_RDWR) {
    super(modesOf(flags, false), flags & ~(O_CLOEXEC | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC));
  }
  get path(): string {
    return `anon_inode:[${this.inner.kind}]`;
  }
  get statMode(): number {
    return 0o600;
  }
  override read(n: number): Uint8Array {
    const io = this.inner as KernelFile & PluginFileIo;
    if (typeof io.read !== 'function') return super.read(n);
    const out = pluginCall(`read of ${this.path}`, () => io.read!(n));
    if (!(out instanceof Uint8Array) || out.length > n) throw new LuoError('EIO', `read of ${this.path}: the plugin returned ${out instanceof Uint8Array ? `${out.length} bytes for a ${n}-byte read` : 'something other than bytes'}`);
    return out;
  }
  override write(data: Uint8Array): number {
    const io = this.inner as KernelFile & PluginFileIo;
    if (typeof io.write !== 'function') return super.write(data);
    const n = pluginCall(`write of ${this.path}`, () => io.write!(data));
    if (!Number.isSafeInteger(n) || n < 0 || n > data.length) throw new LuoError('EIO', `write of ${this.path}: the plugin accepted ${String(n)} of ${data.length} bytes`);
    return n;
  }
}


/** syslog priorities of the kernel's log levels (facility 0: the kernel). */
const SYSLOG_LEVEL: Record<LogLevel, number> = { emerg: 0, err: 3, warn: 4, notice: 5, info: 6, debug: 7 };

/**
 * /dev/kmsg (kernel/printk/printk.c devkmsg_read): each read returns one record,
 * "<prio>,<seq>,<usec>,-;<message>\n"; a buffer too small for it is EINVAL; at the end of the log
 * EAGAIN (with or without O_NONBLOCK: nothing here can wait for a new line). SEEK_SET 0 goes back to
 * the first record, SEEK_END to the end. What a real agent reads, rather than kernel internals.
 */
export class KmsgFile extends VfsFile {
  readonly kind = 'chrdev:kmsg';
  private seq = 0;
  constructor(private readonly log: KernelLog, flags: number) {
    super(modesOf(flags, false), flags);
  }
  get path(): string {
    return '/dev/kmsg';
  }
  get statMode(): number {
    return S_IFCHR | 0o644;
  }
  override read(n: number): Uint8Array {
    const l = this.log.lines[this.seq];
    if (!l) throw new LuoError('EAGAIN', '/dev/kmsg: no new record');
    const rec = new TextEncoder().encode(`${SYSLOG_LEVEL[l.level]},${this.seq},${Math.round(l.t * 1e6)},-;${l.msg.replace(/[\n\\]/g, (c) => (c === '\n' ? '\\x0a' : '\\x5c'))}\n`);
    if (rec.length > n) throw new LuoError('EINVAL', `/dev/kmsg: a ${n}-byte buffer is too small for the ${rec.length}-byte record`);
    this.seq++;
    return rec;
  }
  override llseek(off: number, whence: number): number {
    if (off !== 0) throw new LuoError('EINVAL', '/dev/kmsg: only offset 0 can be sought');
    if (whence === 0) this.seq = 0;
    else if (whence === 2) this.seq = this.log.lines.length;
    else throw new LuoError('EINVAL', `/dev/kmsg: whence ${whence} is not supported`);
    return 0;
  }
}
