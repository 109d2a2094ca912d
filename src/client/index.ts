/**
 * The Node client of the luo daemon: /dev/liveupdate and LUO session fds for TypeScript programs,
 * one connection per open file (docs/protocol.md). Every failure is a LuoError carrying the
 * kernel's errno. Node has no memfd_create: preserveFd takes a real fd (a memfd this process got
 * from elsewhere), and preserveFile/preserveBuffer hand the daemon a file path or bytes that
 * stand in for a memfd's contents.
 */
import { LIVEUPDATE_IOCTL, LIVEUPDATE_SESSION_NAME_LENGTH } from '../abi/uapi.ts';
import { stringBytes } from '../bytes/cursor.ts';
import { LuoError } from '../errno.ts';
import { O_RDWR } from '../uapi/file.ts';
import type { DaemonStatus } from '../daemon/status.ts';
import {
  decodeIoctlReply, decodePrefix, defaultSocketPath, encodeIoctl, IOCTL_ARG_FAULT, IOCTL_NO_FD, HELLO_ENDS_AT_KEXEC, type IoctlReply, KEXEC_KEEP_CLIENTS, MAX_READ, MSG, PayloadReader, PayloadWriter,
  SEALS_UNKNOWN, SRC,
} from '../daemon/wire.ts';
import { Connection, errnoError } from './connection.ts';

export { Connection, errnoError } from './connection.ts';
export type { DaemonStatus } from '../daemon/status.ts';
export { defaultSocketPath } from '../daemon/wire.ts';

export interface ClientOptions {
  /** The pid stated in HELLO (default process.pid; synthetic pids act as other processes). */
  readonly pid?: number;
  /**
   * This client is a process of the running kernel, as the shim's programs are: a kexec ends the
   * processes holding its connections (HELLO_ENDS_AT_KEXEC) unless the kexec keeps clients.
   */
  readonly endsAtKexec?: boolean;
}

export interface RawIoctlOptions {
  /** What the call is about, for the error message (default: the command number). */
  readonly what?: string;
  /** A pointer that is not accessible at all (EFAULT from the kernel's first get_user). */
  readonly fault?: boolean;
  /** PRESERVE_FD source (default: the struct's fd is a real fd of this process). */
  readonly source?: PreserveSource;
  /** Reservation connection id for CREATE/RETRIEVE_SESSION (set by createSession/retrieveSession). */
  readonly newConn?: number;
  /**
   * The new fd could not be reserved (protocol 5.6, IOCTL flag NO_FD): for CREATE/RETRIEVE_SESSION
   * and RETRIEVE_FD the op fails with EMFILE where the kernel allocates the fd.
   */
  readonly noFd?: boolean;
}

export type PreserveSource =
  | { readonly kind: 'fd'; readonly hiddenFd?: number; readonly seals?: number; readonly pid?: number }
  | { readonly kind: 'path'; readonly path: string; readonly pos?: number | bigint; readonly seals?: number }
  | { readonly kind: 'buffer'; readonly data: Uint8Array; readonly pos?: number | bigint; readonly seals?: number }
  /** The file another connection of this daemon carries (a plugin file: protocol 4.11). */
  | { readonly kind: 'conn'; readonly connId: number };

export interface IoctlResult {
  /** The user's buffer after the call (the kernel's copy-back applied). */
  readonly arg: Uint8Array | undefined;
  readonly reply: IoctlReply;
}

/** A memfd retrieved from the previous kernel: its bytes and metadata. */
export interface RetrievedFile {
  readonly token: bigint;
  readonly content: Uint8Array;
  readonly size: number;
  readonly pos: number;
  readonly seals: number;
  /** The same id means the same open file (a second RETRIEVE_FD of a token). */
  readonly id: bigint;
  readonly again: boolean;
}

const SRC_KIND = { fd: SRC.PROC_FD, path: SRC.PATH, buffer: SRC.BUFFER, conn: SRC.CONN } as const;

function sourceBytes(src: PreserveSource | undefined): Uint8Array {
  if (!src || src.kind === 'fd') return new Uint8Array(0);
  if (src.kind === 'path') return new TextEncoder().encode(src.path);
  if (src.kind === 'buffer') return src.data;
  return new PayloadWriter().u32(src.connId).finish();
}

const le = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function nameArg(name: string): Uint8Array {
  const b = new Uint8Array(72);
  le(b).setUint32(0, 72, true);
  b.set(stringBytes(name).subarray(0, LIVEUPDATE_SESSION_NAME_LENGTH - 1), 8);
  return b;
}

function fdTokenArg(fd: number, token: bigint | number): Uint8Array {
  const b = new Uint8Array(16);
  le(b).setUint32(0, 16, true);
  le(b).setInt32(4, fd, true);
  le(b).setBigUint64(8, BigInt.asUintN(64, BigInt(token)), true);
  return b;
}

/** An open file of the daemon's kernel: the device or a session. */
abstract class LuoFileHandle {
  constructor(readonly client: LuoClient, readonly conn: Connection) {}

  /**
   * ioctl(2) over raw argument bytes: resolves with the buffer after the kernel's copy-back, or
   * rejects with the errno. `arg` is the accessible user memory (undefined: a bad pointer).
   */
  async ioctl(cmd: number, arg: Uint8Array | undefined, opts: RawIoctlOptions = {}): Promise<IoctlResult> {
    const src = opts.source;
    const payload = encodeIoctl({
      cmd: cmd >>> 0,
      flags: (arg === undefined || opts.fault ? IOCTL_ARG_FAULT : 0) | (opts.noFd ? IOCTL_NO_FD : 0),
      arg: arg === undefined || opts.fault ? new Uint8Array(0) : arg,
      newConn: opts.newConn ?? 0,
      callerPid: src?.kind === 'fd' ? (src.pid ?? this.client.pid) : 0,
      srcKind: !src ? SRC.PROC_FD : SRC_KIND[src.kind],
      srcSeals: src?.kind === 'conn' ? 0 : (src?.seals ?? SEALS_UNKNOWN),
      srcHiddenFd: src?.kind === 'fd' ? (src.hiddenFd ?? -1) : -1,
      srcPos: BigInt(src?.kind === 'path' || src?.kind === 'buffer' ? (src.pos ?? 0) : 0),
      src: sourceBytes(src),
    });
    const reply = decodeIoctlReply(await this.conn.request(MSG.IOCTL, payload));
    if (arg && reply.out.length) arg.set(reply.out, 0);
    if (reply.ret < 0) throw errnoError(reply.errno, `${opts.what ?? `ioctl 0x${(cmd >>> 0).toString(16)}`} failed`);
    return { arg, reply };
  }

  /** close(2) of the last reference: the file is released before this resolves. */
  async close(): Promise<void> {
    if (this.conn.isClosed) return;
    const r = decodePrefix(await this.conn.request(MSG.CLOSE, new Uint8Array(0)));
    await this.conn.waitClosed();
    if (r.ret < 0) throw errnoError(r.errno, 'close failed');
  }
}

/** An open /dev/liveupdate. */
export class LuoDevice extends LuoFileHandle {
  private async sessionIoctl(cmd: number, name: string): Promise<LuoSession> {
    // The fd is reserved first, as the kernel does (EMFILE before any work).
    const reservation = await this.client.rawConnection();
    try {
      await this.ioctl(cmd, nameArg(name), { newConn: reservation.connId, what: `${cmd === LIVEUPDATE_IOCTL.CREATE_SESSION ? 'CREATE_SESSION' : 'RETRIEVE_SESSION'} "${name}"` });
    } catch (e) {
      reservation.destroy();
      throw e;
    }
    return new LuoSession(this.client, reservation, name);
  }

  /** LIVEUPDATE_IOCTL_CREATE_SESSION. */
  createSession(name: string): Promise<LuoSession> {
    return this.sessionIoctl(LIVEUPDATE_IOCTL.CREATE_SESSION, name);
  }

  /** LIVEUPDATE_IOCTL_RETRIEVE_SESSION. */
  retrieveSession(name: string): Promise<LuoSession> {
    return this.sessionIoctl(LIVEUPDATE_IOCTL.RETRIEVE_SESSION, name);
  }
}

/**
 * An open file of a handler plugin (`/dev/luo/<compatible>`, or one RETRIEVE_FD handed out):
 * read(2) and write(2) reach the plugin's file, PRESERVE_FD takes it by its connection.
 */
export class LuoPluginFile extends LuoFileHandle {
  constructor(client: LuoClient, conn: Connection, readonly compatible: string) {
    super(client, conn);
  }

  /** read(2) of at most `count` bytes. */
  async read(count: number): Promise<Uint8Array> {
    const r = decodePrefix(await this.conn.request(MSG.FILE_READ, new PayloadWriter().u32(count).u32(0).finish()));
    if (r.ret < 0) throw errnoError(r.errno, `read of a ${this.compatible} file failed`);
    return r.rest;
  }

  /** write(2): the bytes the file accepted. */
  async write(data: Uint8Array): Promise<number> {
    const r = decodePrefix(await this.conn.request(MSG.FILE_WRITE, data));
    if (r.ret < 0) throw errnoError(r.errno, `write of a ${this.compatible} file failed`);
    return r.ret;
  }
}

/** A LUO session fd. */
export class LuoSession extends LuoFileHandle {
  /** "OP of token 0x1a in session "name"": what an error message says the call was about. */
  private about(op: string, token: bigint | number): string {
    return `${op} of token 0x${BigInt.asUintN(64, BigInt(token)).toString(16)} in session "${this.requestedName}"`;
  }

  constructor(client: LuoClient, conn: Connection, readonly requestedName: string) {
    super(client, conn);
  }

  /** LIVEUPDATE_SESSION_PRESERVE_FD of a real fd of this process (a memfd; anything else ENOENT). */
  async preserveFd(fd: number, token: bigint | number, opts: { hiddenFd?: number; seals?: number } = {}): Promise<void> {
    await this.ioctl(LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, fdTokenArg(fd, token), { source: { kind: 'fd', ...opts }, what: this.about('PRESERVE_FD', token) });
  }

  /** PRESERVE_FD of a memfd whose contents are the file at `path` (read at kexec; size now). */
  async preserveFile(path: string, token: bigint | number, opts: { pos?: number; seals?: number } = {}): Promise<void> {
    await this.ioctl(LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, fdTokenArg(-1, token), { source: { kind: 'path', path, ...opts }, what: `${this.about('PRESERVE_FD', token)} (${path})` });
  }

  /** PRESERVE_FD of a memfd holding `data` (as if memfd_create + write + preserve). */
  async preserveBuffer(data: Uint8Array | string, token: bigint | number, opts: { pos?: number; seals?: number } = {}): Promise<void> {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    await this.ioctl(LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, fdTokenArg(-1, token), { source: { kind: 'buffer', data: bytes, ...opts }, what: this.about('PRESERVE_FD', token) });
  }

  /** PRESERVE_FD of a plugin's file this client opened or retrieved. */
  async preservePluginFile(file: LuoPluginFile, token: bigint | number): Promise<void> {
    await this.ioctl(LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD, fdTokenArg(-1, token), { source: { kind: 'conn', connId: file.conn.connId }, what: `${this.about('PRESERVE_FD', token)} (a ${file.compatible} file)` });
  }

  /** LIVEUPDATE_SESSION_RETRIEVE_FD of a plugin's file: it becomes a file of this client. */
  async retrievePlugin(token: bigint | number, compatible = 'plugin'): Promise<LuoPluginFile> {
    const { reply } = await this.ioctl(LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD, fdTokenArg(0, token), { what: this.about('RETRIEVE_FD', token) });
    const f = reply.file;
    if (!f) throw new LuoError('EPROTO', 'RETRIEVE_FD reply without a file');
    if (!f.conn) {
      await this.conn.request(MSG.RELEASE_FILE, new PayloadWriter().u64(f.handle).finish()).catch(() => undefined);
      throw new LuoError('EINVAL', `${this.about('RETRIEVE_FD', token)}: a memfd, not a plugin's file (use retrieve())`);
    }
    const conn = await this.client.rawConnection();
    const r = decodePrefix(await conn.request(MSG.ATTACH, new PayloadWriter().u32(this.conn.connId).u32(0).u64(f.handle).finish()));
    if (r.ret < 0) {
      await conn.end();
      throw errnoError(r.errno, `ATTACH of the file ${this.about('RETRIEVE_FD', token)} handed out`);
    }
    return new LuoPluginFile(this.client, conn, compatible);
  }

  /** LIVEUPDATE_SESSION_RETRIEVE_FD: the memfd's contents and metadata. */
  async retrieve(token: bigint | number): Promise<RetrievedFile> {
    const { reply } = await this.ioctl(LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD, fdTokenArg(0, token), { what: this.about('RETRIEVE_FD', token) });
    const f = reply.file;
    if (!f) throw new LuoError('EPROTO', 'RETRIEVE_FD reply without a file');
    if (f.conn) {
      // the retrieved file stays LUO's until FINISH: retrievePlugin() hands it out again
      await this.conn.request(MSG.RELEASE_FILE, new PayloadWriter().u64(f.handle).finish()).catch(() => undefined);
      throw new LuoError('EINVAL', `${this.about('RETRIEVE_FD', token)}: a plugin's file, not a memfd (use retrievePlugin())`);
    }
    const size = Number(f.size);
    const content = new Uint8Array(size);
    content.set(f.inline.subarray(0, size));
    let got = f.inline.length;
    try {
      while (got < size) {
        const len = Math.min(MAX_READ, size - got);
        const r = decodePrefix(await this.conn.request(MSG.READ_FILE, new PayloadWriter().u64(f.handle).u64(got).u32(len).u32(0).finish()));
        if (r.ret < 0) throw errnoError(r.errno, 'READ_FILE failed');
        if (r.ret === 0) break;
        content.set(r.rest, got);
        got += r.ret;
      }
    } finally {
      await this.conn.request(MSG.RELEASE_FILE, new PayloadWriter().u64(f.handle).finish()).catch(() => undefined);
    }
    return { token: BigInt(token), content, size, pos: Number(f.pos), seals: f.seals, id: f.id, again: f.again };
  }

  /** LIVEUPDATE_SESSION_FINISH. */
  async finish(): Promise<void> {
    const b = new Uint8Array(8);
    le(b).setUint32(0, 8, true);
    await this.ioctl(LIVEUPDATE_IOCTL.SESSION_FINISH, b, { what: `FINISH of session "${this.requestedName}"` });
  }

  /** LIVEUPDATE_SESSION_GET_NAME. */
  async getName(): Promise<string> {
    const b = new Uint8Array(72);
    le(b).setUint32(0, 72, true);
    await this.ioctl(LIVEUPDATE_IOCTL.SESSION_GET_NAME, b);
    const f = b.subarray(8, 72);
    const n = f.indexOf(0);
    return new TextDecoder().decode(f.subarray(0, n < 0 ? 64 : n));
  }
}

export interface KexecReply {
  readonly pid: number;
  readonly generation: bigint;
  readonly stats: Record<string, unknown>;
}

/** A client process of the daemon: its control connection plus the files it opens. */
export class LuoClient {
  private constructor(readonly socketPath: string, readonly pid: number, private readonly helloFlags: number, readonly control: Connection) {}

  /** Connects to the daemon (default path: $XDG_RUNTIME_DIR/luo/luo.sock or /tmp/luo-$UID/luo.sock). */
  static async connect(socketPath: string = defaultSocketPath(), opts: ClientOptions = {}): Promise<LuoClient> {
    const pid = opts.pid ?? process.pid;
    const flags = opts.endsAtKexec ? HELLO_ENDS_AT_KEXEC : 0;
    return new LuoClient(socketPath, pid, flags, await Connection.open(socketPath, pid, flags));
  }

  /** Connects, retrying while the socket is missing or refused (e.g. during a kexec). */
  static async connectRetry(socketPath: string = defaultSocketPath(), opts: ClientOptions & { timeoutMs?: number } = {}): Promise<LuoClient> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10000);
    for (;;) {
      try {
        return await LuoClient.connect(socketPath, opts);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  get generation(): bigint {
    return this.control.hello!.generation;
  }

  get liveupdateNum(): number {
    return this.control.hello!.liveupdateNum;
  }

  /** The daemon's process id (HELLO). */
  get daemonPid(): number {
    return this.control.hello!.daemonPid;
  }

  /** open("/dev/liveupdate", O_RDWR): EBUSY while open elsewhere, ENOENT without LUO. */
  async openDevice(flags = O_RDWR): Promise<LuoDevice> {
    const conn = await this.rawConnection();
    const r = decodePrefix(await conn.request(MSG.OPEN_DEVICE, new PayloadWriter().u32(flags).u32(0).finish()));
    if (r.ret < 0) {
      await conn.end();
      throw errnoError(r.errno, `open /dev/liveupdate`);
    }
    return new LuoDevice(this, conn);
  }

  /**
   * open("/dev/luo/<compatible>"): a file of a handler plugin built into the daemon's kernel
   * (`luo serve --handler`); `args` go to the plugin's open() as JSON. ENOENT: no such plugin.
   */
  async openPlugin(compatible: string, opts: { flags?: number; args?: unknown } = {}): Promise<LuoPluginFile> {
    const enc = new TextEncoder();
    const name = enc.encode(compatible);
    const args = opts.args === undefined ? new Uint8Array(0) : enc.encode(JSON.stringify(opts.args));
    const conn = await this.rawConnection();
    const r = decodePrefix(await conn.request(MSG.OPEN_PLUGIN, new PayloadWriter().u32(opts.flags ?? O_RDWR).u32(name.length).u32(args.length).u32(0).bytes(name).bytes(args).finish()));
    if (r.ret < 0) {
      await conn.end();
      throw errnoError(r.errno, `open /dev/luo/${compatible}`);
    }
    return new LuoPluginFile(this, conn, compatible);
  }

  /** A fresh connection of this process (for raw protocol use). */
  rawConnection(): Promise<Connection> {
    return Connection.open(this.socketPath, this.pid, this.helloFlags);
  }

  async status(): Promise<DaemonStatus> {
    const r = decodePrefix(await this.control.request(MSG.STATUS, new Uint8Array(0)));
    if (r.ret < 0) throw errnoError(r.errno, 'STATUS failed');
    return JSON.parse(new TextDecoder().decode(r.rest)) as DaemonStatus;
  }

  /**
   * Kexec into a new daemon process (optionally another luo build, a new command line). Resolves
   * once the new daemon owns the socket; this client's connections are gone then (reconnect).
   * `release` picks another kernel release (luo releases). Processes of the old kernel (shim
   * clients) are ended unless `keepClients`.
   */
  async kexec(opts: { build?: string; cmdline?: string; release?: string; keepClients?: boolean } = {}): Promise<KexecReply> {
    const enc = new TextEncoder();
    const build = enc.encode(opts.build ?? '');
    const cmdline = enc.encode(opts.cmdline ?? '');
    const release = enc.encode(opts.release ?? '');
    const p = await this.control.request(
      MSG.KEXEC,
      new PayloadWriter().u32(opts.keepClients ? KEXEC_KEEP_CLIENTS : 0).u32(build.length).u32(cmdline.length).u32(release.length).bytes(build).bytes(cmdline).bytes(release).finish(),
    );
    const r = new PayloadReader(p, 'KEXEC reply');
    const ret = r.i32();
    const errno = r.u32();
    if (ret < 0) {
      const why = new TextDecoder().decode(r.rest());
      throw errnoError(errno, why.startsWith('kexec') ? why : `kexec: ${why}`);
    }
    const pid = r.u32();
    r.u32();
    const generation = r.u64();
    return { pid, generation, stats: JSON.parse(new TextDecoder().decode(r.rest())) as Record<string, unknown> };
  }

  /** Powers the daemon off. */
  async shutdown(): Promise<void> {
    const r = decodePrefix(await this.control.request(MSG.SHUTDOWN, new Uint8Array(0)));
    if (r.ret < 0) throw errnoError(r.errno, 'SHUTDOWN failed');
  }

  /** Closes the control connection (files opened through this client stay open). */
  async close(): Promise<void> {
    if (!this.control.isClosed) await this.control.end();
  }
}

/** Shorthand for LuoClient.connect. */
export const connect = LuoClient.connect;
