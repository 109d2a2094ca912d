/**
 * Test harness for the native parts: builds the LD_PRELOAD shim and the C conformance programs with
 * the machine's gcc (scripts/build-native.sh), runs a `luo serve` daemon on a private socket, runs
 * C programs through the shim with a time limit, parses their TAP output, and speaks just enough of
 * docs/protocol.md (HELLO, KEXEC, SHUTDOWN) to drive a kexec from the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Builds everything into a fresh temp dir; throws with gcc's output when that is impossible. */
export function buildNative(): string {
  const out = mkdtempSync(join(tmpdir(), 'luo-native-'));
  const gcc = spawnSync('sh', ['-c', 'command -v "${CC:-gcc}"'], { encoding: 'utf8' });
  if (gcc.status !== 0) {
    throw new Error('gcc is required to build native/preload (the LD_PRELOAD shim) and the C conformance suite: apt-get install gcc libc6-dev');
  }
  const r = spawnSync('bash', [join(ROOT, 'scripts/build-native.sh'), out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/build-native.sh failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return out;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a program under the shim to its end (with `timeoutMs`, kills it and its process group then:
 * only for debugging a hang, never in the suite). Output goes to files, not pipes: a stage-1
 * holder that keeps the program's stdout open must not keep us waiting.
 */
export function runShimmed(bin: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs?: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-run-'));
  const outPath = join(dir, 'stdout');
  const errPath = join(dir, 'stderr');
  const out = openSync(outPath, 'w');
  const err = openSync(errPath, 'w');
  return new Promise((resolvePromise) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', out, err], detached: true });
    closeSync(out);
    closeSync(err);
    let timedOut = false;
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      const stdout = readFileSync(outPath, 'latin1');
      const stderr = readFileSync(errPath, 'latin1');
      rmSync(dir, { recursive: true, force: true });
      resolvePromise({ code, signal, stdout, stderr, timedOut });
    };
    child.on('exit', finish);
    child.on('error', () => finish(null, null));
  });
}

export interface TapLine {
  n: number;
  ok: boolean;
  name: string;
  skip: boolean;
  diag: string[];
}

/** "ok N name [# SKIP]" lines, each with the "#" diagnostics printed before it. */
export function parseTap(out: string): { plan: number; cases: TapLine[] } {
  let plan = -1;
  const cases: TapLine[] = [];
  let diag: string[] = [];
  for (const line of out.split('\n')) {
    const p = /^1\.\.(\d+)$/.exec(line);
    if (p) plan = Number(p[1]);
    const m = /^(not )?ok (\d+) (\S+)( # SKIP.*)?$/.exec(line);
    if (m) {
      cases.push({ n: Number(m[2]), ok: !m[1], name: m[3]!, skip: !!m[4], diag });
      diag = [];
    } else if (line.startsWith('#')) {
      diag.push(line);
    }
  }
  return { plan, cases };
}

/** A `luo serve` daemon on a private socket and state dir. */
export class Daemon {
  readonly dir: string;
  readonly socket: string;
  readonly stateDir: string;
  proc: ChildProcess | null = null;
  log = '';

  /** `extra`: more `luo serve` arguments (e.g. --handler PATH). */
  constructor(private readonly extra: readonly string[] = []) {
    this.dir = mkdtempSync(join(tmpdir(), 'luo-daemon-'));
    this.socket = join(this.dir, 'luo.sock');
    this.stateDir = join(this.dir, 'state');
  }

  /** Starts the daemon; resolves once it answers (however long that takes), fails if it exits. */
  async start(): Promise<void> {
    const p = spawn(process.execPath, [join(ROOT, 'bin/luo.mjs'), 'serve', '--socket', this.socket, '--state-dir', this.stateDir, ...this.extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: ROOT,
    });
    this.proc = p;
    p.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    for (;;) {
      if (p.exitCode !== null) throw new Error(`luo serve exited with ${p.exitCode}:\n${this.log}`);
      if (existsSync(this.socket)) {
        try {
          const c = await Control.connect(this.socket);
          c.close();
          return;
        } catch {
          /* not listening yet */
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** KEXEC through the protocol; resolves once the new daemon owns the socket. */
  async kexec(): Promise<{ newPid: number; stats: string }> {
    const c = await Control.connect(this.socket);
    try {
      const p = new Uint8Array(16);
      const r = await c.request(17, p);
      const ret = r.readInt32LE(0);
      const errno = r.readUInt32LE(4);
      if (ret < 0) throw new Error(`KEXEC failed: errno ${errno}\n${this.log}`);
      return { newPid: r.readUInt32LE(8), stats: r.subarray(24).toString() };
    } finally {
      c.close();
    }
  }

  /** SHUTDOWN the current daemon (whichever process serves the socket), then clean up. */
  async stop(): Promise<void> {
    try {
      const c = await Control.connect(this.socket);
      await c.request(18, new Uint8Array(0), 10_000).catch(() => undefined);
      c.close();
    } catch {
      /* already gone */
    }
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A control connection: HELLO done; one request at a time. */
export class Control {
  private buf = Buffer.alloc(0);
  private waiters: ((b: Buffer) => void)[] = [];
  private seq = 0;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        if (this.buf.length < 16) break;
        const len = this.buf.readUInt32LE(0);
        if (this.buf.length < 16 + len) break;
        const payload = this.buf.subarray(16, 16 + len);
        this.buf = this.buf.subarray(16 + len);
        this.waiters.shift()?.(Buffer.from(payload));
      }
    });
    sock.on('error', () => undefined);
  }

  static connect(path: string): Promise<Control> {
    return new Promise((res, rej) => {
      const s = connect(path);
      s.once('error', rej);
      s.once('connect', async () => {
        const c = new Control(s);
        try {
          const hello = Buffer.alloc(16);
          hello.writeUInt32LE(1, 0);
          hello.writeInt32LE(process.pid, 4);
          const r = await c.request(1, hello);
          if (r.readInt32LE(0) < 0) throw new Error(`HELLO refused: errno ${r.readUInt32LE(4)}`);
          res(c);
        } catch (e) {
          s.destroy();
          rej(e);
        }
      });
    });
  }

  /** One request; `timeoutMs` only where giving up is harmless (cleanup), never for a result. */
  request(type: number, payload: Uint8Array, timeoutMs?: number): Promise<Buffer> {
    return new Promise((res, rej) => {
      const hdr = Buffer.alloc(16);
      hdr.writeUInt32LE(payload.length, 0);
      hdr.writeUInt32LE(type, 4);
      hdr.writeUInt32LE(++this.seq, 8);
      const t = timeoutMs === undefined ? undefined : setTimeout(() => rej(new Error(`request ${type} timed out`)), timeoutMs);
      this.waiters.push((b) => {
        clearTimeout(t);
        res(b);
      });
      this.sock.once('close', () => rej(new Error('connection closed')));
      this.sock.write(Buffer.concat([hdr, Buffer.from(payload)]));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** What a describe() block of shim tests shares: the native build, the daemon, the programs' environment. */
export interface ShimSuite {
  bin: string;
  daemon: Daemon;
  env: NodeJS.ProcessEnv;
  /** Stage-1 holders to kill at the end (a kexec usually has). */
  readonly holders: number[];
  /** Runs a built program through the shim against the daemon. */
  run(prog: string, args?: string[]): Promise<RunResult>;
}

/** Builds the native parts and starts `luo serve` (with `extra` arguments) before the block; stops all after. */
export function useShimDaemon(extra: readonly string[] = []): ShimSuite {
  const s: ShimSuite = {
    bin: '',
    daemon: undefined as unknown as Daemon,
    env: {},
    holders: [],
    run: (prog, args = []) => runShimmed(join(s.bin, prog), args, s.env),
  };
  before(async () => {
    s.bin = buildNative();
    s.daemon = new Daemon(extra);
    await s.daemon.start();
    s.env = { ...process.env, LUO_SOCKET: s.daemon.socket, LD_PRELOAD: join(s.bin, 'libluo-preload.so') };
  });
  after(async () => {
    for (const pid of s.holders) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await s.daemon?.stop();
    if (s.bin) rmSync(s.bin, { recursive: true, force: true });
  });
  return s;
}
