/**
 * Kexec into a new process (docs/protocol.md 6): the new daemon is started ahead and loads while the
 * old one still serves (planKexec, the `kexec -l`); then the old daemon runs the kernel's reboot
 * path, saves what the hand-over needs as a crash-safe image and hands it over; the new daemon boots
 * from the image alone and takes the socket path over (kexecIntoNewProcess, the `kexec -e`). The
 * image plays the part of the RAM a real kexec leaves in place; its meta the part of the boot
 * protocol (kho_data, command line).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Duplex, Readable } from 'node:stream';
import { ERRNO, isLuoError, LuoError } from '../errno.ts';
import type { KhoBootData } from '../kho/incoming.ts';
import type { BootParams, KexecHandover } from '../kernel/kernel.ts';
import { DEFAULT_BUILD, type KernelBuild, releaseLike } from '../kernel/build.ts';
import { PhysicalMemory } from '../machine/memory.ts';
import type { ImageStream, LoadedBase, WriteProgress } from '../machine/image.ts';
import { IntervalSet } from '../machine/ranges.ts';
import { PRECOPY_ENV, STREAM_ENV } from './successor.ts';
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
  /** The preserved pages it already holds (absent: the image carries every page). */
  readonly precopy: Precopy | undefined;
  readonly t0: number;
}

/**
 * A base image written and loaded by the successor ahead of the freeze: the pages it holds, and
 * which of them changed since (the freeze's image writes those again, and names the base for the rest).
 */
export interface Precopy {
  readonly name: string;
  readonly path: string;
  readonly length: number;
  readonly seal: Uint8Array;
  /** The DATA pages the base holds. */
  readonly pages: IntervalSet;
  /** Pages changed since the base was begun (live until the freeze). */
  readonly changed: ReadonlySet<number>;
  readonly ms: number;
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
  /** It loads a base image ahead of the freeze (it said `loaded stream precopy`). */
  readonly precopies: boolean;
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
    // and may load the preserved pages ahead of the freeze (LUO_IMAGE_PRECOPY=0: never)
    env: { ...process.env, [STREAM_ENV]: process.env[STREAM_ENV] === '0' ? '0' : '1', [PRECOPY_ENV]: process.env[PRECOPY_ENV] === '0' ? '0' : '1' },
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
    const loaded = await awaitLine(child, /^loaded( stream)?( precopy)?\n/, kexecTimeoutMs(), 'loaded');
    if (typeof loaded === 'string') {
      if (child.exitCode === null) child.kill('SIGKILL');
      d.print('info', `kexec: ${bin} cannot be started ahead of the freeze (${loaded}); it starts after the image`);
    } else {
      successor = { child, channel: child.stdio[3] as Duplex, startMs: performance.now() - t0, streams: loaded[1] !== undefined, precopies: loaded[2] !== undefined };
    }
  }
  holdPrevious(d.stateDir);
  let precopy: Precopy | undefined;
  if (successor?.precopies) {
    const p = await precopyTo(d, successor);
    if (p === 'lost') successor = undefined;
    else precopy = p;
  }
  return { bin, target, cmdline: opts.cmdline, release, successor, precopy, t0 };
}

/**
 * The image a kexec replaces keeps a second name until the kexec is over, so the rename in the
 * blackout frees nothing: dropping a large file's cached pages takes milliseconds (~14 ms for 48
 * MiB here), spent after the new daemon serves instead (releasePrevious).
 */
function holdPrevious(dir: string): void {
  const img = join(dir, IMAGE_NAME);
  releasePrevious(dir);
  try {
    linkSync(img, `${img}.prev`);
  } catch {
    /* no image yet */
  }
}

function releasePrevious(dir: string): void {
  try {
    unlinkSync(join(dir, `${IMAGE_NAME}.prev`));
  } catch {
    /* none held */
  }
}

/** An image written as the successor reads it: `<order> TMP` once the file exists, then `written N` lines. */
function streamedTo(s: Successor, order: 'base' | 'stream'): WriteProgress {
  return { opened: (tmp) => void s.channel.write(`${order} ${tmp}\n`), written: (n) => void s.channel.write(`written ${n}\n`) };
}

let precopies = 0;
/** Base images are named `luo.base.<pid>.<n>.img` in the state directory. */
const BASE_RE = /^luo\.base\.\d+\.\d+\.img(\.tmp)?$/;

/**
 * Pre-copy (the successor said `loaded stream precopy`): starts tracking changes to memory, writes
 * the pages the hand-over would keep now as a base image while the daemon serves on, streams it to
 * the successor and waits for it to say `based`. Undefined when the successor could not load it
 * (the kexec goes on without); 'lost' when the successor went away (it starts after the image).
 */
async function precopyTo(d: LuoDaemon, s: Successor): Promise<Precopy | undefined | 'lost'> {
  const t0 = performance.now();
  const mem = d.machine.memory;
  const name = `luo.base.${process.pid}.${++precopies}.img`;
  const path = join(d.stateDir, name);
  // real memfds' bytes into their twins first: the freeze then rewrites only pages changed since
  d.mirrors.captureContents();
  const changed = mem.trackChanges();
  const stop = (why: string): void => {
    dropBase(d, path);
    d.print('info', `kexec: no pre-copy (${why}); the image will carry every page`);
  };
  let written;
  try {
    written = await mem.saveImage(path, {
      ranges: d.kernel.handoverRanges(), meta: { role: 'luo-kexec-base', pid: process.pid }, durable: false,
      progress: streamedTo(s, 'base'),
    });
  } catch (e) {
    // the successor is in the middle of reading it: it cannot be told to go on without
    stop(`writing ${path} failed: ${(e as Error).message}`);
    abandonSuccessor(s);
    return 'lost';
  }
  s.channel.write(`image ${path}\n`);
  const ack = await awaitLine(s.child, /^(based|nobase (.*))\n/, kexecTimeoutMs(), 'loading the base image');
  if (typeof ack === 'string') {
    stop(ack);
    if (s.child.exitCode === null) s.child.kill('SIGKILL');
    return 'lost';
  }
  if (ack[1] !== 'based') {
    stop(`the new daemon could not load ${path}: ${ack[2]}`);
    return undefined;
  }
  return { name, path, length: written.length, seal: written.seal, pages: written.dataPages, changed, ms: performance.now() - t0 };
}

/** The base's pages not changed since it was begun. */
function unchangedPages(pre: Precopy): IntervalSet {
  const pages = pre.pages.clone();
  pages.subtract(IntervalSet.from([...pre.changed].map((pfn) => ({ start: pfn, end: pfn + 1 }))));
  return pages;
}

/** A pre-copy given up (or never used): the change log stops and the base image at `path` goes. */
function dropBase(d: LuoDaemon, path: string): void {
  d.machine.memory.stopTracking();
  try {
    unlinkSync(path);
  } catch {
    /* never renamed into place, or gone already */
  }
}

/**
 * After the hand-over, outside the blackout: the image is rewritten whole (this kernel's memory
 * is still here, kept pages unchanged), so the state directory holds one self-contained image
 * that can be copied, inspected and resumed alone; then every base goes. Until the rename a crash
 * leaves the image over its base, which loads just as well.
 */
async function makeWhole(d: LuoDaemon, imgPath: string, keep: KexecHandover['keep'], meta: HandoverMeta, pre: Precopy): Promise<void> {
  try {
    await d.machine.memory.saveImage(imgPath, { ranges: keep, meta, durable: false });
  } catch (e) {
    d.print('warn', `kexec: ${imgPath} could not be rewritten whole (${(e as Error).message}): it still needs its base ${pre.path}`);
    removeOldBases(d.stateDir, pre.name);
    return;
  }
  crashPoint('made-whole');
  removeOldBases(d.stateDir, undefined);
}

/** Removes base images from the state directory, but `keep` (the one the image names, if any). */
function removeOldBases(dir: string, keep: string | undefined): void {
  try {
    for (const f of readdirSync(dir)) if (BASE_RE.test(f) && f !== keep) unlinkSync(join(dir, f));
  } catch {
    /* a later kexec tries again */
  }
}

/** A kexec called off before the freeze: its pre-copy dropped, its successor sent away. */
export function abandonPlan(d: LuoDaemon, plan: KexecPlan): void {
  releasePrevious(d.stateDir);
  if (plan.precopy) dropBase(d, plan.precopy.path);
  abandonSuccessor(plan.successor);
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
    abandonPlan(d, plan);
    return { ok: false, committed: false, errno: err.code, message: err.detail };
  }
  crashPoint('serialized');
  const t1 = performance.now();

  const kho = handover.params.kho;
  const pre = plan.precopy;
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
    stats: {
      ...handover.stats, capturedFiles: captured.files, capturedBytes: captured.bytes, frozenAt: performance.timeOrigin + tFreeze,
      ...(pre ? { precopyMs: pre.ms, precopyPages: pre.pages.total(), changedPages: pre.changed.size } : {}),
    },
    createdAt: new Date().toISOString(),
  };
  const imgPath = join(d.stateDir, IMAGE_NAME);
  const ahead = plan.successor;
  // a successor that streams reads the image on its own core while this one writes it
  const progress: WriteProgress | undefined = ahead?.streams
    ? streamedTo(ahead, 'stream')
    : undefined;
  // the pages the successor holds already, unchanged since: named, not written
  const base = pre ? { name: pre.name, length: pre.length, seal: pre.seal, pages: unchangedPages(pre) } : undefined;
  let written;
  try {
    // not fsynced: what a kexec hands over does not survive a power loss on a real machine either
    written = await d.machine.memory.saveImage(imgPath, { ranges: handover.keep, meta, durable: false, ...(progress ? { progress } : {}), ...(base ? { base } : {}) });
  } catch (e) {
    const msg = `kexec: writing ${imgPath} failed: ${(e as Error).message}; the previous image (if any) is intact`;
    d.print('err', msg);
    abandonPlan(d, plan);
    return { ok: false, committed: true, errno: ERRNO.EIO, message: msg };
  }
  d.machine.memory.stopTracking();
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
    if (pre) await makeWhole(d, imgPath, handover.keep, meta, pre);
    releasePrevious(d.stateDir);
    return { ok: false, committed: true, errno: ERRNO.EIO, message: msg };
  }
  const ready = { pid: Number(line[1]), generation: BigInt(line[2]!) };
  child.unref();
  crashPoint('ready');
  const t3 = performance.now();
  // the new daemon serves: outside the blackout, the image is made whole again (bases go)
  releasePrevious(d.stateDir);
  if (pre) await makeWhole(d, imgPath, handover.keep, meta, pre);
  else removeOldBases(d.stateDir, undefined);
  // the blackout: from the freeze to the new daemon's readiness (its start-up ahead is not in it)
  const stats = {
    ...meta.stats, imageBytes, freezeMs: t1 - tFreeze, imageMs: t2 - t1, takeoverMs: t3 - t2, blackoutMs: t3 - tFreeze, totalMs: t3 - t0,
    // the whole hand-over (the image made whole), and the pages the blackout did not write
    handoverBytes: statSync(imgPath).size, ...(pre ? { carriedPages: written.basePages } : {}),
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
export async function loadHandover(path: string, stream?: ImageStream, base?: LoadedBase): Promise<{ memory: PhysicalMemory; params: BootParams; meta: HandoverMeta }> {
  const { memory, meta } = await PhysicalMemory.loadImage(path, { ...(stream ? { stream } : {}), ...(base ? { base } : {}) });
  const h = parseHandoverMeta(meta, path);
  if (h.ramSize !== memory.size) throw new LuoError('EINVAL', `${path}: meta says RAM is ${hex(h.ramSize)}, the image holds ${hex(memory.size)}`);
  return { memory, params: h.params, meta: h.meta };
}
