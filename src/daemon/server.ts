/**
 * `luod`: a simulated machine whose /dev/liveupdate is served on a unix socket
 * (docs/protocol.md). One connection is one open file; one simulated process per client pid;
 * every request is one syscall run through src/uapi, so errnos and their order are the kernel's.
 * A kexec hands the machine's memory image to a new daemon process (kexec.ts).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, lstatSync, mkdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { ERRNO, LuoError } from '../errno.ts';
import { LIVEUPDATE_IOCTL } from '../abi/uapi.ts';
import { readI32, readU32, writeI32 } from '../bytes/cursor.ts';
import { MEMFD_MAX_BYTES, MemfdFile } from '../handlers/memfd-file.ts';
import { type Kernel } from '../kernel/kernel.ts';
import { type Machine } from '../kernel/machine.ts';
import { FIONREAD, LUO_DEVICE_IOCTLS, LUO_SESSION_IOCTLS } from '../uapi/ioctl.ts';
import { LIVEUPDATE_DEV, LuoDeviceFile, PLUGIN_DEV_DIR, PluginFile, SessionFile } from '../uapi/luo-files.ts';
import { NR_OPEN, type Process, processesOf, RLIMIT_NOFILE } from '../uapi/process.ts';
import type { OpenFile } from '../uapi/file.ts';
import { MirrorTable } from './mirror.ts';
import { peerHolders, socketInode } from './peers.ts';
import { buildStatus, type DaemonStatus } from './status.ts';
import {
  DAEMON_FEATURES, decodeIoctl, E, encodeFrame, encodeHelloReply, encodeIoctlReply, ERROR_TYPE, FrameError, FrameReader, HELLO_ENDS_AT_KEXEC, IOCTL_NO_FD, IOCTL_TAIL_NONZERO, IOCTL_TAIL_ZERO, type IoctlReply, KEXEC_KEEP_CLIENTS,
  isKnownType, MAX_INLINE, MAX_PLUGIN_ARGS, MAX_PLUGIN_NAME, MAX_READ, MSG, PayloadReader, PayloadWriter, prefixReply, PROTOCOL_VERSION, REPLY, SRC, STATUS_MACHINE,
} from './wire.ts';
import type { UserBuffer } from '../uapi/usercopy.ts';
import { machineView } from '../web/view.ts';

export interface DaemonOptions {
  readonly machine: Machine;
  readonly socketPath: string;
  readonly stateDir: string;
  /** Prints a daemon log line (kernel lines go through the machine's console). */
  readonly log?: (line: string) => void;
  /** Extra `serve` arguments for the next daemon (e.g. --log FILE). */
  readonly childArgs?: readonly string[];
  /** Boot statistics of the hand-over this daemon was started from. */
  readonly handover?: Record<string, unknown>;
}

type ConnState = 'new' | 'fresh' | 'file' | 'closed';

/** One client connection: at most one open file of its process (the device or a session). */
export class Conn {
  state: ConnState = 'new';
  pid = 0;
  client: ClientProcess | undefined;
  /** Where this connection's file sits in its process's simulated fd table. */
  simFd: number | undefined;
  /** RETRIEVE_FD handles: simulated fds of retrieved files, until RELEASE_FILE. */
  readonly handles = new Set<number>();
  readonly reader = new FrameReader();
  /** A setImmediate is pending that will process this connection's frames. */
  scheduled = false;
  /** Reading is paused until the client reads its replies. */
  paused = false;
  /** HELLO_ENDS_AT_KEXEC: the processes holding the client's end are the running kernel's. */
  endsAtKexec = false;
  constructor(readonly id: number, readonly sock: Socket) {}
}

/** A client process: the simulated Process its connections' files live in. */
export class ClientProcess {
  readonly conns = new Set<Conn>();
  constructor(readonly pid: number, readonly proc: Process) {}
}

/** Frames one connection may have handled before the others get a turn. */
const FRAMES_PER_TURN = 32;

/** Bytes copied back by the LUO ioctls (min(usize, struct size)), by full command. */
const STRUCT_SIZE = new Map<number, number>([...LUO_DEVICE_IOCTLS.ops, ...LUO_SESSION_IOCTLS.ops].map((op) => [op.cmd, op.size]));

export class LuoDaemon {
  readonly machine: Machine;
  readonly socketPath: string;
  readonly stateDir: string;
  readonly generation = randomBytes(8).readBigUInt64LE(0);
  private server: Server | undefined;
  private readonly conns = new Map<number, Conn>();
  private readonly clients = new Map<number, ClientProcess>();
  private nextConnId = 1;
  /** caller_pids seen in IOCTLs (forked children of clients), newest last, at most 1024. */
  private readonly callerPids = new Set<number>();
  readonly mirrors: MirrorTable;
  private readonly fileIds = new WeakMap<object, bigint>();
  private nextFileId = 1n;
  /** Set while a kexec runs: requests wait (and die with this process). */
  kexecing = false;
  /** A kexec is settling its plan (its successor starting) while everyone is still served. */
  private kexecPlanned = false;
  private stopped = false;
  /** Inode of the socket this daemon serves on (to remove only its own at shutdown). */
  private socketIno: number | undefined;
  private readonly log: (line: string) => void;
  readonly handover: Record<string, unknown> | undefined;
  private readonly childArgs: readonly string[];
  /** Sessions held for clients (HOLD): name -> fd in the holder process. */
  private readonly held = new Map<string, number>();
  private holder: Process | undefined;
  /** Resolved once the daemon stops serving (shutdown or kexec). */
  readonly done: Promise<number>;
  private finish!: (code: number) => void;

  constructor(opts: DaemonOptions) {
    this.machine = opts.machine;
    this.socketPath = opts.socketPath;
    this.stateDir = opts.stateDir;
    this.log = opts.log ?? (() => {});
    this.handover = opts.handover;
    this.childArgs = opts.childArgs ?? [];
    this.mirrors = new MirrorTable(() => this.kernel.memfd, (l, m) => this.kernel.print(l, m), () => [...this.clients.keys(), ...this.callerPids]);
    this.done = new Promise((r) => (this.finish = r));
  }

  get kernel(): Kernel {
    return this.machine.kernel;
  }

  /** dmesg-style daemon lines go into the kernel log. */
  print(level: 'info' | 'warn' | 'err', msg: string): void {
    this.kernel.print(level, `luod: ${msg}`);
  }

  // ------------------------------------------------------------------ socket

  /**
   * Listens on a private path and renames it onto the socket path: the path always names a live
   * socket, and a takeover replaces the old daemon's atomically.
   */
  async listen(): Promise<void> {
    const dir = dirname(this.socketPath);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Never replace anything but a socket; a socket nobody answers on is a stale one, replaced.
    const existing = socketPathState(this.socketPath);
    if (existing === 'not-a-socket') throw new LuoError('EEXIST', `${this.socketPath} exists and is not a socket: refusing to replace it`);
    if (existing === 'socket' && !(await LuoDaemon.alive(this.socketPath))) this.print('info', `replacing a stale socket at ${this.socketPath} (its daemon has exited)`);
    const tmp = `${this.socketPath}.${process.pid}.new`;
    try {
      unlinkSync(tmp);
    } catch {
      /* none */
    }
    const server = createServer({ allowHalfOpen: false }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tmp, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.socketPath);
    this.socketIno = statSync(this.socketPath).ino;
    this.server = server;
    this.print('info', `serving ${LIVEUPDATE_DEV} on ${this.socketPath} (generation 0x${this.generation.toString(16)}, pid ${process.pid})`);
  }

  /** True when some daemon answers on `path`. */
  static async alive(path: string): Promise<boolean> {
    return new Promise((resolve) => {
      const s = createConnection(path);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  }

  private accept(sock: Socket): void {
    if (this.stopped) {
      sock.destroy();
      return;
    }
    const c = new Conn(this.nextConnId++, sock);
    this.conns.set(c.id, c);
    // Frames are handled from setImmediate, after the poll phase: every EOF that arrived in the same
    // round (another connection's last close(2), a process exit) is released first, as the kernel
    // has released that file before the next syscall of the process that waited for it. At this
    // connection's own EOF, the frames it sent before are handled, then its file is released.
    sock.on('data', (d: Buffer) => {
      if (c.state === 'closed') return;
      c.reader.push(d);
      this.schedule(c);
    });
    sock.on('end', () => {
      // everything the client sent before its EOF is handled before its file is released
      this.pump(c, true);
      this.release(c);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => this.release(c));
  }

  private schedule(c: Conn): void {
    if (c.scheduled) return;
    c.scheduled = true;
    setImmediate(() => {
      c.scheduled = false;
      this.pump(c);
    });
  }

  /**
   * Processes the complete frames of `c` (not while a kexec runs: those wait and die). At the
   * client's EOF, all of them. Otherwise fair and bounded: at most FRAMES_PER_TURN frames before the other connections get their turn, and a
   * client that does not read its replies is not read from either until they drain (its memory
   * in the daemon stays bounded; every other client carries on).
   */
  private pump(c: Conn, atEof = false): void {
    let budget = atEof ? Infinity : FRAMES_PER_TURN;
    while (c.state !== 'closed' && !this.kexecing && !this.stopped) {
      if (c.sock.writableNeedDrain && !atEof) {
        if (!c.paused) {
          c.paused = true;
          c.sock.pause();
          c.sock.once('drain', () => {
            c.paused = false;
            c.sock.resume();
            this.schedule(c);
          });
        }
        return;
      }
      if (budget-- === 0) return this.schedule(c);
      let frame;
      try {
        frame = c.reader.next();
      } catch (e) {
        if (e instanceof FrameError) return this.protocolError(c, e);
        throw e;
      }
      if (!frame) return;
      try {
        this.handle(c, frame.header.type, frame.header.seq, frame.payload);
      } catch (e) {
        if (e instanceof FrameError) return this.protocolError(c, new FrameError(e.errno, e.message, frame.header.seq));
        this.print('err', `internal error on connection ${c.id}: ${(e as Error).stack ?? String(e)}`);
        this.reply(c, frame.header.type, frame.header.seq, prefixReply(-1, ERRNO.EIO));
      }
    }
  }

  /** Resumes connections that received frames while a kexec was refused. */
  private resumeAll(): void {
    for (const c of [...this.conns.values()]) this.pump(c);
  }

  private reply(c: Conn, type: number, seq: number, payload: Uint8Array): void {
    if (c.state === 'closed' || c.sock.destroyed || c.sock.writableEnded) return;
    c.sock.write(encodeFrame((type | REPLY) >>> 0, seq, payload));
  }

  private protocolError(c: Conn, e: FrameError): void {
    this.print('warn', `connection ${c.id} (pid ${c.pid || '?'}): protocol error: ${e.message}; closing it`);
    if (!c.sock.destroyed && !c.sock.writableEnded) c.sock.end(encodeFrame(ERROR_TYPE, e.seq, prefixReply(-1, e.errno, new TextEncoder().encode(e.message))));
    this.release(c);
  }

  /** The connection is gone (EOF, CLOSE, error): its file is released as a last close(2) releases it. */
  private release(c: Conn): void {
    if (c.state === 'closed') return;
    const wasFile = c.state === 'file';
    c.state = 'closed';
    this.conns.delete(c.id);
    const cp = c.client;
    if (!cp || this.kernel.state !== 'running') return;
    const proc = cp.proc;
    for (const h of c.handles) proc.fds.remove(h)?.close();
    c.handles.clear();
    if (wasFile && c.simFd !== undefined) proc.fds.remove(c.simFd)?.close();
    c.simFd = undefined;
    cp.conns.delete(c);
    if (cp.conns.size === 0) {
      proc.exit(0);
      this.clients.delete(cp.pid);
    }
    this.mirrors.sweep();
  }

  // ------------------------------------------------------------------ requests

  private handle(c: Conn, type: number, seq: number, p: Buffer): void {
    if (!isKnownType(type)) throw new FrameError(E.EPROTO, `unknown message type ${type}`, seq);
    if (c.state === 'new' && type !== MSG.HELLO) throw new FrameError(E.EPROTO, `the first message must be HELLO, not type ${type}`, seq);
    switch (type) {
      case MSG.HELLO:
        return this.hello(c, seq, p);
      case MSG.OPEN_DEVICE:
        return this.openDevice(c, seq, p);
      case MSG.IOCTL:
        return this.reply(c, type, seq, encodeIoctlReply(this.ioctl(c, seq, p)));
      case MSG.CLOSE:
        return this.closeFile(c, seq, p);
      case MSG.READ_FILE:
        return this.readFile(c, seq, p);
      case MSG.RELEASE_FILE:
        return this.releaseFile(c, seq, p);
      case MSG.STATUS:
        return this.statusRequest(c, seq, p);
      case MSG.DEBUGFS:
        return this.debugfsRequest(c, seq, p);
      case MSG.HOLD:
        return this.holdRequest(c, seq, p);
      case MSG.TAKE:
        return this.takeRequest(c, seq, p);
      case MSG.OPEN_PLUGIN:
        return this.openPlugin(c, seq, p);
      case MSG.FILE_READ:
        return this.fileRead(c, seq, p);
      case MSG.FILE_WRITE:
        return this.fileWrite(c, seq, p);
      case MSG.ATTACH:
        return this.attach(c, seq, p);
      case MSG.KEXEC:
        return this.kexecRequest(c, seq, p);
      case MSG.SHUTDOWN:
        new PayloadReader(p, 'SHUTDOWN', seq).end();
        this.reply(c, type, seq, prefixReply(0, 0));
        void this.shutdown('SHUTDOWN request');
        return;
    }
  }

  private hello(c: Conn, seq: number, p: Buffer): void {
    if (c.state !== 'new') throw new FrameError(E.EPROTO, 'HELLO sent twice', seq);
    const r = new PayloadReader(p, 'HELLO', seq);
    const version = r.u32();
    const pid = r.i32();
    const flags = r.u32();
    const reserved = r.u32();
    r.end();
    if ((flags & ~HELLO_ENDS_AT_KEXEC) !== 0 || reserved !== 0) throw new FrameError(E.EPROTO, `HELLO: unknown flags 0x${flags.toString(16)} or nonzero reserved`, seq);
    if (pid <= 0) throw new FrameError(E.EPROTO, `HELLO: pid ${pid} is not a process id`, seq);
    const base = { version: PROTOCOL_VERSION, connId: c.id, generation: this.generation, liveupdateNum: this.liveupdateNum, daemonPid: process.pid, features: DAEMON_FEATURES };
    if (version !== PROTOCOL_VERSION) {
      this.reply(c, MSG.HELLO, seq, encodeHelloReply({ ...base, ret: -1, errno: E.EPROTONOSUPPORT }));
      c.sock.end();
      this.release(c);
      return;
    }
    let cp = this.clients.get(pid);
    if (!cp) {
      cp = new ClientProcess(pid, processesOf(this.kernel).spawn({ stdio: false, rlimitNofile: { cur: NR_OPEN, max: NR_OPEN } }));
      this.clients.set(pid, cp);
    }
    cp.conns.add(c);
    c.client = cp;
    c.pid = pid;
    c.endsAtKexec = (flags & HELLO_ENDS_AT_KEXEC) !== 0;
    c.state = 'fresh';
    this.reply(c, MSG.HELLO, seq, encodeHelloReply({ ...base, ret: 0, errno: 0 }));
  }

  get liveupdateNum(): number {
    return this.kernel.luo?.incomingNum ?? 0;
  }

  private openDevice(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'OPEN_DEVICE', seq);
    const flags = r.u32();
    r.u32();
    r.end();
    if (c.state !== 'fresh') throw new FrameError(E.EPROTO, 'OPEN_DEVICE on a connection that already carries a file', seq);
    const proc = c.client!.proc;
    const fd = proc.open(LIVEUPDATE_DEV, flags);
    if (fd < 0) return this.reply(c, MSG.OPEN_DEVICE, seq, prefixReply(-1, proc.errnoNumber));
    c.simFd = fd;
    c.state = 'file';
    this.reply(c, MSG.OPEN_DEVICE, seq, prefixReply(0, 0));
  }

  /** `f` (a reference the caller gives up) becomes the file of fresh connection `c`, O_CLOEXEC in its process. */
  private carry(c: Conn, f: OpenFile): void {
    const proc = c.client!.proc;
    const fd = proc.fds.alloc(0, proc.nofileLimit, true);
    proc.fds.install(fd, f);
    c.simFd = fd;
    c.state = 'file';
  }

  private fileOf(c: Conn): OpenFile | undefined {
    return c.state === 'file' && c.simFd !== undefined ? c.client!.proc.file(c.simFd) : undefined;
  }

  private ioctl(c: Conn, seq: number, p: Buffer): IoctlReply {
    const req = decodeIoctl(p, seq);
    const fail = (errno: number): IoctlReply => ({ ret: -1, errno, out: new Uint8Array(0) });
    const file = this.fileOf(c);
    if (!file) return fail(ERRNO.EBADF);
    const cp = c.client!;
    const proc = cp.proc;
    const cmd = req.cmd >>> 0;
    const arg = req.flags & 1 ? undefined : new Uint8Array(req.arg);
    // A struct larger than the client sends: what it found past the bytes (protocol 4.3).
    const userArg: UserBuffer = arg && req.flags & IOCTL_TAIL_ZERO ? { bytes: arg, tail: { kind: 'zero', end: readU32(arg, 0, 'le') } }
      : arg && req.flags & IOCTL_TAIL_NONZERO ? { bytes: arg, tail: { kind: 'nonzero' } }
      : arg;
    const callerPid = req.callerPid || c.pid;
    if (req.callerPid > 0 && req.callerPid !== c.pid) {
      this.callerPids.delete(req.callerPid);
      this.callerPids.add(req.callerPid);
      if (this.callerPids.size > 1024) this.callerPids.delete(this.callerPids.values().next().value!);
    }

    // A new session fd goes to a reservation made before the ioctl (protocol 5.3), unless the
    // client could not reserve one (NO_FD): then the op fails with EMFILE where the kernel's
    // get_unused_fd_flags runs, after the dispatcher's checks (protocol 5.6).
    const newSession = file instanceof LuoDeviceFile && (cmd === LIVEUPDATE_IOCTL.CREATE_SESSION || cmd === LIVEUPDATE_IOCTL.RETRIEVE_SESSION);
    const newFile = file instanceof SessionFile && cmd === LIVEUPDATE_IOCTL.SESSION_RETRIEVE_FD;
    const noFd = (req.flags & IOCTL_NO_FD) !== 0 && (newSession || newFile);
    let target: Conn | undefined;
    if (newSession && noFd) {
      if (req.newConn !== 0) {
        this.print('warn', `connection ${c.id}: ioctl 0x${cmd.toString(16)} has NO_FD and names reservation ${req.newConn}`);
        return fail(E.EPROTO);
      }
    } else if (newSession) {
      target = this.conns.get(req.newConn);
      if (!target || target.state !== 'fresh' || target === c) {
        this.print('warn', `connection ${c.id}: ioctl 0x${cmd.toString(16)} names reservation ${req.newConn}, which is not a fresh connection`);
        return fail(E.EPROTO);
      }
    }

    // PRESERVE_FD: the struct's fd names a file of the caller; it is placed in a temporary slot.
    const preserve = file instanceof SessionFile && cmd === LIVEUPDATE_IOCTL.SESSION_PRESERVE_FD && arg !== undefined && arg.length >= 8;
    let origFd = 0;
    let tempFd: number | undefined;
    if (preserve && (req.srcKind === SRC.PATH || req.srcKind === SRC.BUFFER) && req.srcPos > BigInt(MEMFD_MAX_BYTES)) {
      // No file offset is that large (the kernel's limit is 2^63 - 1; the simulated memfd's 2^53 - 1).
      this.print('warn', `connection ${c.id}: PRESERVE_FD source position ${req.srcPos} is not a file offset`);
      return fail(ERRNO.EINVAL);
    }
    if (preserve) {
      origFd = readI32(arg, 4, 'le');
      let src: OpenFile | undefined;
      try {
        src = req.srcKind === SRC.CONN ? this.connFile(readU32(req.src, 0, 'le')) : this.mirrors.resolve({ kind: req.srcKind, pid: callerPid, fd: origFd, hiddenFd: req.srcHiddenFd, seals: req.srcSeals, pos: req.srcPos, bytes: req.src });
      } catch (e) {
        if (e instanceof LuoError) return fail(e.code);
        throw e;
      }
      if (src) {
        tempFd = proc.fds.alloc(0, proc.nofileLimit, false);
        proc.fds.install(tempFd, src);
      }
      writeI32(arg, 4, tempFd ?? -1, 'le');
    }

    let ret: number;
    let errno: number;
    if (noFd) {
      // No fd can be allocated in the caller while the op runs.
      const saved = proc.getrlimit(RLIMIT_NOFILE);
      proc.setrlimit(RLIMIT_NOFILE, { cur: 0, max: saved.max });
      try {
        ret = proc.ioctl(c.simFd!, cmd, userArg);
        errno = ret < 0 ? proc.errnoNumber : 0;
      } finally {
        proc.setrlimit(RLIMIT_NOFILE, saved);
      }
      if (ret >= 0) {
        // cannot happen: every path that makes the file allocates the fd first
        this.print('err', `connection ${c.id}: ioctl 0x${cmd.toString(16)} with NO_FD succeeded`);
        return fail(ERRNO.EIO);
      }
    } else {
      ret = proc.ioctl(c.simFd!, cmd, userArg);
      errno = ret < 0 ? proc.errnoNumber : 0;
    }

    if (preserve) {
      if (tempFd !== undefined) proc.fds.remove(tempFd)?.close();
      writeI32(arg!, 4, origFd, 'le');
      this.mirrors.sweep();
    }
    if (ret < 0) return fail(errno);

    let outLen = 0;
    const structSize = STRUCT_SIZE.get(cmd);
    if (structSize !== undefined && (file instanceof LuoDeviceFile || file instanceof SessionFile)) outLen = Math.min(readU32(arg!, 0, 'le'), structSize);
    else if (cmd === FIONREAD) outLen = 4;
    const reply: IoctlReply = { ret, errno: 0, out: arg ? arg.subarray(0, outLen) : new Uint8Array(0) };

    if (newSession && target) {
      const simFd = readI32(arg!, 4, 'le');
      this.carry(target, proc.fds.remove(simFd)!);
      writeI32(arg!, 4, -1, 'le');
    }
    if (newFile) {
      const simFd = readI32(arg!, 4, 'le');
      const f = proc.file(simFd);
      writeI32(arg!, 4, -1, 'le');
      if (f instanceof MemfdFile) {
        c.handles.add(simFd);
        let id = this.fileIds.get(f);
        const again = id !== undefined;
        if (id === undefined) {
          id = this.nextFileId++;
          this.fileIds.set(f, id);
        }
        // The client's file for it (the memfd it reserved) IS this file from now on: preserving it
        // again before FINISH must find LUO's file (EBUSY), as the kernel's retrieved file does.
        if (!again && req.srcKind === SRC.PROC_FD && req.srcHiddenFd >= 0) this.mirrors.bindRetrieved(f, callerPid, req.srcHiddenFd);
        const st = f.stat();
        reply.file = { handle: BigInt(simFd), id, size: BigInt(st.size), pos: BigInt(f.pos), seals: f.getSeals(), again, inline: f.pread(Math.min(st.size, MAX_INLINE), 0) };
      } else if (f instanceof PluginFile) {
        // a plugin's file: the client ATTACHes it to a connection of its own (4.11)
        c.handles.add(simFd);
        reply.file = { handle: BigInt(simFd), id: this.nextFileId++, size: 0n, pos: 0n, seals: 0, again: false, inline: new Uint8Array(0), conn: true };
      } else {
        proc.fds.remove(simFd)?.close();
      }
    }
    return reply;
  }

  private closeFile(c: Conn, seq: number, p: Buffer): void {
    new PayloadReader(p, 'CLOSE', seq).end();
    const had = c.state === 'file';
    this.release(c);
    const frame = encodeFrame((MSG.CLOSE | REPLY) >>> 0, seq, prefixReply(had ? 0 : -1, had ? 0 : ERRNO.EBADF));
    if (!c.sock.destroyed && !c.sock.writableEnded) c.sock.end(frame);
  }

  private handleFile(c: Conn, handle: bigint): MemfdFile | undefined {
    const fd = Number(handle);
    if (!c.handles.has(fd)) return undefined;
    const f = c.client!.proc.file(fd);
    return f instanceof MemfdFile ? f : undefined;
  }

  private readFile(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'READ_FILE', seq);
    const handle = r.u64();
    const offset = r.u64();
    const length = r.u32();
    r.u32();
    r.end();
    if (length > MAX_READ) throw new FrameError(E.EPROTO, `READ_FILE: length ${length} exceeds ${MAX_READ}`, seq);
    const f = this.handleFile(c, handle);
    if (!f) return this.reply(c, MSG.READ_FILE, seq, prefixReply(-1, ERRNO.EBADF));
    const data = f.pread(length, Number(offset));
    this.reply(c, MSG.READ_FILE, seq, prefixReply(data.length, 0, data));
  }

  private releaseFile(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'RELEASE_FILE', seq);
    const handle = r.u64();
    r.end();
    // a retrieved memfd's copy, or a plugin file the client will not ATTACH
    if (!this.handleFile(c, handle) && !(c.handles.has(Number(handle)) && c.client!.proc.file(Number(handle)) instanceof PluginFile)) {
      return this.reply(c, MSG.RELEASE_FILE, seq, prefixReply(-1, ERRNO.EBADF));
    }
    c.handles.delete(Number(handle));
    c.client!.proc.fds.remove(Number(handle))?.close();
    this.reply(c, MSG.RELEASE_FILE, seq, prefixReply(0, 0));
  }

  /** PRESERVE_FD from a connection: its file, as a new reference (the caller closes it); none: EBADF. */
  private connFile(connId: number): OpenFile | undefined {
    const owner = this.conns.get(connId);
    return owner ? this.fileOf(owner)?.get() : undefined;
  }

  /** OPEN_PLUGIN: u32 flags, u32 name_len, u32 args_len, u32 reserved, name, args (JSON, or empty). */
  private openPlugin(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'OPEN_PLUGIN', seq);
    const flags = r.u32();
    const nameLen = r.u32();
    const argsLen = r.u32();
    if (r.u32() !== 0) throw new FrameError(E.EPROTO, 'OPEN_PLUGIN: reserved is not 0', seq);
    if (nameLen > MAX_PLUGIN_NAME || argsLen > MAX_PLUGIN_ARGS) throw new FrameError(E.EPROTO, `OPEN_PLUGIN: name_len ${nameLen} or args_len ${argsLen} too large (${MAX_PLUGIN_NAME}, ${MAX_PLUGIN_ARGS})`, seq);
    const name = r.bytes(nameLen);
    const argBytes = r.bytes(argsLen);
    r.end();
    if (c.state !== 'fresh') throw new FrameError(E.EPROTO, 'OPEN_PLUGIN on a connection that already carries a file', seq);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(name);
    let args: unknown;
    if (argsLen > 0) {
      try {
        args = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(argBytes));
      } catch (e) {
        this.print('warn', `connection ${c.id}: OPEN_PLUGIN ${text}: arguments are not JSON (${(e as Error).message})`);
        return this.reply(c, MSG.OPEN_PLUGIN, seq, prefixReply(-1, ERRNO.EINVAL));
      }
    }
    const proc = c.client!.proc;
    // a name with a NUL or a slash names no device node
    const fd = name.includes(0) ? -1 : proc.open(`${PLUGIN_DEV_DIR}${text}`, flags, args);
    if (fd < 0) return this.reply(c, MSG.OPEN_PLUGIN, seq, prefixReply(-1, name.includes(0) ? ERRNO.ENOENT : proc.errnoNumber));
    c.simFd = fd;
    c.state = 'file';
    this.reply(c, MSG.OPEN_PLUGIN, seq, prefixReply(0, 0));
  }

  /** FILE_READ: u32 count, u32 reserved; read(2) of the connection's file (a plugin's; the others: EINVAL). */
  private fileRead(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'FILE_READ', seq);
    const count = r.u32();
    if (r.u32() !== 0) throw new FrameError(E.EPROTO, 'FILE_READ: reserved is not 0', seq);
    r.end();
    if (count > MAX_READ) throw new FrameError(E.EPROTO, `FILE_READ: count ${count} exceeds ${MAX_READ}`, seq);
    if (!this.fileOf(c)) return this.reply(c, MSG.FILE_READ, seq, prefixReply(-1, ERRNO.EBADF));
    const proc = c.client!.proc;
    const buf = new Uint8Array(count);
    const n = proc.read(c.simFd!, buf);
    this.reply(c, MSG.FILE_READ, seq, n < 0 ? prefixReply(-1, proc.errnoNumber) : prefixReply(n, 0, buf.subarray(0, n)));
  }

  /** FILE_WRITE: the payload is the bytes; write(2) of the connection's file. */
  private fileWrite(c: Conn, seq: number, p: Buffer): void {
    if (!this.fileOf(c)) return this.reply(c, MSG.FILE_WRITE, seq, prefixReply(-1, ERRNO.EBADF));
    const proc = c.client!.proc;
    const n = proc.write(c.simFd!, new Uint8Array(p));
    this.reply(c, MSG.FILE_WRITE, seq, prefixReply(n < 0 ? -1 : n, n < 0 ? proc.errnoNumber : 0));
  }

  /** ATTACH: u32 conn_id, u32 reserved, u64 handle: a plugin file RETRIEVE_FD handed out on `conn_id` becomes this connection's file. */
  private attach(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'ATTACH', seq);
    const owner = this.conns.get(r.u32());
    if (r.u32() !== 0) throw new FrameError(E.EPROTO, 'ATTACH: reserved is not 0', seq);
    const handle = Number(r.u64());
    r.end();
    if (c.state !== 'fresh') throw new FrameError(E.EPROTO, 'ATTACH on a connection that already carries a file', seq);
    const f = owner?.handles.has(handle) ? owner.client!.proc.file(handle) : undefined;
    if (!owner || !(f instanceof PluginFile)) return this.reply(c, MSG.ATTACH, seq, prefixReply(-1, ERRNO.EBADF));
    owner.handles.delete(handle);
    owner.client!.proc.fds.remove(handle);
    this.carry(c, f);
    this.reply(c, MSG.ATTACH, seq, prefixReply(0, 0));
  }

  status(opts: { machine?: boolean } = {}): DaemonStatus {
    const s = buildStatus(this, { processes: this.clients.size, connections: this.conns.size, handles: [...this.conns.values()].reduce((n, c) => n + c.handles.size, 0) });
    s.held = [...this.held.values()].map((fd) => this.holder?.file(fd)).filter((f): f is SessionFile => f instanceof SessionFile).map((f) => ({ name: f.session.name, direction: f.session.direction }));
    if (opts.machine) s.machine = machineView(this.machine);
    return s;
  }

  /** STATUS: an empty payload, or u32 flags (STATUS_MACHINE) and u32 reserved. */
  private statusRequest(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'STATUS', seq);
    let flags = 0;
    if (p.length > 0) {
      flags = r.u32();
      if (r.u32() !== 0 || (flags & ~STATUS_MACHINE) !== 0) throw new FrameError(E.EPROTO, 'STATUS: unknown flags or reserved set', seq);
    }
    r.end();
    this.reply(c, MSG.STATUS, seq, prefixReply(0, 0, new TextEncoder().encode(JSON.stringify(this.status({ machine: (flags & STATUS_MACHINE) !== 0 })))));
  }

  /** DEBUGFS: /sys/kernel/debug/kho of the running kernel as JSON (base64 contents). */
  private debugfsRequest(c: Conn, seq: number, p: Buffer): void {
    new PayloadReader(p, 'DEBUGFS', seq).end();
    const kho = this.kernel.kho;
    if (!kho) return this.reply(c, MSG.DEBUGFS, seq, prefixReply(-1, ERRNO.ENOENT, new TextEncoder().encode('KHO is not enabled in this kernel (kho=on)')));
    const files = [...kho.debugfs()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([path, data]) => ({ path, size: data.length, data: Buffer.from(data).toString('base64') }));
    // rootFdt: the whole root FDT from memory (debugfs' out/fdt keeps the size it had when created).
    const body = { profile: kho.profile, release: this.kernel.build.release, liveupdateNum: this.liveupdateNum, files, rootFdt: Buffer.from(kho.rootFdt()).toString('base64') };
    this.reply(c, MSG.DEBUGFS, seq, prefixReply(0, 0, new TextEncoder().encode(JSON.stringify(body))));
  }

  /** The daemon's own process holding sessions for clients that exit (HOLD/TAKE). */
  private holderProcess(): Process {
    this.holder ??= processesOf(this.kernel).spawn({ stdio: false, rlimitNofile: { cur: NR_OPEN, max: NR_OPEN } });
    return this.holder;
  }

  /** HOLD: the session file of this connection moves to the holder (the connection becomes fresh). */
  private holdRequest(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'HOLD', seq);
    r.u32();
    r.u32();
    r.end();
    const file = this.fileOf(c);
    if (!file) return this.reply(c, MSG.HOLD, seq, prefixReply(-1, ERRNO.EBADF));
    if (!(file instanceof SessionFile)) return this.reply(c, MSG.HOLD, seq, prefixReply(-1, ERRNO.EINVAL, new TextEncoder().encode('only a session can be held')));
    const name = file.session.name;
    if (this.held.has(name)) return this.reply(c, MSG.HOLD, seq, prefixReply(-1, ERRNO.EEXIST, new TextEncoder().encode(`a session named ${name} is already held`)));
    const h = this.holderProcess();
    const f = c.client!.proc.fds.remove(c.simFd!)!;
    const fd = h.fds.alloc(0, h.nofileLimit, true);
    h.fds.install(fd, f);
    this.held.set(name, fd);
    for (const hd of c.handles) c.client!.proc.fds.remove(hd)?.close();
    c.handles.clear();
    c.simFd = undefined;
    c.state = 'fresh';
    this.reply(c, MSG.HOLD, seq, prefixReply(0, 0));
  }

  /** TAKE: u32 name_len, u32 reserved, name; the held session becomes this fresh connection's file. */
  private takeRequest(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'TAKE', seq);
    const len = r.u32();
    r.u32();
    const name = new TextDecoder().decode(r.bytes(len));
    r.end();
    if (c.state !== 'fresh') throw new FrameError(E.EPROTO, 'TAKE on a connection that already carries a file', seq);
    const fd = this.held.get(name);
    const f = fd !== undefined ? this.holder?.fds.remove(fd) : undefined;
    if (!f) {
      this.held.delete(name);
      return this.reply(c, MSG.TAKE, seq, prefixReply(-1, ERRNO.ENOENT, new TextEncoder().encode(`no held session named ${name}`)));
    }
    this.held.delete(name);
    this.carry(c, f);
    this.reply(c, MSG.TAKE, seq, prefixReply(0, 0));
  }

  // ------------------------------------------------------------------ kexec and shutdown

  private kexecRequest(c: Conn, seq: number, p: Buffer): void {
    const r = new PayloadReader(p, 'KEXEC', seq);
    const flags = r.u32();
    const buildLen = r.u32();
    const cmdlineLen = r.u32();
    const releaseLen = r.u32();
    const dec = new TextDecoder();
    const build = dec.decode(r.bytes(buildLen));
    const cmdline = dec.decode(r.bytes(cmdlineLen));
    const release = dec.decode(r.bytes(releaseLen));
    r.end();
    if (flags & ~KEXEC_KEEP_CLIENTS) return this.reply(c, MSG.KEXEC, seq, prefixReply(-1, ERRNO.EINVAL, new TextEncoder().encode(`unknown KEXEC flags 0x${flags.toString(16)}`)));
    if (this.kexecing || this.kexecPlanned) return this.reply(c, MSG.KEXEC, seq, prefixReply(-1, ERRNO.EBUSY, new TextEncoder().encode('a kexec is already in progress')));
    this.kexecPlanned = true;
    void this.runKexec(c, seq, { build: build || undefined, cmdline: cmdline || undefined, release: release || undefined, keepClients: (flags & KEXEC_KEEP_CLIENTS) !== 0 });
  }

  /**
   * A kexec ends the old kernel's processes: SIGKILL to every process holding the client end of a
   * connection that said HELLO_ENDS_AT_KEXEC and holds a LUO file (holders as the kernel reports
   * them; never this daemon, nor a holder of the KEXEC caller's connection).
   */
  private endOldClients(caller: Conn): { ended: number[]; warnings: string[] } {
    const targets = [...this.conns.values()].filter((o) => o !== caller && o.endsAtKexec && o.state === 'file');
    if (!targets.length) return { ended: [], warnings: [] };
    const inodes = new Map<Conn, number>();
    for (const o of [caller, ...targets]) {
      const ino = socketInode(o.sock);
      if (ino !== undefined) inodes.set(o, ino);
    }
    const holders = peerHolders([...inodes.values()]);
    if (typeof holders === 'string') return { ended: [], warnings: [`${holders}; the old kernel's client processes keep running`] };
    const spare = new Set([process.pid, ...(holders.get(inodes.get(caller) ?? -1) ?? [])]);
    const ended = new Set<number>();
    for (const o of targets) {
      for (const pid of holders.get(inodes.get(o) ?? -1) ?? []) {
        if (spare.has(pid) || ended.has(pid)) continue;
        try {
          process.kill(pid, 'SIGKILL');
          ended.add(pid);
        } catch {
          /* already gone */
        }
      }
    }
    if (ended.size) this.print('info', `kexec: ended the old kernel's client processes ${[...ended].join(', ')}`);
    return { ended: [...ended].sort((a, b) => a - b), warnings: [] };
  }

  private async runKexec(c: Conn, seq: number, opts: { build: string | undefined; cmdline: string | undefined; release: string | undefined; keepClients: boolean }): Promise<void> {
    const { abandonPlan, kexecIntoNewProcess, planKexec } = await import('./kexec.ts');
    // the new daemon starts and loads while this one still serves everyone (kexec -l)
    const plan = await planKexec(this, { build: opts.build, cmdline: opts.cmdline, release: opts.release, childArgs: this.childArgs });
    this.kexecPlanned = false;
    if (!('bin' in plan)) {
      this.reply(c, MSG.KEXEC, seq, prefixReply(-1, plan.errno, new TextEncoder().encode(plan.message)));
      return;
    }
    if (this.stopped) {
      abandonPlan(this, plan); // the daemon was shut down meanwhile
      return;
    }
    // a caller that went away meanwhile does not stop it: reboot(2) goes on once it has been asked
    // the freeze (kexec -e): from here on nobody else is served
    this.kexecing = true;
    const result = await kexecIntoNewProcess(this, plan, this.childArgs);
    if (!result.ok && !result.committed) {
      // Refused before anything changed (LUO's reboot path failed): keep serving (the successor was sent away).
      this.kexecing = false;
      this.reply(c, MSG.KEXEC, seq, prefixReply(-1, result.errno, new TextEncoder().encode(result.message)));
      this.resumeAll();
      return;
    }
    const clients = opts.keepClients ? { ended: [], warnings: [] } : this.endOldClients(c);
    const payload = result.ok
      ? new PayloadWriter().i32(0).u32(0).u32(result.pid).u32(0).u64(result.generation)
        .bytes(new TextEncoder().encode(JSON.stringify({ ...result.stats, endedClients: clients.ended, keptClients: opts.keepClients, warnings: [...(result.stats['warnings'] as string[]), ...clients.warnings] })))
        .finish()
      : prefixReply(-1, result.errno, new TextEncoder().encode(result.message));
    // Only the KEXEC caller hears back; every other process dies with this kernel.
    for (const o of [...this.conns.values()]) if (o !== c) o.sock.destroy();
    await new Promise<void>((resolve) => {
      if (c.sock.destroyed) return resolve();
      c.sock.end(encodeFrame((MSG.KEXEC | REPLY) >>> 0, seq, payload), () => resolve());
      setTimeout(resolve, 2000).unref();
    });
    this.stopped = true;
    this.mirrors.closeAll();
    // The socket path now names the new daemon's socket: never close our listener by name
    // (libuv would unlink the path); exiting drops it.
    this.finish(result.ok ? 0 : 1);
  }

  /** Power-off: every connection closed, the socket removed (if it is still this daemon's). */
  async shutdown(why: string): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.print('info', `shutting down (${why})`);
    for (const c of [...this.conns.values()]) c.sock.destroy();
    this.mirrors.closeAll();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    try {
      // the listener was bound under a private name and renamed: remove the path ourselves, but
      // only while it is still our socket (a successor may own it)
      if (this.socketIno !== undefined && statSync(this.socketPath).ino === this.socketIno) unlinkSync(this.socketPath);
    } catch {
      /* already gone */
    }
    this.finish(0);
  }
}

/** What is at a socket path a daemon is to serve on: nothing yet, a socket, or something else. */
export function socketPathState(path: string): 'free' | 'socket' | 'not-a-socket' {
  try {
    return lstatSync(path).isSocket() ? 'socket' : 'not-a-socket';
  } catch {
    return 'free';
  }
}

/** Tells a waiting parent (kexec.ts, on fd 3) that this daemon owns the socket path. */
export function signalReady(d: LuoDaemon, channel?: Socket): void {
  const line = `ready ${process.pid} ${d.generation.toString()}\n`;
  if (channel) {
    channel.end(line); // the channel a kexec opened to a successor it started ahead
    return;
  }
  try {
    writeSync(3, line);
    closeSync(3);
  } catch (e) {
    d.print('warn', `could not signal readiness on fd 3: ${(e as Error).message}`);
  }
}
