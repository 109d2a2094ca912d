/**
 * Kexec into a new process (docs/protocol.md 6): the new daemon is started ahead and loads while the
 * old one still serves (planKexec, the `kexec -l`); then the old daemon runs the kernel's reboot
 * path, saves what the hand-over needs as a crash-safe image and hands it over; the new daemon boots
 * from the image alone and takes the socket path over (kexecIntoNewProcess, the `kexec -e`). The
 * image plays the part of the RAM a real kexec leaves in place; its meta the part of the boot
 * protocol (kho_data, command line).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Duplex, Readable } from 'node:stream';
import { ERRNO, isLuoError, LuoError } from '../errno.ts';
import type { KhoBootData } from '../kho/incoming.ts';
import type { BootParams } from '../kernel/kernel.ts';
import { DEFAULT_BUILD, type KernelBuild, releaseLike } from '../kernel/build.ts';
import { PhysicalMemory } from '../machine/memory.ts';
import type { ImageStream, WriteProgress } from '../machine/image.ts';
import { STREAM_ENV } from './successor.ts';
import { luoVersion } from '../version.ts';
import type { LuoDaemon } from './server.ts';

export const IMAGE_NAME = 'luo.img';
export const HANDOVER_FORMAT = 'luo-handover-v1';

/** The boot protocol as the image's meta carries it (addresses as hex strings). */
export interface HandoverMeta {
  format: typeof HANDOVER_FORMAT;
  luoVersion: string;
  from: { release: string; khoProfile: string; pid: number; generation: string };
  /** Absolute path of the socket the writing daemon served: only a daemon on it boots the image. */
  socket?: string;
  cmdline: string;
  kho: { fdtAddr: string; fdtSize: string; scratchAddr: string; scratchSize: string } | null;
  image: { addr: string; size: string } | null;
  ramSize: string;
  liveupdateNum: number;
  stats: Record<string, number>;
  createdAt: string;
}

export type KexecResult =
  | { ok: true; pid: number; generation: bigint; stats: Record<string, unknown> }
  | { ok: false; committed: boolean; errno: number; message: string };

const hex = (v: bigint): string => `0x${v.toString(16)}`;


/** bin/luo.mjs of this build. */
export const THIS_BUILD = fileURLToPath(new URL('../../bin/luo.mjs', import.meta.url));

/** The entry point of a luo build given as a directory (with bin/luo.mjs) or the script itself. */
export function resolveBuild(build: string | undefined): string {
  if (!build) return THIS_BUILD;
  const p = resolve(build);
  if (!existsSync(p)) throw new LuoError('ENOENT', `kexec: luo build ${p} does not exist`);
  if (statSync(p).isDirectory()) {
    const bin = join(p, 'bin', 'luo.mjs');
    if (!existsSync(bin)) throw new LuoError('ENOENT', `kexec: ${p} has no bin/luo.mjs`);
    return bin;
  }
  return p;
}

/** Test hook: LUO_DAEMON_CRASH_AT=<phase> kills this process with SIGKILL at that point. */
function crashPoint(phase: string): void {
  if (process.env['LUO_DAEMON_CRASH_AT'] === phase) process.kill(process.pid, 'SIGKILL');
}

/** What `luo kexec` settles before anything freezes: the build to run, its release, the successor. */
export interface KexecPlan {
  readonly bin: string;
  readonly target: KernelBuild | undefined;
  readonly cmdline: string | undefined;
  /** The release the new daemon boots. */
  readonly release: string;
  /** The new daemon started and loaded ahead of the freeze (absent: it is started after the image). */
  readonly successor: Successor | undefined;
  readonly t0: number;
}

/**
 * The new daemon started ahead of the freeze, as `kexec -l` loads the new kernel before `kexec -e`:
 * it loads its whole program, says `loaded` on fd 3 and waits there for `image PATH` (or `abort`),
 * so the blackout is only freeze, image, boot and restore. The channel is a socket pair.
 */
export interface Successor {
  readonly child: ChildProcess;
  readonly channel: Duplex;
  /** Its start-up, outside the blackout. */
  readonly startMs: number;
  /** It reads the image as it is written (it said `loaded stream`). */
  readonly streams: boolean;
}

function successorArgs(d: LuoDaemon, release: string, childArgs: readonly string[]): string[] {
  // the default release is not named, so an older luo build without --release can still be the target
  const releaseArgs = release === DEFAULT_BUILD.release ? [] : ['--release', release];
  return ['--socket', d.socketPath, '--state-dir', d.stateDir, '--takeover', ...releaseArgs, ...childArgs];
}

function spawnDaemon(bin: string, args: readonly string[], childArgs: readonly string[]): ChildProcess {
  const logged = childArgs.includes('--log');
  return spawn(process.execPath, [bin, 'serve', ...args], {
    detached: true,
    // a successor started ahead may read the image while it is written (successor.ts; LUO_IMAGE_STREAM=0: never)
    env: { ...process.env, [STREAM_ENV]: process.env[STREAM_ENV] === '0' ? '0' : '1' },
    stdio: ['ignore', logged ? 'ignore' : 'inherit', logged ? 'ignore' : 'inherit', 'pipe'],
  });
}

/** Waits for a line matching `re` on the child's fd 3; a string says why it did not come. */
function awaitLine(child: ChildProcess, re: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray | string> {
  return new Promise((res) => {
    let text = '';
    const pipe = child.stdio[3] as Readable;
    const done = (v: RegExpExecArray | string): void => {
      clearTimeout(timer);
      pipe.off('data', onData);
      child.off('exit', onExit);
      child.off('error', onError);
      res(v);
    };
    const timer = setTimeout(() => done(`the new daemon was not ${what} within ${timeoutMs} ms`), timeoutMs);
    const onData = (b: Buffer): void => {
      text += b.toString();
      const m = re.exec(text);
      if (m) done(m);
    };
    const onExit = (code: number | null, sig: string | null): void => done(`the new daemon exited (${sig ?? `code ${code}`}) before it was ${what}`);
    const onError = (e: Error): void => done(`could not start it: ${e.message}`);
    pipe.on('data', onData);
    pipe.on('error', () => undefined);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

const kexecTimeoutMs = (): number => Number(process.env['LUO_KEXEC_TIMEOUT_MS'] ?? 60000);

/**
 * Everything a kexec settles before the freeze, the old daemon still serving meanwhile: the build
 * and release (refusals change nothing), and the successor started and loaded. A build that cannot
 * wait for its image (an older luo) is started after the image instead, as before.
 */
export async function planKexec(
  d: LuoDaemon, opts: { build?: string | undefined; cmdline?: string | undefined; release?: string | undefined; childArgs: readonly string[] },
): Promise<KexecPlan | { ok: false; errno: number; message: string }> {
  const t0 = performance.now();
  const k = d.kernel;
  let bin: string;
  let target: KernelBuild | undefined;
  try {
    bin = resolveBuild(opts.build);
    // another release keeps this kernel's plugins and test config (the successor is started with them too)
    if (opts.release !== undefined) target = releaseLike(opts.release, k.build);
    mkdirSync(d.stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const err = isLuoError(e) ? e : new LuoError('EIO', (e as Error).message);
    return { ok: false, errno: err.code, message: err.detail };
  }
  const release = target?.release ?? (opts.cmdline !== undefined || !k.kexecLoaded ? k.build : k.kexecLoaded.build).release;
  let successor: Successor | undefined;
  if (process.env['LUO_KEXEC_PRESTART'] !== '0') {
    const child = spawnDaemon(bin, ['--await-image', ...successorArgs(d, release, opts.childArgs)], opts.childArgs);
    const loaded = await awaitLine(child, /^loaded( stream)?\n/, kexecTimeoutMs(), 'loaded');
    if (typeof loaded === 'string') {
      if (child.exitCode === null) child.kill('SIGKILL');
      d.print('info', `kexec: ${bin} cannot be started ahead of the freeze (${loaded}); it starts after the image`);
    } else successor = { child, channel: child.stdio[3] as Duplex, startMs: performance.now() - t0, streams: loaded[1] !== undefined };
  }
  return { bin, target, cmdline: opts.cmdline, release, successor, t0 };
}

/** A kexec refused before the freeze: the successor is told to go away. */
export function abandonSuccessor(s: Successor | undefined): void {
  if (!s) return;
  s.channel.end('abort\n');
  s.child.unref();
  setTimeout(() => {
    if (s.child.exitCode === null) s.child.kill('SIGKILL');
  }, 5000).unref();
}

export async function kexecIntoNewProcess(d: LuoDaemon, plan: KexecPlan, childArgs: readonly string[]): Promise<KexecResult> {
  const t0 = plan.t0;
  const tFreeze = performance.now();
  const k = d.kernel;
  const { bin, target, cmdline } = plan;

  // Freeze: real memfds' contents and positions into their simulated twins, then the reboot
  // path (LUO serializes; an error refuses the kexec and leaves everything as it was).
  let captured: { files: number; bytes: number; warnings: string[] };
  let handover;
  try {
    captured = d.mirrors.captureAll();
    // kexec_file_load of the new release (refused, changing nothing, when luo cannot run it)
    if (cmdline !== undefined || target || !k.kexecLoaded) k.kexecLoad({ ...(cmdline !== undefined ? { cmdline } : {}), ...(target ? { build: target } : {}) });
    handover = k.prepareKexec();
  } catch (e) {
    const err = isLuoError(e) ? e : new LuoError('EIO', (e as Error).message);
    d.print('err', `kexec refused: ${err.message}`);
    abandonSuccessor(plan.successor);
    return { ok: false, committed: false, errno: err.code, message: err.detail };
  }
  crashPoint('serialized');
  const t1 = performance.now();

  const kho = handover.params.kho;
  const meta: HandoverMeta = {
    format: HANDOVER_FORMAT,
    luoVersion: luoVersion(),
    from: { release: k.build.release, khoProfile: k.build.abi.kho.compatible, pid: process.pid, generation: hex(d.generation) },
    socket: resolve(d.socketPath),
    cmdline: handover.params.cmdline,
    kho: kho ? { fdtAddr: hex(kho.fdtAddr), fdtSize: hex(kho.fdtSize), scratchAddr: hex(kho.scratchAddr), scratchSize: hex(kho.scratchSize) } : null,
    image: handover.params.image ? { addr: hex(handover.params.image.addr), size: hex(handover.params.image.size) } : null,
    ramSize: hex(d.machine.memory.size),
    liveupdateNum: (k.luo?.incomingNum ?? 0) + (k.luo?.enabled ? 1 : 0),
    // frozenAt (epoch ms): the new daemon measures the blackout to its readiness from it (same clock)
    stats: { ...handover.stats, capturedFiles: captured.files, capturedBytes: captured.bytes, frozenAt: performance.timeOrigin + tFreeze },
    createdAt: new Date().toISOString(),
  };
  const imgPath = join(d.stateDir, IMAGE_NAME);
  const ahead = plan.successor;
  // a successor that streams reads the image on its own core while this one writes it
  const progress: WriteProgress | undefined = ahead?.streams
    ? { opened: (tmp) => void ahead.channel.write(`stream ${tmp}\n`), written: (n) => void ahead.channel.write(`written ${n}\n`) }
    : undefined;
  try {
    // not fsynced: what a kexec hands over does not survive a power loss on a real machine either
    await d.machine.memory.saveImage(imgPath, { ranges: handover.keep, meta, durable: false, ...(progress ? { progress } : {}) });
  } catch (e) {
    const msg = `kexec: writing ${imgPath} failed: ${(e as Error).message}; the previous image (if any) is intact`;
    d.print('err', msg);
    abandonSuccessor(ahead);
    return { ok: false, committed: true, errno: ERRNO.EIO, message: msg };
  }
  const imageBytes = statSync(imgPath).size;
  crashPoint('image-written');
  const t2 = performance.now();
  d.print('info', `kexec: image ${imgPath} (${imageBytes} bytes, ${handover.keep.length} ranges) written; ${ahead ? `handing it to daemon ${ahead.child.pid}, started ahead` : `starting ${bin}`}`);

  // the successor started ahead takes the image; else the new daemon starts now, from the image
  let child: ChildProcess;
  if (ahead) {
    child = ahead.child;
    ahead.channel.write(`image ${imgPath}\n`);
  } else child = spawnDaemon(bin, ['--from-image', imgPath, ...successorArgs(d, plan.release, childArgs)], childArgs);
  crashPoint('spawned');
  const line = await awaitLine(child, /^ready (\d+) (\d+)\n/, kexecTimeoutMs(), 'ready');
  (child.stdio[3] as Readable).destroy();
  if (typeof line === 'string') {
    const msg = `kexec: ${line}; the new state is in ${imgPath} (luo serve --resume boots it)`;
    d.print('err', msg);
    if (child.exitCode === null) child.kill('SIGKILL');
    return { ok: false, committed: true, errno: ERRNO.EIO, message: msg };
  }
  const ready = { pid: Number(line[1]), generation: BigInt(line[2]!) };
  child.unref();
  crashPoint('ready');
  const t3 = performance.now();
  // the blackout: from the freeze to the new daemon's readiness (its start-up ahead is not in it)
  const stats = {
    ...meta.stats, imageBytes, freezeMs: t1 - tFreeze, imageMs: t2 - t1, takeoverMs: t3 - t2, blackoutMs: t3 - tFreeze, totalMs: t3 - t0,
    successorStartMs: ahead ? ahead.startMs : null, image: imgPath, newPid: ready.pid, warnings: captured.warnings,
  };
  d.print('info', `kexec: daemon ${ready.pid} took over ${d.socketPath} (blackout ${(t3 - tFreeze).toFixed(1)} ms${ahead ? `; it started ahead in ${ahead.startMs.toFixed(1)} ms` : ''})`);
  return { ok: true, pid: ready.pid, generation: ready.generation, stats };
}

/** Reads and checks an image's boot parameters; the memory it describes is verified by loadImage. */
export function parseHandoverMeta(meta: unknown, path: string): { params: BootParams; ramSize: bigint; meta: HandoverMeta } {
  const m = meta as Partial<HandoverMeta> | null;
  const bad = (what: string): never => {
    throw new LuoError('EINVAL', `${path}: not a luo hand-over image: ${what}`);
  };
  if (!m || typeof m !== 'object') bad('meta is not an object');
  if (m!.format !== HANDOVER_FORMAT) bad(`format ${JSON.stringify(m!.format)} (expected ${HANDOVER_FORMAT})`);
  const big = (s: unknown, what: string): bigint => {
    if (typeof s !== 'string' || !/^0x[0-9a-f]+$/.test(s)) bad(`${what} ${JSON.stringify(s)}`);
    return BigInt(s as string);
  };
  if (typeof m!.cmdline !== 'string') bad('cmdline');
  const kho: KhoBootData | undefined = m!.kho
    ? { fdtAddr: big(m!.kho.fdtAddr, 'kho.fdtAddr'), fdtSize: big(m!.kho.fdtSize, 'kho.fdtSize'), scratchAddr: big(m!.kho.scratchAddr, 'kho.scratchAddr'), scratchSize: big(m!.kho.scratchSize, 'kho.scratchSize') }
    : undefined;
  const image = m!.image ? { addr: big(m!.image.addr, 'image.addr'), size: big(m!.image.size, 'image.size') } : undefined;
  return { params: { cmdline: m!.cmdline!, ...(kho ? { kho } : {}), ...(image ? { image } : {}) }, ramSize: big(m!.ramSize, 'ramSize'), meta: m as HandoverMeta };
}

/** Loads and verifies an image (checksum, structure, meta): a bad one throws and is never booted. */
export async function loadHandover(path: string, stream?: ImageStream): Promise<{ memory: PhysicalMemory; params: BootParams; meta: HandoverMeta }> {
  const { memory, meta } = await PhysicalMemory.loadImage(path, stream ? { stream } : {});
  const h = parseHandoverMeta(meta, path);
  if (h.ramSize !== memory.size) throw new LuoError('EINVAL', `${path}: meta says RAM is ${hex(h.ramSize)}, the image holds ${hex(memory.size)}`);
  return { memory, params: h.params, meta: h.meta };
}
