/**
 * One connection to the luo daemon (docs/protocol.md): framing, sequence numbers, HELLO, and
 * request/reply matching. Replies carry Linux errnos; protocol errors and lost connections are
 * LuoErrors too (EPROTO, EMSGSIZE, ECONNRESET).
 */
import { createConnection, type Socket } from 'node:net';
import { errnoName, type ErrnoName, LuoError } from '../errno.ts';
import {
  decodeHelloReply, encodeFrame, ERROR_TYPE, FrameError, FrameReader, type HelloReply, MSG, PayloadWriter, PROTOCOL_VERSION, REPLY,
} from '../daemon/wire.ts';

/** A LuoError for a Linux errno number (unknown numbers become EIO, with the number in the message). */
export function errnoError(errno: number, message: string): LuoError {
  const name: ErrnoName = errnoName(errno) ?? 'EIO';
  return new LuoError(name, name === 'EIO' && errno !== 5 ? `errno ${errno}: ${message}` : message);
}

interface Pending {
  type: number;
  resolve: (p: Buffer) => void;
  reject: (e: Error) => void;
}

export class Connection {
  private readonly reader = new FrameReader();
  private readonly pending = new Map<number, Pending>();
  private seq = 1;
  private closedError: LuoError | undefined;
  hello: HelloReply | undefined;
  private readonly closed: Promise<void>;

  private constructor(readonly sock: Socket, readonly path: string) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => this.fail(new LuoError('ECONNRESET', `connection to ${path}: ${e.message}`)));
    this.closed = new Promise((resolve) => sock.on('close', () => {
      this.fail(new LuoError('ECONNRESET', `connection to ${path} closed`));
      resolve();
    }));
  }

  /** Connects and says HELLO with `pid` (and HELLO `flags`, e.g. HELLO_ENDS_AT_KEXEC). */
  static async open(path: string, pid: number, flags = 0): Promise<Connection> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        const code = (e.code ?? 'EIO') as string;
        // the socket error (ECONNREFUSED, ENOTSOCK, EACCES...) stays available as the cause
        reject(new LuoError(code === 'ENOENT' ? 'ENOENT' : code === 'EMFILE' ? 'EMFILE' : 'ECONNRESET', `connect ${path}: ${e.message}`, { cause: e }));
      });
    });
    const c = new Connection(sock, path);
    const rep = decodeHelloReply(await c.request(MSG.HELLO, new PayloadWriter().u32(PROTOCOL_VERSION).i32(pid).u32(flags).u32(0).finish()));
    if (rep.ret < 0) {
      c.destroy();
      throw errnoError(rep.errno, `HELLO refused by ${path}`);
    }
    c.hello = rep;
    return c;
  }

  get connId(): number {
    return this.hello?.connId ?? 0;
  }

  get isClosed(): boolean {
    return this.closedError !== undefined;
  }

  private onData(d: Buffer): void {
    this.reader.push(d);
    for (;;) {
      let f;
      try {
        f = this.reader.next();
      } catch (e) {
        if (e instanceof FrameError) return this.fail(new LuoError('EPROTO', `bad frame from the daemon: ${e.message}`));
        throw e;
      }
      if (!f) return;
      const p = this.pending.get(f.header.seq);
      if (f.header.type === ERROR_TYPE) {
        const errno = f.payload.length >= 8 ? f.payload.readUInt32LE(4) : 71;
        const err = errnoError(errno, `daemon: ${f.payload.subarray(8).toString()}`);
        if (p) {
          this.pending.delete(f.header.seq);
          p.reject(err);
        }
        this.fail(err);
        return;
      }
      if (!p) continue;
      this.pending.delete(f.header.seq);
      if (f.header.type !== ((p.type | REPLY) >>> 0)) p.reject(new LuoError('EPROTO', `reply type 0x${f.header.type.toString(16)} to request ${p.type}`));
      else p.resolve(f.payload);
    }
  }

  private fail(e: LuoError): void {
    this.closedError ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /** Sends a request and resolves with the reply payload. */
  request(type: number, payload: Uint8Array): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError);
    const seq = this.seq++;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { type, resolve, reject });
      this.sock.write(encodeFrame(type, seq, payload));
    });
  }

  /** Sends raw bytes (tests: malformed frames). */
  writeRaw(b: Uint8Array): void {
    this.sock.write(b);
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** Ends the connection and waits until the socket is closed. */
  async end(): Promise<void> {
    this.sock.end();
    await this.closed;
  }

  waitClosed(): Promise<void> {
    return this.closed;
  }
}
