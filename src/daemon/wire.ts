/**
 * The daemon's wire format (docs/protocol.md): 16-byte frame headers, the reply prefix, and the
 * fixed layouts of every message, encoded and decoded symmetrically. Shared by the daemon and the
 * Node client.
 */
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';

export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 16;
export const MAX_PAYLOAD = 16 << 20;
export const MAX_ARG = 65536;
export const MAX_READ = 8 << 20;
export const MAX_INLINE = 1 << 20;
export const REPLY = 0x80000000;
export const ERROR_TYPE = 0xffffffff;

export const MSG = {
  HELLO: 1,
  OPEN_DEVICE: 2,
  IOCTL: 3,
  CLOSE: 4,
  READ_FILE: 5,
  RELEASE_FILE: 6,
  STATUS: 16,
  KEXEC: 17,
  SHUTDOWN: 18,
  /** KHO debugfs files as JSON (docs/protocol.md 4.9). */
  DEBUGFS: 19,
  /** Hand this connection's session file to the daemon's holder (4.10). */
  HOLD: 20,
  /** Take a held session back onto a fresh connection (4.10). */
  TAKE: 21,
  /** open(2) of a handler plugin's device node `/dev/luo/<compatible>` (4.11). */
  OPEN_PLUGIN: 22,
  /** read(2) of a plugin file (4.11). */
  FILE_READ: 23,
  /** write(2) of a plugin file (4.11). */
  FILE_WRITE: 24,
  /** Make a plugin file RETRIEVE_FD handed out this connection's file (4.11). */
  ATTACH: 25,
} as const;

/** STATUS request flag: include `machine` (memory map, KHO tree, handlers; src/web/view.ts). */
export const STATUS_MACHINE = 1;
export type MsgType = (typeof MSG)[keyof typeof MSG];
const KNOWN = new Set<number>(Object.values(MSG));
export const isKnownType = (t: number): t is MsgType => KNOWN.has(t);

export const IOCTL_ARG_FAULT = 1;
/** IOCTL flag: the client could not reserve the new fd (EMFILE/ENFILE); the kernel fails where get_unused_fd_flags runs. */
export const IOCTL_NO_FD = 2;
/** IOCTL flag: the struct goes on past `arg` (size > MAX_ARG) and bytes [arg_len, size) are accessible zeros. */
export const IOCTL_TAIL_ZERO = 4;
/** IOCTL flag: the struct goes on past `arg` and a nonzero byte comes there before any fault. */
export const IOCTL_TAIL_NONZERO = 8;
/** HELLO reply `features` bits. */
export const FEATURE_IOCTL_NO_FD = 1;
/** The daemon understands IOCTL_TAIL_ZERO / IOCTL_TAIL_NONZERO. */
export const FEATURE_IOCTL_TAIL = 2;
/** The daemon understands HELLO_ENDS_AT_KEXEC and KEXEC_KEEP_CLIENTS. */
export const FEATURE_END_AT_KEXEC = 4;
/** The daemon understands OPEN_PLUGIN, FILE_READ/WRITE, ATTACH, SRC.CONN and REPLY_CONN (4.11). */
export const FEATURE_PLUGIN_FILES = 8;
/** What this daemon understands beyond version 1 as first published. */
export const DAEMON_FEATURES = FEATURE_IOCTL_NO_FD | FEATURE_IOCTL_TAIL | FEATURE_END_AT_KEXEC | FEATURE_PLUGIN_FILES;
/** HELLO flag: this client is a process of the running kernel; a kexec ends whoever holds its end. */
export const HELLO_ENDS_AT_KEXEC = 1;
/** KEXEC flag: leave the old kernel's client processes running (a kexec ends them by default). */
export const KEXEC_KEEP_CLIENTS = 1;
export const REPLY_FILE = 1;
export const REPLY_AGAIN = 2;
/** IOCTL reply flag with REPLY_FILE: the file is a plugin's; ATTACH it to a new connection (4.11). */
export const REPLY_CONN = 4;
/** PRESERVE_FD sources (5.2); CONN: `src` is the u32 conn_id of a connection whose file is preserved (4.11). */
export const SRC = { NONE: 0, PROC_FD: 1, PATH: 2, BUFFER: 3, CONN: 4 } as const;
/** Longest plugin name and JSON arguments OPEN_PLUGIN takes. */
export const MAX_PLUGIN_NAME = 255;
export const MAX_PLUGIN_ARGS = 65536;
export const SEALS_UNKNOWN = 0xffffffff;

/** errno numbers the protocol itself uses (Linux values). */
export const E = { EBADF: 9, EPROTO: 71, EMSGSIZE: 90, EPROTONOSUPPORT: 93 } as const;

export interface FrameHeader {
  length: number;
  type: number;
  seq: number;
  reserved: number;
}

const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

export function encodeFrame(type: number, seq: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(type >>> 0, 4);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt32LE(0, 12);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Why a stream stopped making sense: reported in an ERROR frame, then the connection closes. */
export class FrameError extends Error {
  constructor(readonly errno: number, message: string, readonly seq = 0) {
    super(message);
  }
}

/**
 * Accumulates stream bytes and yields complete frames. A header with an oversized length or a
 * nonzero reserved word is a FrameError at once (nothing after it can be trusted).
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;

  push(data: Buffer): void {
    this.chunks.push(data);
    this.have += data.length;
  }

  next(): { header: FrameHeader; payload: Buffer } | undefined {
    if (this.have < HEADER_SIZE) return undefined;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.have);
    this.chunks = [buf];
    const header = { length: buf.readUInt32LE(0), type: buf.readUInt32LE(4), seq: buf.readUInt32LE(8), reserved: buf.readUInt32LE(12) };
    if (header.length > MAX_PAYLOAD) throw new FrameError(E.EMSGSIZE, `frame of ${header.length} bytes exceeds the maximum of ${MAX_PAYLOAD}`, header.seq);
    if (header.reserved !== 0) throw new FrameError(E.EPROTO, `frame header: reserved word at offset 12 is 0x${header.reserved.toString(16)}, not 0`, header.seq);
    if (this.have < HEADER_SIZE + header.length) return undefined;
    const payload = buf.subarray(HEADER_SIZE, HEADER_SIZE + header.length);
    const rest = buf.subarray(HEADER_SIZE + header.length);
    this.chunks = rest.length ? [rest] : [];
    this.have = rest.length;
    return { header, payload };
  }
}

/** A bounds-checked little-endian reader over a payload; overruns are EPROTO FrameErrors. */
export class PayloadReader {
  private off = 0;
  constructor(private readonly b: Uint8Array, private readonly what: string, private readonly seq = 0) {}
  private need(n: number): number {
    if (this.off + n > this.b.length) throw new FrameError(E.EPROTO, `${this.what}: payload of ${this.b.length} bytes ends at offset ${this.off}, ${n} more needed`, this.seq);
    const at = this.off;
    this.off += n;
    return at;
  }
  u32(): number {
    return dv(this.b).getUint32(this.need(4), true);
  }
  i32(): number {
    return dv(this.b).getInt32(this.need(4), true);
  }
  u64(): bigint {
    return dv(this.b).getBigUint64(this.need(8), true);
  }
  bytes(n: number): Uint8Array {
    const at = this.need(n);
    return this.b.subarray(at, at + n);
  }
  rest(): Uint8Array {
    return this.bytes(this.b.length - this.off);
  }
  get offset(): number {
    return this.off;
  }
  end(): void {
    if (this.off !== this.b.length) throw new FrameError(E.EPROTO, `${this.what}: ${this.b.length - this.off} unexpected byte(s) at offset ${this.off}`, this.seq);
  }
}

/** Builds a payload from little-endian fields. */
export class PayloadWriter {
  private parts: Uint8Array[] = [];
  private len = 0;
  private add(b: Uint8Array): this {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    dv(b).setUint32(0, v >>> 0, true);
    return this.add(b);
  }
  i32(v: number): this {
    const b = new Uint8Array(4);
    dv(b).setInt32(0, v | 0, true);
    return this.add(b);
  }
  u64(v: bigint | number): this {
    const b = new Uint8Array(8);
    dv(b).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
    return this.add(b);
  }
  bytes(b: Uint8Array): this {
    return this.add(b);
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.len);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

// ------------------------------------------------------------------ message layouts

export interface IoctlRequest {
  cmd: number;
  flags: number;
  arg: Uint8Array;
  newConn: number;
  callerPid: number;
  srcKind: number;
  srcSeals: number;
  srcHiddenFd: number;
  srcPos: bigint;
  src: Uint8Array;
}

export function encodeIoctl(r: IoctlRequest): Uint8Array {
  return new PayloadWriter()
    .u32(r.cmd).u32(r.flags).u32(r.arg.length).i32(r.newConn).i32(r.callerPid).u32(r.srcKind).u32(r.srcSeals).i32(r.srcHiddenFd)
    .u64(r.srcPos).u32(r.src.length).u32(0).bytes(r.arg).bytes(r.src).finish();
}

export function decodeIoctl(p: Uint8Array, seq = 0): IoctlRequest {
  const r = new PayloadReader(p, 'IOCTL', seq);
  const cmd = r.u32();
  const flags = r.u32();
  const argLen = r.u32();
  const newConn = r.i32();
  const callerPid = r.i32();
  const srcKind = r.u32();
  const srcSeals = r.u32();
  const srcHiddenFd = r.i32();
  const srcPos = r.u64();
  const srcLen = r.u32();
  const reserved = r.u32();
  if (reserved !== 0) throw new FrameError(E.EPROTO, 'IOCTL: reserved field at offset 44 is not 0', seq);
  if (flags & ~(IOCTL_ARG_FAULT | IOCTL_NO_FD | IOCTL_TAIL_ZERO | IOCTL_TAIL_NONZERO)) throw new FrameError(E.EPROTO, `IOCTL: unknown flags 0x${flags.toString(16)} at offset 4`, seq);
  if (argLen > MAX_ARG) throw new FrameError(E.EPROTO, `IOCTL: arg_len ${argLen} at offset 8 exceeds ${MAX_ARG}`, seq);
  if (flags & IOCTL_ARG_FAULT && argLen !== 0) throw new FrameError(E.EPROTO, 'IOCTL: ARG_FAULT with a nonzero arg_len', seq);
  if (srcKind > SRC.CONN) throw new FrameError(E.EPROTO, `IOCTL: src_kind ${srcKind} at offset 20 is unknown`, seq);
  if (srcKind === SRC.CONN && srcLen !== 4) throw new FrameError(E.EPROTO, `IOCTL: src_kind CONN needs a 4-byte src (a conn_id), not ${srcLen}`, seq);
  const arg = r.bytes(argLen);
  const src = r.bytes(srcLen);
  r.end();
  if (flags & (IOCTL_TAIL_ZERO | IOCTL_TAIL_NONZERO)) {
    if ((flags & IOCTL_TAIL_ZERO) && (flags & IOCTL_TAIL_NONZERO)) throw new FrameError(E.EPROTO, 'IOCTL: TAIL_ZERO and TAIL_NONZERO together', seq);
    const size = argLen >= 4 ? (arg[0]! | (arg[1]! << 8) | (arg[2]! << 16) | (arg[3]! << 24)) >>> 0 : 0;
    if (argLen !== MAX_ARG || size <= MAX_ARG) throw new FrameError(E.EPROTO, `IOCTL: a tail flag needs arg_len ${MAX_ARG} and a struct size above it (arg_len ${argLen}, size ${size})`, seq);
  }
  return { cmd, flags, arg, newConn, callerPid, srcKind, srcSeals, srcHiddenFd, srcPos, src };
}

export interface RetrievedFileInfo {
  handle: bigint;
  id: bigint;
  size: bigint;
  pos: bigint;
  seals: number;
  again: boolean;
  inline: Uint8Array;
  /** A plugin's file: the client ATTACHes it to a connection instead of filling a memfd. */
  conn?: boolean;
}

export interface IoctlReply {
  ret: number;
  errno: number;
  out: Uint8Array;
  file?: RetrievedFileInfo;
}

export function encodeIoctlReply(r: IoctlReply): Uint8Array {
  const f = r.file;
  return new PayloadWriter()
    .i32(r.ret).u32(r.errno).u32(r.out.length).u32(f ? REPLY_FILE | (f.again ? REPLY_AGAIN : 0) | (f.conn ? REPLY_CONN : 0) : 0)
    .u64(f?.handle ?? 0n).u64(f?.id ?? 0n).u64(f?.size ?? 0n).u64(f?.pos ?? 0n).u32(f?.seals ?? 0).u32(f?.inline.length ?? 0)
    .bytes(r.out).bytes(f?.inline ?? new Uint8Array(0)).finish();
}

export function decodeIoctlReply(p: Uint8Array): IoctlReply {
  const r = new PayloadReader(p, 'IOCTL reply');
  const ret = r.i32();
  const errno = r.u32();
  const outLen = r.u32();
  const flags = r.u32();
  const handle = r.u64();
  const id = r.u64();
  const size = r.u64();
  const pos = r.u64();
  const seals = r.u32();
  const inlineLen = r.u32();
  const out = r.bytes(outLen);
  const inline = r.bytes(inlineLen);
  r.end();
  return { ret, errno, out, ...(flags & REPLY_FILE ? { file: { handle, id, size, pos, seals, again: (flags & REPLY_AGAIN) !== 0, inline, ...(flags & REPLY_CONN ? { conn: true } : {}) } } : {}) };
}

export interface HelloReply {
  ret: number;
  errno: number;
  version: number;
  connId: number;
  generation: bigint;
  liveupdateNum: number;
  daemonPid: number;
  /** FEATURE_* bits (0 from a daemon that predates the field). */
  features: number;
}

export function encodeHelloReply(h: HelloReply): Uint8Array {
  return new PayloadWriter().i32(h.ret).u32(h.errno).u32(h.version).u32(h.connId).u64(h.generation).u32(h.liveupdateNum).u32(h.daemonPid).u32(h.features).finish();
}

export function decodeHelloReply(p: Uint8Array): HelloReply {
  const r = new PayloadReader(p, 'HELLO reply');
  const ret = r.i32();
  const errno = r.u32();
  if (p.length === 8) return { ret, errno, version: 0, connId: 0, generation: 0n, liveupdateNum: 0, daemonPid: 0, features: 0 };
  return { ret, errno, version: r.u32(), connId: r.u32(), generation: r.u64(), liveupdateNum: r.u32(), daemonPid: r.u32(), features: p.length >= 36 ? r.u32() : 0 };
}

/** A reply that is only the prefix, optionally followed by bytes. */
export function prefixReply(ret: number, errno: number, rest?: Uint8Array): Uint8Array {
  const w = new PayloadWriter().i32(ret).u32(errno);
  if (rest) w.bytes(rest);
  return w.finish();
}

export function decodePrefix(p: Uint8Array): { ret: number; errno: number; rest: Uint8Array } {
  const r = new PayloadReader(p, 'reply');
  const ret = r.i32();
  const errno = r.u32();
  return { ret, errno, rest: r.rest() };
}

/** The default socket path: $XDG_RUNTIME_DIR/luo/luo.sock, else /tmp/luo-$UID/luo.sock. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env['XDG_RUNTIME_DIR'];
  if (xdg) return join(xdg, 'luo', 'luo.sock');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return join('/tmp', `luo-${uid}`, 'luo.sock');
}

/**
 * The default state directory (hand-over images) of the daemon on `socketPath`: one per socket
 * under $XDG_STATE_HOME/luo (else ~/.local/state/luo), named after the socket and a hash of its
 * absolute path, so two daemons never share (or boot) each other's image.
 */
export function defaultStateDir(socketPath: string, env: NodeJS.ProcessEnv = process.env): string {
  const xdgState = env['XDG_STATE_HOME'];
  const base = xdgState ? join(xdgState, 'luo') : join(env['HOME'] ?? homedir(), '.local', 'state', 'luo');
  const abs = resolve(socketPath);
  return join(base, `${basename(abs)}-${createHash('sha256').update(abs).digest('hex').slice(0, 12)}`);
}
