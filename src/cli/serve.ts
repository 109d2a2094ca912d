/**
 * `luo serve`: boots a machine (cold, or from a hand-over image) and serves its /dev/liveupdate
 * on a unix socket until SHUTDOWN, SIGTERM/SIGINT, or a kexec into a new daemon process.
 */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { Socket } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { ERRNO, type ErrnoName, isLuoError, LuoError } from '../errno.ts';
import { KernelPanic } from '../luo/core.ts';
import { DEFAULT_CMDLINE, Machine } from '../kernel/machine.ts';
import { PhysicalMemory } from '../machine/memory.ts';
import type { LoadedBase } from '../machine/image.ts';
import { buildForRelease, DEFAULT_BUILD, type KernelBuild, type SubsystemDecl, withHandlers } from '../kernel/build.ts';
import { loadHandlerPlugins } from '../kernel/plugin-load.ts';
import { IMAGE_NAME, loadHandover } from '../daemon/kexec.ts';
import { LuoDaemon, signalReady, socketPathState } from '../daemon/server.ts';
import { type ChannelStream, KexecChannel, takeKexecOffers } from '../daemon/successor.ts';
import { defaultSocketPath, defaultStateDir } from '../daemon/wire.ts';

export interface ServeOptions {
  socket?: string;
  ram?: string;
  cmdline?: string;
  stateDir?: string;
  fromImage?: string;
  resume?: boolean;
  takeover?: boolean;
  /** Started by a kexec ahead of its freeze: say `loaded` on fd 3, then wait there for the image. */
  awaitImage?: boolean;
  log?: string;
  /** The kernel release to boot (luo releases; default 7.3.4). */
  release?: string;
  /** File handler plugin modules built into the kernel (and into every kernel a kexec starts). */
  handler?: string[];
  /** CONFIG_LIVEUPDATE_TEST: the test module's three FLBs on every file handler. */
  liveupdateTest?: boolean;
  /** Subsystems in every kernel, NAME=DATA (a u64 handed over at the freeze). */
  subsystem?: string[];
}

/**
 * --subsystem NAME=DATA[,fail=OP:ERRNO[:TIMES]] (DATA a u64, decimal or 0x-hex; OP prepare or
 * freeze); EINVAL naming the bad one.
 */
export function parseSubsystem(spec: string): SubsystemDecl {
  const m = /^([^=,\0]{1,31})=(0x[0-9a-fA-F]{1,16}|\d{1,20})(?:,fail=(prepare|freeze):(E[A-Z0-9]+)(?::([1-9]\d{0,8}))?)?$/.exec(spec);
  const data = m ? BigInt(m[2]!) : -1n;
  if (!m || data > 0xffffffffffffffffn || (m[4] !== undefined && !Object.hasOwn(ERRNO, m[4]))) {
    throw new LuoError('EINVAL', `--subsystem ${spec}: expected NAME=DATA[,fail=prepare|freeze:ERRNO[:TIMES]] (a name of 1-31 characters, DATA a u64, ERRNO a name such as EBUSY)`);
  }
  const fail = m[3] ? { op: m[3] as 'prepare' | 'freeze', errno: m[4] as ErrnoName, ...(m[5] ? { times: Number(m[5]) } : {}) } : undefined;
  return { name: m[1]!, data, ...(fail ? { fail } : {}) };
}

/** "4G", "512MiB", "0x100000000", "1073741824" -> bytes. */
export function parseSize(s: string): bigint {
  const m = /^(0x[0-9a-f]+|\d+)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}" (e.g. 4G, 512M, 0x40000000)`);
  const shift = { '': 0n, k: 10n, m: 20n, g: 30n, t: 40n }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return BigInt(m[1]!) << shift;
}

/**
 * Test hooks: LUO_TEST_HOLD_LOADED=<file> keeps a successor from saying `loaded`, and
 * LUO_TEST_HOLD_BASED=<file> from saying `based`, until the file exists.
 */
async function holdForTest(what: 'LOADED' | 'BASED'): Promise<void> {
  const file = process.env[`LUO_TEST_HOLD_${what}`];
  while (file && !existsSync(file)) await new Promise((r) => setTimeout(r, 20));
}

export async function runServe(opts: ServeOptions): Promise<number> {
  const socketPath = opts.socket ?? defaultSocketPath();
  const stateDir = opts.stateDir ?? defaultStateDir(socketPath);
  if (opts.log) {
    // the log's directory is made if missing; a log that cannot be written is said at once
    try {
      mkdirSync(dirname(opts.log), { recursive: true });
      appendFileSync(opts.log, '');
    } catch (e) {
      process.stderr.write(`luo serve: cannot write the log ${opts.log}: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const out = opts.log ? (l: string) => appendFileSync(opts.log!, `${l}\n`) : (l: string) => process.stdout.write(`${l}\n`);
  const fail = (msg: string): number => {
    process.stderr.write(`luo serve: ${msg}\n`);
    try {
      if (opts.log) out(`luo serve: ${msg}`);
    } catch {
      /* said on stderr already */
    }
    return 1;
  };
  // checked before the machine boots (listen() checks again, for library users)
  if (socketPathState(socketPath) === 'not-a-socket') return fail(`${socketPath} exists and is not a socket: refusing to replace it (choose another --socket)`);
  let channel: Socket | undefined;
  let image = opts.fromImage;
  let stream: ChannelStream | undefined;
  let base: LoadedBase | undefined;
  let precopyMs: number | undefined;
  const offers = takeKexecOffers();
  if (opts.awaitImage) {
    // everything this program needs is loaded by now (serve's imports): only the image is missing
    const ch = KexecChannel.open(() => holdForTest('LOADED'), offers);
    if (!(ch instanceof KexecChannel)) return fail(ch.why);
    channel = ch.socket;
    let order = await ch.next();
    if (order.kind === 'base') {
      // the preserved pages as they are before the freeze: the image will carry only what changes
      const t = performance.now();
      try {
        const b = await PhysicalMemory.loadImage(order.tmpPath, { stream: order.stream });
        // test hook: a base this daemon cannot use (the kexec goes on without it)
        if (process.env['LUO_TEST_REFUSE_BASE'] === '1') throw new LuoError('EIO', 'refused by LUO_TEST_REFUSE_BASE');
        base = { memory: b.memory, name: basename(order.stream.path!), length: b.length, seal: b.seal };
        precopyMs = performance.now() - t;
        await holdForTest('BASED');
        ch.answer('based');
      } catch (e) {
        ch.answer(`nobase ${isLuoError(e) ? e.detail : (e as Error).message}`);
      }
      order = await ch.next();
    }
    if (order.kind === 'abort' || order.kind === 'gone' || order.kind === 'base') {
      channel.destroy();
      if (order.kind === 'abort') return 0; // the kexec was refused: the old daemon serves on
      return fail(order.kind === 'base' ? 'the kexec\'s channel offered a second base' : order.why);
    }
    if (order.kind === 'stream') {
      image = order.tmpPath;
      stream = order.stream;
    } else image = order.path;
  }
  if (!image && opts.resume && existsSync(join(stateDir, IMAGE_NAME))) image = join(stateDir, IMAGE_NAME);

  let machine: Machine;
  let handover: Record<string, unknown> | undefined;
  let build: KernelBuild = DEFAULT_BUILD;
  let handlerPaths: string[] = [];
  try {
    if (opts.release) build = buildForRelease(opts.release);
    if (opts.handler?.length) {
      const plugins = await loadHandlerPlugins(opts.handler);
      build = withHandlers(build, plugins);
      handlerPaths = plugins.map((p) => p.source!);
    }
    if (opts.liveupdateTest) build = { ...build, liveupdateTest: true };
    if (opts.subsystem?.length) build = { ...build, subsystems: opts.subsystem.map(parseSubsystem) };
  } catch (e) {
    return fail(isLuoError(e) ? e.detail : (e as Error).message);
  }
  try {
    if (image) {
      let h;
      const tLoad = performance.now();
      try {
        h = await loadHandover(image, stream, base);
        // the base's pages now belong to the booted memory: its own map must not keep freed ones alive
        base = undefined;
        // a streamed image is read from its temporary name: the finished file is known by its own
        if (stream?.path !== undefined) image = stream.path;
      } catch (e) {
        channel?.destroy();
        return fail(`refusing image ${stream?.path ?? image}: ${(e as Error).message}`);
      }
      // --resume finds whatever the state dir holds: only this socket's own image is booted.
      // An image named with --from-image is the user's deliberate choice (kexec names its own).
      if (!opts.fromImage && !opts.awaitImage && h.meta.socket && h.meta.socket !== resolve(socketPath)) {
        return fail(`refusing image ${image}: it was written by the daemon on ${h.meta.socket}, not ${resolve(socketPath)} (two daemons never boot each other's image)`);
      }
      const tBoot = performance.now();
      machine = new Machine({ ramSize: h.memory.size, memory: h.memory, boot: h.params, build, console: out, ...(opts.cmdline ? { cmdline: opts.cmdline } : {}) });
      handover = {
        image, ...h.meta.stats, from: h.meta.from, luoVersion: h.meta.luoVersion, bootMs: machine.kernel.bootTimeMs, loadMs: tBoot - tLoad, streamed: stream !== undefined,
        ...(precopyMs !== undefined ? { baseLoadMs: precopyMs } : {}),
      };
    } else {
      machine = new Machine({ ramSize: parseSize(opts.ram ?? '4G'), cmdline: opts.cmdline ?? DEFAULT_CMDLINE, build, console: out });
    }
  } catch (e) {
    if (e instanceof KernelPanic) return fail(e.message);
    return fail(isLuoError(e) ? e.detail : (e as Error).message);
  }

  if (!opts.takeover && (await LuoDaemon.alive(socketPath))) return fail(`a daemon already serves ${socketPath}`);
  // what every daemon of this socket is started with: its log, and the same handler plugins
  const childArgs = [
    ...(opts.log ? ['--log', opts.log] : []), ...(opts.liveupdateTest ? ['--liveupdate-test'] : []),
    ...(opts.subsystem?.length ? ['--subsystem', ...opts.subsystem] : []), ...(handlerPaths.length ? ['--handler', ...handlerPaths] : []),
  ];
  const d = new LuoDaemon({ machine, socketPath, stateDir, log: out, childArgs, ...(handover ? { handover } : {}) });
  try {
    await d.listen();
  } catch (e) {
    return fail(`cannot listen on ${socketPath}: ${isLuoError(e) ? e.detail : (e as Error).message}`);
  }
  if (opts.takeover) signalReady(d, channel);
  // the blackout as this daemon saw it: from the old one's freeze to being ready (luo status shows it)
  if (handover && typeof handover['frozenAt'] === 'number') handover['blackoutMs'] = performance.timeOrigin + performance.now() - handover['frozenAt'];
  const stop = (sig: string) => void d.shutdown(sig);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const code = await d.done;
  // After a kexec the listener is left open on purpose (closing would unlink the new daemon's
  // socket path): leave now.
  process.exit(code);
}
