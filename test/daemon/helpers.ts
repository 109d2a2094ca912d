/** Daemon test helpers: temp dirs, daemons as child processes, cleanup of every process started. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LuoDaemon } from '../../src/daemon/server.ts';
import { type ErrnoName, LuoError } from '../../src/errno.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LUO_BIN = join(ROOT, 'bin', 'luo.mjs');

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `luo-${tag}-`));
}

/** What a `luo ...` command run gave back. */
export interface LuoRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `luo ...` to its end (no time limit: a slow machine is not a failure). */
export function runLuo(args: string[]): Promise<LuoRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [LUO_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The errno a promise rejects with ('ok' when it resolves); anything but a LuoError is rethrown. */
export async function errnoOf(p: Promise<unknown>): Promise<ErrnoName | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof LuoError) return e.errno;
    throw e;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `cond` holds, polling, for as long as it takes: a slow machine only makes it slower.
 * What can never happen any more is a failure instead (`cond` or `gone` throwing, e.g. the process
 * that should bring it about has exited). Says on stderr what it is still waiting for every 15 s.
 */
export async function until(cond: () => boolean | Promise<boolean>, what: string, gone?: () => string | undefined): Promise<void> {
  const t0 = Date.now();
  let said = t0;
  while (!(await cond())) {
    const why = gone?.();
    if (why) throw new Error(`gave up waiting for ${what}: ${why}`);
    if (Date.now() - said > 15_000) {
      said = Date.now();
      process.stderr.write(`# still waiting for ${what} (${Math.round((said - t0) / 1000)} s)\n`);
    }
    await sleep(20);
  }
}

export interface DaemonProc {
  child: ChildProcess;
  socket: string;
  stateDir: string;
  log: string;
  exited: Promise<number | null>;
}

/** `luo serve` as a child process; resolves once its socket answers. */
export async function startDaemon(dir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<DaemonProc> {
  const socket = join(dir, 'luo.sock');
  const stateDir = join(dir, 'state');
  const log = join(dir, 'luod.log');
  const child = spawn(process.execPath, [LUO_BIN, 'serve', '--socket', socket, '--state-dir', stateDir, '--log', log, '--ram', '1G', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let dead = false;
  void exited.then(() => (dead = true));
  // ready when the socket answers; a daemon that exited instead can never be
  await until(() => LuoDaemon.alive(socket), `the daemon on ${socket}`, () => (dead ? `luo serve exited early: ${stderr}` : undefined));
  return { child, socket, stateDir, log, exited };
}

/** Pids of live processes whose command line mentions `needle` (the daemons of one temp dir). */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (cmd.includes(needle) && !/\) Z /.test(stat)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** SIGKILLs every process started for `dir` (by pid) and removes the directory. */
export async function cleanup(dir: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const pids = processesMentioning(dir);
    if (pids.length === 0) break;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await sleep(20);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** A python3 helper holding a real memfd: returns its pid and fd, and a way to write/seek/stop. */
export interface MemfdHolder {
  pid: number;
  fd: number;
  hiddenFd: number;
  seals: number;
  cmd(line: string): Promise<string>;
  stop(): void;
}

const HOLDER = `
import os, sys, fcntl
fd = os.memfd_create(sys.argv[1], os.MFD_ALLOW_SEALING)
data = bytes.fromhex(sys.argv[2])
os.write(fd, data)
os.lseek(fd, int(sys.argv[3]), 0)
hidden = os.dup(fd)
seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
print(os.getpid(), fd, hidden, seals, flush=True)
for line in sys.stdin:
    w = line.split()
    if w[0] == 'write':
        os.pwrite(fd, bytes.fromhex(w[2]), int(w[1]))
    elif w[0] == 'seek':
        os.lseek(fd, int(w[1]), 0)
    elif w[0] == 'close':
        os.close(fd)
    elif w[0] == 'fork':
        # a holder that keeps every fd (the hidden dup at the same number) and does nothing else
        child = os.fork()
        if child == 0:
            import signal
            while True:
                signal.pause()
        print(child, flush=True)
        continue
    print('ok', flush=True)
`;

export async function memfdHolder(name: string, data: Uint8Array, pos = 0): Promise<MemfdHolder> {
  const child = spawn('python3', ['-c', HOLDER, name, Buffer.from(data).toString('hex') || '', String(pos)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  const waiters: Array<(l: string) => void> = [];
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiters.shift()?.(line);
    }
  });
  const next = (): Promise<string> => new Promise((r) => waiters.push(r));
  const first = await next();
  const [pid, fd, hidden, seals] = first.split(' ').map(Number) as [number, number, number, number];
  return {
    pid, fd, hiddenFd: hidden, seals,
    cmd: (line) => {
      const p = next();
      child.stdin!.write(`${line}\n`);
      return p;
    },
    stop: () => child.kill('SIGKILL'),
  };
}
