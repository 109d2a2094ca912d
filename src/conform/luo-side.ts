/**
 * One program on luo: a `luo serve` daemon of the chosen release, the same C interpreter
 * (lu_script, dynamically linked) through the LD_PRELOAD shim for each stage, and a `luo kexec` of
 * the daemon into a new process between stages, with the stage's holder keeping its fds as the
 * guest's does. The transcripts have the same form as the kernel's (qemu.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LuoClient } from '../client/index.ts';
import { LuoError } from '../errno.ts';
import { THIS_BUILD } from '../daemon/kexec.ts';
import { type Program, stageText } from './program.ts';
import type { KernelRun, StageTranscript } from './qemu.ts';

const BUILD_NATIVE = fileURLToPath(new URL('../../scripts/build-native.sh', import.meta.url));

export interface HostTools {
  readonly shim: string;
  readonly luScript: string;
}

/** Builds the shim and the conformance programs into `dir` (scripts/build-native.sh). */
export function buildHostTools(dir: string): HostTools {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('bash', [BUILD_NATIVE, dir], { encoding: 'utf8' });
  const tools = { shim: join(dir, 'libluo-preload.so'), luScript: join(dir, 'lu_script') };
  if (r.status !== 0 || !existsSync(tools.shim) || !existsSync(tools.luScript)) {
    throw new LuoError('EIO', `luo conform: building the LD_PRELOAD shim and lu_script failed: ${r.error?.message ?? `${r.stdout}${r.stderr}`.trim()}`);
  }
  return tools;
}

/** Runs a program under the shim; output to files (a holder keeps them open, never a pipe). */
function runStage(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-conform-run-'));
  const out = openSync(join(dir, 'out'), 'w');
  const err = openSync(join(dir, 'err'), 'w');
  return new Promise((resolve) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', out, err] });
    closeSync(out);
    closeSync(err);
    const finish = (code: number | null): void => {
      const r = { code, stdout: readFileSync(join(dir, 'out'), 'latin1'), stderr: readFileSync(join(dir, 'err'), 'latin1') };
      rmSync(dir, { recursive: true, force: true });
      resolve(r);
    };
    child.on('exit', finish);
    child.on('error', () => finish(null));
  });
}

export interface LuoSideOptions {
  readonly tools: HostTools;
  /** A release of `luo releases` (default: the daemon's default). */
  readonly release?: string;
}

/** Runs `prog` on luo and returns its stages' transcripts, in the kernel run's shape. */
export async function runOnLuo(prog: Program, opts: LuoSideOptions): Promise<KernelRun> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-conform-luo-'));
  const socket = join(dir, 'luo.sock');
  let log = '';
  const daemon = spawn(process.execPath, [THIS_BUILD, 'serve', '--socket', socket, '--state-dir', join(dir, 'state'), ...(opts.release ? ['--release', opts.release] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout.on('data', (d: Buffer) => (log += d.toString()));
  daemon.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const holders: number[] = [];
  const stages: StageTranscript[] = [];
  const tail = (): string[] => log.trim().split('\n').slice(-20);
  try {
    let client: LuoClient | undefined;
    while (!client) {
      if (daemon.exitCode !== null) throw new LuoError('EIO', `luo conform: luo serve exited with ${daemon.exitCode}:\n${log}`);
      client = await LuoClient.connect(socket).catch(() => undefined);
      if (!client) await new Promise((r) => setTimeout(r, 25));
    }
    await client.close();
    const env = { ...process.env, LUO_SOCKET: socket, LD_PRELOAD: opts.tools.shim };
    for (const [i, ops] of prog.stages.entries()) {
      const file = join(dir, `stage${i + 1}`);
      writeFileSync(file, stageText(ops));
      const last = i === prog.stages.length - 1;
      const r = await runStage(opts.tools.luScript, last ? [file] : [file, '--hold'], env);
      const lines = r.stdout.split('\n').filter((l) => l);
      const h = lines.at(-1)?.match(/^HOLDER (\d+)$/);
      if (h) {
        holders.push(Number(h[1]));
        lines.pop();
      }
      stages.push({ lines, ...(r.code !== null ? { rc: r.code } : {}) });
      if (last) break;
      const c = await LuoClient.connectRetry(socket);
      try {
        await c.kexec();
      } catch (e) {
        return { stages, outcome: 'kexec-failed', tail: [...tail(), `luo kexec: ${(e as Error).message}`] };
      }
    }
    const panicked = /Kernel panic - not syncing[^\n]*/.exec(log)?.[0];
    return { stages, outcome: panicked ? 'panic' : 'done', ...(panicked ? { panic: panicked } : {}), tail: tail() };
  } finally {
    for (const pid of holders) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone with the kexec */
      }
    }
    try {
      const c = await LuoClient.connect(socket);
      await c.shutdown().catch(() => undefined);
    } catch {
      /* already gone */
    }
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
