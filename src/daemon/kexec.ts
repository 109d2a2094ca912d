/**
 * Kexec into a new process (docs/protocol.md 6): the old daemon runs the kernel's reboot path,
 * saves what the hand-over needs as a crash-safe image, and starts a new daemon that boots from
 * the image alone and takes the socket path over. The image plays the part of the RAM a real
 * kexec leaves in place; its meta the part of the boot protocol (kho_data, command line).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { ERRNO, isLuoError, LuoError } from '../errno.ts';
import type { KhoBootData } from '../kho/incoming.ts';
import type { BootParams } from '../kernel/kernel.ts';
import { buildForRelease, DEFAULT_BUILD, type KernelBuild } from '../kernel/build.ts';
import { PhysicalMemory } from '../machine/memory.ts';
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

export async function kexecIntoNewProcess(
  d: LuoDaemon, opts: { build?: string | undefined; cmdline?: string | undefined; release?: string | undefined; childArgs: readonly string[] },
): Promise<KexecResult> {
  const t0 = performance.now();
  const k = d.kernel;
  let bin: string;
  let target: KernelBuild | undefined;
  try {
    bin = resolveBuild(opts.build);
    if (opts.release !== undefined) target = buildForRelease(opts.release);
    mkdirSync(d.stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const err = isLuoError(e) ? e : new LuoError('EIO', (e as Error).message);
    return { ok: false, committed: false, errno: err.code, message: err.detail };
  }

  // Freeze: real memfds' contents and positions into their simulated twins, then the reboot
  // path (LUO serializes; an error refuses the kexec and leaves everything as it was).
  let captured: { files: number; bytes: number; warnings: string[] };
  let handover;
  try {
    captured = d.mirrors.captureAll();
    // kexec_file_load of the new release (refused, changing nothing, when luo cannot run it)
    if (opts.cmdline !== undefined || target || !k.kexecLoaded) k.kexecLoad({ ...(opts.cmdline !== undefined ? { cmdline: opts.cmdline } : {}), ...(target ? { build: target } : {}) });
    handover = k.prepareKexec();
  } catch (e) {
    const err = isLuoError(e) ? e : new LuoError('EIO', (e as Error).message);
    d.print('err', `kexec refused: ${err.message}`);
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
    stats: { ...handover.stats, capturedFiles: captured.files, capturedBytes: captured.bytes },
    createdAt: new Date().toISOString(),
  };
  const imgPath = join(d.stateDir, IMAGE_NAME);
  try {
    await d.machine.memory.saveImage(imgPath, { ranges: handover.keep, meta });
  } catch (e) {
    const msg = `kexec: writing ${imgPath} failed: ${(e as Error).message}; the previous image (if any) is intact`;
    d.print('err', msg);
    return { ok: false, committed: true, errno: ERRNO.EIO, message: msg };
  }
  const imageBytes = statSync(imgPath).size;
  crashPoint('image-written');
  const t2 = performance.now();
  d.print('info', `kexec: image ${imgPath} (${imageBytes} bytes, ${handover.keep.length} ranges) written; starting ${bin}`);

  const logged = opts.childArgs.includes('--log');
  // the new kernel is the loaded image's release (the running one unless --release chose another);
  // the default release is not named, so an older luo build without --release can still be the target
  const release = (k.kexecLoaded?.build ?? k.build).release;
  const releaseArgs = release === DEFAULT_BUILD.release ? [] : ['--release', release];
  const child = spawn(process.execPath, [bin, 'serve', '--from-image', imgPath, '--socket', d.socketPath, '--state-dir', d.stateDir, '--takeover', ...releaseArgs, ...opts.childArgs], {
    detached: true,
    stdio: ['ignore', logged ? 'ignore' : 'inherit', logged ? 'ignore' : 'inherit', 'pipe'],
  });
  crashPoint('spawned');
  const timeoutMs = Number(process.env['LUO_KEXEC_TIMEOUT_MS'] ?? 60000);
  const ready = await new Promise<{ pid: number; generation: bigint } | string>((res) => {
    let text = '';
    const timer = setTimeout(() => res(`the new daemon did not become ready within ${timeoutMs} ms`), timeoutMs);
    const pipe = child.stdio[3] as Readable;
    pipe.on('data', (b: Buffer) => {
      text += b.toString();
      const m = /^ready (\d+) (\d+)\n/.exec(text);
      if (m) {
        clearTimeout(timer);
        res({ pid: Number(m[1]), generation: BigInt(m[2]!) });
      }
    });
    pipe.on('error', () => undefined);
    child.once('error', (e) => {
      clearTimeout(timer);
      res(`could not start ${bin}: ${e.message}`);
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      res(`the new daemon exited (${sig ?? `code ${code}`}) before taking over`);
    });
  });
  (child.stdio[3] as Readable).destroy();
  if (typeof ready === 'string') {
    const msg = `kexec: ${ready}; the new state is in ${imgPath} (luo serve --resume boots it)`;
    d.print('err', msg);
    if (child.exitCode === null) child.kill('SIGKILL');
    return { ok: false, committed: true, errno: ERRNO.EIO, message: msg };
  }
  child.unref();
  crashPoint('ready');
  const t3 = performance.now();
  const stats = { ...meta.stats, imageBytes, imageMs: t2 - t1, takeoverMs: t3 - t2, totalMs: t3 - t0, image: imgPath, newPid: ready.pid, warnings: captured.warnings };
  d.print('info', `kexec: daemon ${ready.pid} took over ${d.socketPath} (total ${(t3 - t0).toFixed(1)} ms)`);
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
export async function loadHandover(path: string): Promise<{ memory: PhysicalMemory; params: BootParams; meta: HandoverMeta }> {
  const { memory, meta } = await PhysicalMemory.loadImage(path);
  const h = parseHandoverMeta(meta, path);
  if (h.ramSize !== memory.size) throw new LuoError('EINVAL', `${path}: meta says RAM is ${hex(h.ramSize)}, the image holds ${hex(memory.size)}`);
  return { memory, params: h.params, meta: h.meta };
}
