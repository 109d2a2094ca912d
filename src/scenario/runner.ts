/**
 * Runs a validated scenario (schema.ts) on a fresh simulated machine, step by step, through the
 * uapi layer (a process of the running kernel, raw ioctls via the libliveupdate helpers) and the
 * live-update agent. Every step gets a pass/fail result with the reason; a failing step does not
 * stop the run, so one report shows everything that went wrong.
 */
import { createHash } from 'node:crypto';
import { type ErrnoName, errnoName, LuoError } from '../errno.ts';
import { withParam } from '../kernel/cmdline.ts';
import { DEFAULT_BUILD, type Kernel, type KernelBuild } from '../kernel/kernel.ts';
import { abiLabel, releaseLike, withHandlers, withKhoProfile } from '../kernel/build.ts';
import { pluginCall } from '../luo/plugin.ts';
import type { HandlerPlugin } from '../luo/plugin.ts';
import { PluginFile } from '../uapi/luo-files.ts';
import { Machine } from '../kernel/machine.ts';
import { KernelPanic } from '../luo/core.ts';
import { MFD_ALLOW_SEALING, SEEK_CUR, SEEK_SET } from '../handlers/memfd-file.ts';
import {
  F_ADD_SEALS, F_GET_SEALS, LIVEUPDATE_DEV, luoCreateSession, luoRetrieveSession, luoSessionFinish, luoSessionPreserveFd, luoSessionRetrieveFd, O_RDWR,
  type Process, processesOf,
} from '../uapi/index.ts';
import { LiveUpdateAgent, type UpdateReport } from '../agent/index.ts';
import { injectFault } from './faults.ts';
import { describeSpec, type DataSpec, sealNames, specChunks } from './data.ts';
import type { BuildSpec, Corruption, Scenario, Step, StepArgs } from './schema.ts';

export interface StepResult {
  readonly index: number;
  readonly line: number;
  readonly kind: StepArgs['kind'];
  /** What the step does, e.g. `preserve ram into vm-1 (token 0x100)`. */
  readonly title: string;
  readonly status: 'pass' | 'fail';
  /** Why it passed or failed. */
  readonly reason: string;
  readonly ms: number;
  readonly note?: string;
  /** The agent's report, for agent-update steps. */
  readonly report?: UpdateReport;
}

export interface ScenarioResult {
  readonly file: string;
  readonly name: string;
  readonly ok: boolean;
  readonly passed: number;
  readonly failed: number;
  readonly steps: StepResult[];
}

export interface RunOptions {
  /** Called as each step finishes. */
  readonly onStep?: (r: StepResult) => void;
  /** Kernel console lines. */
  readonly console?: (line: string) => void;
  /** The agent's structured log lines. */
  readonly agentLog?: (line: string) => void;
  /** The file handler plugins `machine.handlers` names, loaded (loadScenarioPlugins), by the name used there. */
  readonly plugins?: ReadonlyMap<string, HandlerPlugin>;
}

/** A syscall or LUO operation failed with an errno. */
/** Every chunk of every data spec, lazily (nothing is held beyond one chunk). */
function* chunksOf(data: readonly DataSpec[]): Generator<{ readonly at: number; readonly data: Uint8Array }> {
  for (const d of data) yield* specChunks(d);
}

class StepError extends Error {
  constructor(readonly errno: ErrnoName | undefined, message: string) {
    super(message);
  }
}
/** A check did not hold (never matches expect-errno). */
class CheckFailure extends Error {}

interface Handle {
  readonly fd: number;
  /** 'memfd' for any preservable file fd (memfds, plugin files), as PRESERVE_FD sees them. */
  readonly kind: 'device' | 'session' | 'memfd';
}

const hex = (t: bigint): string => `0x${t.toString(16)}`;

/** Deep copy with "{i}" replaced in every string. */
function subst<T>(v: T, i: number): T {
  if (typeof v === 'string') return v.replaceAll('{i}', String(i)) as T;
  if (Array.isArray(v)) return v.map((x) => subst(x, i)) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, subst(x, i)])) as T;
  return v;
}

/** The build a step asks for: a catalogue release (else `base`), with the `build` overrides on top. */
function buildOf(base: KernelBuild, b: BuildSpec | undefined, release?: string): KernelBuild | undefined {
  // another release keeps the scenario's handler plugins and test config: they are in every kernel
  if (release) base = releaseLike(release, base);
  if (!b) return release ? base : undefined;
  const named = b.release ? { ...base, release: b.release } : base;
  const tested = b.test ? { ...named, liveupdateTest: true } : named;
  return b.kho ? withKhoProfile(tested, b.kho) : tested;
}

/** JSON with object keys sorted (and u64s as numbers): equal values give equal text, whatever the key order. */
function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'bigint') return Number(x);
    if (x && typeof x === 'object' && !Array.isArray(x)) return Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    return x;
  });
}

function appendParams(cmdline: string, append: string): string {
  let c = cmdline;
  for (const tok of append.trim().split(/\s+/).filter(Boolean)) {
    const eq = tok.indexOf('=');
    c = eq < 0 ? `${c} ${tok}` : withParam(c, tok.slice(0, eq), tok.slice(eq + 1));
  }
  return c;
}

export function describeStep(a: StepArgs): string {
  switch (a.kind) {
    case 'open-device': return `open-device ${LIVEUPDATE_DEV} as ${a.as}`;
    case 'close': return `close ${a.fd}`;
    case 'create-session': return `create-session ${JSON.stringify(a.name)}${a.as && a.as !== a.name ? ` as ${a.as}` : ''}`;
    case 'memfd': return `memfd ${a.as}${a.size !== undefined ? ` (${a.size} bytes)` : ''}`;
    case 'write': return `write ${a.fd}`;
    case 'plugin-open': return `plugin-open ${a.handler} as ${a.as}`;
    case 'plugin-check': return `plugin-check ${a.fd}`;
    case 'subsystem-check': return `subsystem-check ${a.name}`;
    case 'flb-check': return `flb-check ${a.name}`;
    case 'preserve': return `preserve ${a.fd} into ${a.session} (token ${hex(a.token)})`;
    case 'unpreserve': return `unpreserve ${a.session}`;
    case 'inject-fault': return `inject-fault ${a.fault.errno} into ${a.fault.op.startsWith('kho-') ? 'KHO' : a.fault.flb ? `FLB ${a.fault.flb}` : a.fault.subsystem ? `subsystem ${a.fault.subsystem}` : a.fault.handler ?? 'memfd-v2'} ${a.fault.op}`;
    case 'corrupt': return `corrupt ${a.what} at the next kexec`;
    case 'kexec': return `kexec${a.release ?? a.build?.release ? ` into ${a.release ?? a.build?.release}` : ''}${a.append ? ` (+${a.append})` : ''}${a.cmdline ? ` (cmdline "${a.cmdline}")` : ''}${a.expect === 'panic' ? ', expecting a panic' : ''}`;
    case 'cold-boot': return 'cold-boot';
    case 'retrieve-session': return `retrieve-session ${JSON.stringify(a.name)}${a.as && a.as !== a.name ? ` as ${a.as}` : ''}`;
    case 'retrieve': return `retrieve token ${hex(a.token)} from ${a.session} as ${a.as}`;
    case 'verify': return `verify ${a.fd}`;
    case 'finish': return `finish ${a.session}`;
    case 'kernel-log': return `kernel-log ${a.absent ? 'lacks' : 'has'} ${a.contains !== undefined ? JSON.stringify(a.contains) : `/${a.matches}/`}`;
    case 'agent-adopt': return `agent-adopt ${a.workload} (${a.files.length} file(s))`;
    case 'agent-update': return `agent-update${a.release ?? a.build?.release ? ` into ${a.release ?? a.build?.release}` : ''}${a.append ? ` (+${a.append})` : ''}, expecting ${a.expect}`;
  }
}

class Runner {
  readonly machine: Machine;
  private kernel: Kernel;
  private proc: Process;
  private readonly handles = new Map<string, Handle>();
  /** Handles of kernels that are gone: name -> what replaced the kernel. */
  private readonly stale = new Map<string, string>();
  private agent: LiveUpdateAgent | undefined;
  private panicStep = 0;

  constructor(private readonly sc: Scenario, private readonly opts: RunOptions) {
    const base = buildOf(DEFAULT_BUILD, sc.machine.build, sc.machine.release) ?? DEFAULT_BUILD;
    const plugins = (sc.machine.handlers ?? []).map((name) => {
      const p = opts.plugins?.get(name);
      if (!p) throw new LuoError('EINVAL', `handler plugin "${name}" was not loaded (luo scenario loads machine.handlers; from the API, loadScenarioPlugins)`);
      return p;
    });
    const withPlugins = plugins.length ? withHandlers(base, plugins) : base;
    const build = sc.machine.subsystems?.length ? { ...withPlugins, subsystems: sc.machine.subsystems } : withPlugins;
    this.machine = new Machine({ ramSize: BigInt(sc.machine.ram), build, ...(sc.machine.cmdline !== undefined ? { cmdline: sc.machine.cmdline } : {}), ...(opts.console ? { console: opts.console } : {}) });
    this.kernel = this.machine.kernel;
    this.proc = processesOf(this.kernel).spawn();
  }

  /** Follows the machine to its current kernel: a new process, old handles gone. */
  private sync(why: string): void {
    if (this.machine.kernel === this.kernel && this.kernel.state === 'running') return;
    this.kernel = this.machine.kernel;
    for (const name of this.handles.keys()) this.stale.set(name, why);
    this.handles.clear();
    this.proc = processesOf(this.kernel).spawn();
  }

  private handle(name: string, kind?: Handle['kind']): Handle {
    const h = this.handles.get(name);
    if (!h) {
      const why = this.stale.get(name);
      throw new CheckFailure(why ? `handle "${name}" belonged to the kernel before ${why}` : `no handle named "${name}" (bind one with "as")`);
    }
    if (kind && h.kind !== kind) throw new CheckFailure(`handle "${name}" is a ${h.kind}, not a ${kind}`);
    return h;
  }

  private pluginList(): readonly HandlerPlugin[] {
    return this.machine.kernel.build.handlers ?? [];
  }

  /** The kernel's plugin with this compatible. */
  private plugin(compatible: string): HandlerPlugin {
    const list = this.pluginList();
    const p = list.find((x) => x.compatible === compatible);
    if (!p) throw new CheckFailure(`no handler plugin "${compatible}" in this kernel (machine.handlers: ${list.map((x) => x.compatible).join(', ') || 'none'})`);
    return p;
  }

  private bind(name: string, h: Handle): void {
    const old = this.handles.get(name);
    if (old) throw new CheckFailure(`handle "${name}" is already bound (fd ${old.fd}); close it or pick another name`);
    this.handles.set(name, h);
    this.stale.delete(name);
  }

  /** A syscall's result, or a StepError with its errno. */
  private sys(r: number, what: string): number {
    if (r < 0) throw new StepError(this.proc.errno, `${what}: ${this.proc.lastError?.message ?? this.proc.errno}`);
    return r;
  }

  /** A libliveupdate helper's result (-errno on failure). */
  private lib(r: number, what: string): number {
    if (r < 0) throw new StepError(errnoName(-r), `${what}: ${this.proc.lastError?.message ?? errnoName(-r)}`);
    return r;
  }

  private device(): number {
    const h = this.handles.get('luo');
    if (h) return h.fd;
    const fd = this.sys(this.proc.open(LIVEUPDATE_DEV, O_RDWR), `open ${LIVEUPDATE_DEV}`);
    this.bind('luo', { fd, kind: 'device' });
    return fd;
  }

  private writeData(fd: number, data: readonly DataSpec[]): void {
    for (const d of data) for (const c of specChunks(d)) this.sys(this.proc.pwrite(fd, c.data, c.at), `pwrite ${describeSpec(d)} at ${c.at}`);
  }

  private corrupt(k: Kernel, what: Corruption): void {
    const luo = k.luo;
    if (!luo?.enabled) throw new CheckFailure('live update is disabled in this kernel: nothing to corrupt');
    const mem = this.machine.memory;
    let done = false;
    k.onReboot(() => {
      if (done) return;
      done = true;
      const ser = luo.outgoingSerPa;
      const sessions = mem.readU64(ser + 16n);
      const needSession = (): void => {
        if (sessions === 0n) throw new LuoError('EINVAL', `corrupt ${what}: no session was serialized`);
      };
      switch (what) {
        case 'luo-compat':
          mem.write(ser, new TextEncoder().encode('luo-v4\0'));
          break;
        case 'session-count':
          needSession();
          mem.writeU64(sessions + 8n, 0n);
          break;
        case 'file-count':
          needSession();
          mem.writeU64(sessions + 16n + 72n, mem.readU64(sessions + 16n + 72n) + 2n);
          break;
        case 'file-compat': {
          needSession();
          const files = mem.readU64(sessions + 16n + 64n);
          if (files === 0n) throw new LuoError('EINVAL', 'corrupt file-compat: the first session has no files');
          mem.write(files + 16n, new TextEncoder().encode('unknown-v9\0'));
          break;
        }
      }
      k.print('warn', `luo-fault: corrupted ${what} in the outgoing hand-over`);
    });
  }

  private ensureAgent(): LiveUpdateAgent {
    if (!this.agent || this.agent.kernel !== this.machine.kernel || this.machine.kernel.state !== 'running') {
      const sink = this.opts.agentLog;
      this.agent = new LiveUpdateAgent(this.machine, { holdDevice: false, ...(sink ? { log: (l: string) => sink(l) } : {}) });
    }
    return this.agent;
  }

  /** Runs one iteration; returns the success text. */
  private exec(a: StepArgs): { text: string; report?: UpdateReport } {
    const p = this.proc;
    if (this.machine.panic && a.kind !== 'cold-boot') throw new CheckFailure(`the machine panicked at step ${this.panicStep}; only a cold-boot step can bring it back`);
    switch (a.kind) {
      case 'open-device': {
        const fd = this.sys(p.open(LIVEUPDATE_DEV, O_RDWR), `open ${LIVEUPDATE_DEV}`);
        this.bind(a.as, { fd, kind: 'device' });
        return { text: `fd ${fd}` };
      }
      case 'close': {
        const h = this.handle(a.fd);
        this.sys(p.close(h.fd), `close ${a.fd}`);
        this.handles.delete(a.fd);
        return { text: `fd ${h.fd} closed` };
      }
      case 'create-session': {
        const dev = this.device();
        const s = this.lib(luoCreateSession(p, dev, a.name), `LIVEUPDATE_IOCTL_CREATE_SESSION "${a.name}"`);
        this.bind(a.as ?? a.name, { fd: s, kind: 'session' });
        return { text: `session fd ${s}` };
      }
      case 'memfd': {
        const flags = a.flags | (a.seals ? MFD_ALLOW_SEALING : 0);
        const fd = this.sys(p.memfdCreate(a.name ?? a.as, flags), 'memfd_create');
        try {
          if (a.size !== undefined) this.sys(p.ftruncate(fd, a.size), `ftruncate(${a.size})`);
          this.writeData(fd, a.data);
          if (a.seals) this.sys(p.fcntl(fd, F_ADD_SEALS, a.seals), `F_ADD_SEALS [${sealNames(a.seals).join(', ')}]`);
          if (a.pos !== undefined) this.sys(p.lseek(fd, a.pos, SEEK_SET), `lseek(${a.pos})`);
        } catch (e) {
          p.close(fd);
          throw e;
        }
        this.bind(a.as, { fd, kind: 'memfd' });
        return { text: `fd ${fd}` };
      }
      case 'write': {
        this.writeData(this.handle(a.fd).fd, a.data);
        return { text: a.data.map(describeSpec).join(', ') };
      }
      case 'plugin-open': {
        const plugin = this.plugin(a.handler);
        if (!plugin.open) throw new CheckFailure(`handler plugin "${plugin.compatible}" has no open(): it cannot make files for scenarios`);
        const fd = this.sys(p.openPluginFile(() => pluginCall(`handler plugin "${plugin.compatible}" open`, () => plugin.open!(a.args))), `open a ${plugin.compatible} file`);
        this.bind(a.as, { fd, kind: 'memfd' });
        return { text: `fd ${fd}` };
      }
      case 'flb-check': {
        const luo = this.machine.kernel.luo;
        if (!luo?.enabled) throw new StepError('EOPNOTSUPP', 'live update is disabled in this kernel');
        const views = luo.flbs.views;
        const v = views.find((x) => x.name === a.name);
        if (!v) throw new CheckFailure(`no FLB "${a.name}" is registered in this kernel (registered: ${views.map((x) => x.name).join(', ') || 'none'})`);
        if (a.files !== undefined && v.outgoing.files !== a.files) throw new CheckFailure(`FLB "${a.name}" is used by ${v.outgoing.files} preserved file(s), expected ${a.files}`);
        const inc = a.incoming;
        if (inc) {
          if (!v.incoming) throw new CheckFailure(`the previous kernel handed nothing over for FLB "${a.name}"`);
          if (inc.state !== undefined && v.incoming.state !== inc.state) throw new CheckFailure(`FLB "${a.name}" incoming is ${v.incoming.state}, expected ${inc.state}`);
          if (inc.files !== undefined && v.incoming.files !== inc.files) throw new CheckFailure(`FLB "${a.name}" incoming counts ${v.incoming.files} file(s), expected ${inc.files}`);
          if (inc.data !== undefined && v.incoming.data !== inc.data) throw new CheckFailure(`FLB "${a.name}" incoming data is 0x${v.incoming.data.toString(16)}, expected 0x${inc.data.toString(16)}`);
        }
        return { text: `${v.outgoing.files} file(s) now${v.incoming ? `; incoming ${v.incoming.state}, ${v.incoming.files} file(s), data 0x${v.incoming.data.toString(16)}` : ''}` };
      }
      case 'subsystem-check': {
        const luo = this.machine.kernel.luo;
        if (!luo?.enabled) throw new StepError('EOPNOTSUPP', 'live update is disabled in this kernel');
        let got: bigint;
        try {
          got = luo.subsystems.getData(a.name);
        } catch (e) {
          if (e instanceof LuoError) throw new StepError(e.errno, e.message);
          throw e;
        }
        if (a.data !== undefined && got !== a.data) throw new CheckFailure(`subsystem "${a.name}" got 0x${got.toString(16)} from the previous kernel, expected 0x${a.data.toString(16)}`);
        return { text: `handed over 0x${got.toString(16)}` };
      }
      case 'plugin-check': {
        const h = this.handle(a.fd);
        const f = p.fds.get(h.fd)?.file;
        if (!(f instanceof PluginFile)) throw new CheckFailure(`${a.fd} (fd ${h.fd}) is not a handler plugin's file`);
        const candidates = this.pluginList().filter((x) => x.describe);
        let got: unknown;
        let described = false;
        for (const c of candidates) {
          try {
            got = c.describe!(f.inner);
            described = true;
            break;
          } catch {
            // not this plugin's file
          }
        }
        if (!described) throw new CheckFailure(`no handler plugin of this kernel describes ${a.fd} (${this.pluginList().map((x) => x.compatible).join(', ') || 'none loaded'})`);
        const want = canonicalJson(a.expect);
        const have = canonicalJson(got);
        if (have !== want) throw new CheckFailure(`${a.fd}: the plugin describes ${have}, expected ${want}`);
        return { text: have };
      }
      case 'preserve': {
        const s = this.handle(a.session, 'session');
        const f = this.handle(a.fd);
        this.lib(luoSessionPreserveFd(p, s.fd, f.fd, a.token), `LIVEUPDATE_SESSION_PRESERVE_FD token ${hex(a.token)}`);
        return { text: 'preserved' };
      }
      case 'unpreserve': {
        const s = this.handle(a.session, 'session');
        this.sys(p.close(s.fd), `close ${a.session}`);
        this.handles.delete(a.session);
        return { text: `session fd ${s.fd} closed: its files are unpreserved` };
      }
      case 'inject-fault': {
        try {
          const f = injectFault(this.kernel, a.fault);
          return { text: `armed${f.spec.skip ? ` after ${f.spec.skip} call(s)` : ''}${f.spec.times !== undefined ? ` for ${f.spec.times} call(s)` : ''}` };
        } catch (e) {
          if (e instanceof LuoError) throw new StepError(e.errno, e.message);
          throw e;
        }
      }
      case 'corrupt':
        this.corrupt(this.kernel, a.what);
        return { text: 'armed' };
      case 'kexec': {
        const cur = this.kernel;
        const cmdline = a.cmdline ?? (a.append ? appendParams(cur.cmdline.raw, a.append) : undefined);
        const build = buildOf(cur.build, a.build, a.release);
        let k: Kernel;
        try {
          k = this.machine.kexec({ ...(build ? { build } : {}), ...(cmdline !== undefined ? { cmdline } : {}) });
        } catch (e) {
          if (e instanceof KernelPanic) {
            this.sync('a panic');
            if (a.expect === 'panic') return { text: e.message };
            throw new CheckFailure(`the new kernel panicked: ${e.message}`);
          }
          if (e instanceof LuoError) throw new StepError(e.errno, `reboot(LINUX_REBOOT_CMD_KEXEC) refused: ${e.message}`);
          throw e;
        }
        this.sync('a kexec');
        if (a.expect === 'panic') throw new CheckFailure(`expected a panic, but ${k.build.release} booted`);
        const luo = k.luo;
        return { text: `booted ${k.build.release} (${abiLabel(k.build.abi)}); ${luo ? (luo.enabled ? `live update #${luo.incomingNum}` : 'live update disabled') : 'no LUO (liveupdate off)'}` };
      }
      case 'cold-boot': {
        const build = buildOf(this.kernel.build, a.build, a.release);
        const k = this.machine.coldBoot({ ...(build ? { build } : {}), ...(a.cmdline !== undefined ? { cmdline: a.cmdline } : {}) });
        this.sync('a cold boot');
        return { text: `booted ${k.build.release} from scratch` };
      }
      case 'retrieve-session': {
        const dev = this.device();
        const s = this.lib(luoRetrieveSession(p, dev, a.name), `LIVEUPDATE_IOCTL_RETRIEVE_SESSION "${a.name}"`);
        this.bind(a.as ?? a.name, { fd: s, kind: 'session' });
        return { text: `session fd ${s}` };
      }
      case 'retrieve': {
        const s = this.handle(a.session, 'session');
        const fd = this.lib(luoSessionRetrieveFd(p, s.fd, a.token), `LIVEUPDATE_SESSION_RETRIEVE_FD token ${hex(a.token)}`);
        this.bind(a.as, { fd, kind: 'memfd' });
        return { text: `fd ${fd}` };
      }
      case 'verify':
        return { text: this.verify(a) };
      case 'finish': {
        const s = this.handle(a.session, 'session');
        this.lib(luoSessionFinish(p, s.fd), 'LIVEUPDATE_SESSION_FINISH');
        return { text: 'finished' };
      }
      case 'kernel-log': {
        const re = a.matches !== undefined ? new RegExp(a.matches) : undefined;
        const hits = this.kernel.log.lines.filter((l) => (re ? re.test(l.msg) : l.msg.includes(a.contains!)));
        const what = a.contains !== undefined ? JSON.stringify(a.contains) : `/${a.matches}/`;
        if (a.absent) {
          if (hits.length) throw new CheckFailure(`the kernel log has ${what}: "${hits[0]!.msg}"`);
          return { text: `no line has ${what}` };
        }
        if (!hits.length) throw new CheckFailure(`no kernel log line has ${what} (${this.kernel.log.lines.length} lines)`);
        return { text: `"${hits[0]!.msg}"` };
      }
      case 'agent-adopt': {
        const agent = this.ensureAgent();
        const files = a.files.map((f, i) => {
          let fd: number;
          try {
            fd = agent.createMemfd(`${a.workload}-${f.label ?? i}`, {
              ...(f.size !== undefined ? { size: f.size } : {}), writes: chunksOf(f.data), seals: f.seals, ...(f.pos !== undefined ? { pos: f.pos } : {}),
            });
          } catch (e) {
            if (e instanceof Error && 'errno' in e) throw new StepError((e as { errno?: ErrnoName }).errno, e.message);
            throw e;
          }
          return { token: f.token, fd, ...(f.label !== undefined ? { label: f.label } : {}) };
        });
        const r = agent.adopt({ name: a.workload, files, ...(a.checksum === 'sha256' ? { checksum: 'sha256' as const } : {}) });
        if (!r.ok) {
          const e = r.errors[0]!;
          throw new StepError(e.errno, `${e.step}: ${e.message}`);
        }
        return { text: `session "${a.workload}" with ${files.length} file(s) preserved by the agent (pid ${agent.process.pid})` };
      }
      case 'agent-update':
        return this.agentUpdate(a);
    }
  }

  private verify(a: Extract<StepArgs, { kind: 'verify' }>): string {
    const p = this.proc;
    const h = this.handle(a.fd);
    const st = p.fstat(h.fd);
    if (st === -1) throw new StepError(p.errno, `fstat: ${p.lastError?.message ?? ''}`);
    const bad: string[] = [];
    const ok: string[] = [];
    if (a.size !== undefined) (st.size === a.size ? ok : bad).push(st.size === a.size ? `size ${st.size}` : `size is ${st.size}, expected ${a.size}`);
    if (a.pos !== undefined) {
      const pos = this.sys(p.lseek(h.fd, 0, SEEK_CUR), 'lseek');
      (pos === a.pos ? ok : bad).push(pos === a.pos ? `pos ${pos}` : `position is ${pos}, expected ${a.pos}`);
    }
    if (a.seals !== undefined) {
      const seals = this.sys(p.fcntl(h.fd, F_GET_SEALS), 'F_GET_SEALS');
      const names = (s: number) => `[${sealNames(s).join(', ')}]`;
      (seals === a.seals ? ok : bad).push(seals === a.seals ? `seals ${names(seals)}` : `seals are ${names(seals)}, expected ${names(a.seals)}`);
    }
    for (const d of a.data) {
      // chunk by chunk: a 3 GiB pattern is compared without ever being held whole
      let problem: string | undefined;
      for (const c of specChunks(d)) {
        const got = new Uint8Array(c.data.length);
        const n = this.sys(p.pread(h.fd, got, c.at), `pread at ${c.at}`);
        let diff = -1;
        for (let i = 0; i < c.data.length; i++) if (i >= n || got[i] !== c.data[i]) { diff = i; break; }
        if (diff < 0) continue;
        problem = diff >= n ? `${describeSpec(d)}: the file ends at ${c.at + n}` : `${describeSpec(d)}: byte ${c.at + diff} is 0x${got[diff]!.toString(16)}, expected 0x${c.data[diff]!.toString(16)}`;
        break;
      }
      if (problem) bad.push(problem);
      else ok.push(describeSpec(d));
    }
    if (a.sha256 !== undefined) {
      const hash = createHash('sha256');
      const CH = 1 << 20;
      for (let off = 0; off < st.size; off += CH) {
        const buf = new Uint8Array(Math.min(CH, st.size - off));
        this.sys(p.pread(h.fd, buf, off), `pread at ${off}`);
        hash.update(buf);
      }
      const got = hash.digest('hex');
      (got === a.sha256 ? ok : bad).push(got === a.sha256 ? 'sha256' : `sha256 is ${got}, expected ${a.sha256}`);
    }
    if (bad.length) throw new CheckFailure(bad.join('; '));
    return ok.length ? ok.join(', ') : 'the fd is open';
  }

  private agentUpdate(a: Extract<StepArgs, { kind: 'agent-update' }>): { text: string; report: UpdateReport } {
    const agent = this.ensureAgent();
    const cur = this.machine.kernel;
    if (a.corrupt) this.corrupt(cur, a.corrupt);
    agent.hooks = {
      afterBoot: (k) => {
        for (const f of a.inject) injectFault(k, f);
      },
    };
    const cmdline = a.cmdline ?? (a.append ? appendParams(cur.cmdline.raw, a.append) : undefined);
    const build = buildOf(cur.build, a.build, a.release);
    const r = agent.update({ ...(build ? { build } : {}), ...(cmdline !== undefined ? { cmdline } : {}), ...(a.fallback ? { fallbackBy: a.fallback } : {}) });
    agent.hooks = {};
    this.sync(r.to.coldBooted ? 'the agent\'s fall-back cold boot' : r.to.freshKexec ? 'the agent\'s fall-back kexec' : 'the agent\'s kexec');
    const layer = r.diagnosis ? `; refused by ${r.diagnosis.layer}: ${r.diagnosis.reason}${r.diagnosis.kmsg ? ` [kmsg: ${r.diagnosis.kmsg}]` : ''}` : '';
    const why = r.reason ? `${r.reason.workload ? `${r.reason.workload}: ` : ''}${r.reason.step}${r.reason.errno ? ` ${r.reason.errno}` : ''} (${r.reason.message})${layer}` : '';
    const summary = r.outcome === 'updated'
      ? `updated: ${r.workloads.length} workload(s) restored and verified, blackout ${r.blackoutMs.toFixed(1)} ms, exit ${r.exitStatus}`
      : r.outcome === 'fell-back'
        ? `fell back to ${r.to.freshKexec ? 'a kexec without hand-over' : 'a cold boot'} (exit ${r.exitStatus}) because ${why}; restart: ${r.restartRequired.join(', ') || '(none)'}`
        : `refused (exit ${r.exitStatus}): ${why}`;
    const bad: string[] = [];
    if (r.outcome !== a.expect) bad.push(`expected ${a.expect}, but the agent ${summary}`);
    if (a.restart) {
      const want = [...a.restart].sort().join(', ');
      const got = [...r.restartRequired].sort().join(', ');
      if (want !== got) bad.push(`workloads to restart: [${got}], expected [${want}]`);
    }
    if (a.reason?.step !== undefined && r.reason?.step !== a.reason.step) bad.push(`reason step ${r.reason?.step ?? '(none)'}, expected ${a.reason.step}`);
    if (a.reason?.errno !== undefined && r.reason?.errno !== a.reason.errno) bad.push(`reason errno ${r.reason?.errno ?? '(none)'}, expected ${a.reason.errno}`);
    if (a.reason?.layer !== undefined && r.diagnosis?.layer !== a.reason.layer) bad.push(`refusing layer ${r.diagnosis?.layer ?? '(none)'}, expected ${a.reason.layer}`);
    if (r.outcome === 'updated' && r.errors.length) bad.push(`errors: ${r.errors.map((e) => e.message).join('; ')}`);
    if (bad.length) {
      const err = new CheckFailure(bad.join('; '));
      (err as CheckFailure & { report?: UpdateReport }).report = r;
      throw err;
    }
    return { text: summary, report: r };
  }

  run(): ScenarioResult {
    const steps: StepResult[] = [];
    for (const s of this.sc.steps) {
      const r = this.runStep(s);
      steps.push(r);
      this.opts.onStep?.(r);
    }
    const failed = steps.filter((r) => r.status === 'fail').length;
    return { file: this.sc.file, name: this.sc.name, ok: failed === 0, passed: steps.length - failed, failed, steps };
  }

  private runStep(s: Step): StepResult {
    const t0 = performance.now();
    const title = describeStep(s.args);
    const base = { index: s.index, line: s.line, kind: s.args.kind, title, ...(s.note !== undefined ? { note: s.note } : {}) };
    const texts: string[] = [];
    let report: UpdateReport | undefined;
    for (let i = 0; i < s.repeat; i++) {
      const args = s.repeat > 1 ? subst(s.args, i) : s.args;
      const it = s.repeat > 1 ? `iteration ${i + 1} of ${s.repeat} ({i}=${i}): ` : '';
      const fail = (reason: string): StepResult => ({ ...base, status: 'fail', reason: `${it}${reason}`, ms: performance.now() - t0, ...(report ? { report } : {}) });
      try {
        const r = this.exec(args);
        if (r.report) report = r.report;
        if (s.expectErrno) return fail(`expected ${s.expectErrno}, but it succeeded (${r.text})`);
        texts.push(r.text);
      } catch (e) {
        if (e instanceof CheckFailure) {
          const rep = (e as CheckFailure & { report?: UpdateReport }).report;
          if (rep) report = rep;
          return fail(e.message);
        }
        if (e instanceof StepError) {
          if (s.expectErrno === undefined) return fail(e.message);
          if (e.errno !== s.expectErrno) return fail(`expected ${s.expectErrno}, got ${e.errno ?? 'an error'}: ${e.message}`);
          texts.push(`failed with ${e.errno} as expected (${e.message})`);
        } else if (e instanceof KernelPanic) {
          this.panicStep = s.index;
          return fail(e.message);
        } else throw e;
      } finally {
        if (this.machine.panic && !this.panicStep) this.panicStep = s.index;
        if (!this.machine.panic) this.panicStep = 0;
      }
    }
    const reason = s.repeat > 1 ? `${s.repeat} iterations passed; last: ${texts[texts.length - 1]}` : (texts[0] ?? '');
    return { ...base, status: 'pass', reason, ms: performance.now() - t0, ...(report ? { report } : {}) };
  }
}

/** Runs a scenario on a fresh machine; every step is reported. */
export function runScenario(sc: Scenario, opts: RunOptions = {}): ScenarioResult {
  return new Runner(sc, opts).run();
}
