/**
 * A live-update agent, the userspace program the kernel's LUO design expects (Documentation/
 * core-api/liveupdate.rst: "a userspace agent ... owns /dev/liveupdate"). It runs as a process of
 * the simulated machine's kernel and talks to LUO only through syscalls and raw ioctls (the
 * libliveupdate helpers), like the selftests:
 *
 * - `adopt(workload)`: one session per workload (named after it), every fd of the workload
 *   preserved under its token. The agent keeps the session fds open (closing one would unpreserve
 *   it), as daemonize_and_wait does.
 * - `update({ build?, cmdline? })`: snapshots every file (size, position, seals, optional
 *   checksum) into a manifest memfd preserved in the agent's own session ("luo-agent"), kexecs,
 *   and in the new kernel — as a fresh process, knowing only what came through LUO — opens the
 *   device, reads the manifest back, retrieves every workload's session and fds, verifies them,
 *   FINISHes, and adopts the restored workloads again for the next update.
 *
 * Policy when the new kernel has no usable state — /dev/liveupdate missing (ENOENT: LUO off or
 * disabled by `luo.restore_fail=disable`), EIO on open (a hand-over the kernel could not
 * deserialize), a kernel panic during the kexec (the `panic` policy), a workload's session or its
 * manifest missing, a retrieve failing, a file that does not verify, a FINISH failing: the agent
 * closes and FINISHes everything it did retrieve (no workload stays half-restored in LUO), logs
 * why, cold-boots the machine and reports `fell-back` with the workloads that must be restarted
 * from scratch. A kexec the old kernel refuses (a file's freeze failed: the reboot syscall returns
 * the errno and nothing changes) is reported as `refused`: the workloads keep running, still
 * preserved, and the update may be retried.
 *
 * Exit statuses for a CLI wrapper (`exitStatus` in the report):
 *   0  updated   — every workload restored, verified and preserved again
 *   3  fell back — the machine was cold-booted; `restartRequired` lists the workloads to restart
 *   4  refused   — the running kernel refused the kexec (or the agent could not prepare it);
 *                  nothing changed, the update may be retried
 *   1  (reserved for wrappers: the agent itself could not run, e.g. a bad command line)
 */
import { type Diagnosis, diagnose } from './diagnose.ts';
import { createHash } from 'node:crypto';
import { type ErrnoName, errnoName, LuoError } from '../errno.ts';
import type { Kernel, KernelBuild } from '../kernel/kernel.ts';
import type { Machine } from '../kernel/machine.ts';
import { KernelPanic } from '../luo/core.ts';
import { MFD_ALLOW_SEALING, SEEK_CUR, SEEK_SET } from '../handlers/memfd-file.ts';
import {
  F_ADD_SEALS, F_GET_SEALS, LIVEUPDATE_DEV, luoCreateSession, luoRetrieveSession, luoSessionFinish, luoSessionPreserveFd, luoSessionRetrieveFd, O_NONBLOCK, O_RDONLY, O_RDWR,
  type Process, processesOf,
} from '../uapi/index.ts';
import { AgentLog, type AgentLogSink } from './log.ts';

export const EXIT_UPDATED = 0;
export const EXIT_ERROR = 1;
export const EXIT_FELL_BACK = 3;
export const EXIT_REFUSED = 4;

/** The agent's own session and the token of its manifest memfd in it. */
export const DEFAULT_STATE_SESSION = 'luo-agent';
export const MANIFEST_TOKEN = 0n;
const MANIFEST_VERSION = 1;

/** What a checksum callback may read: one preserved file, through the agent's fd. */
export interface FileView {
  readonly workload: string;
  readonly token: bigint;
  readonly label: string | undefined;
  readonly size: number;
  pread(off: number, len: number): Uint8Array;
}

/** 'sha256' of every byte, or a function of the file (compared before and after the update). */
export type Checksum = 'sha256' | ((f: FileView) => string);

export interface WorkloadFileSpec {
  readonly token: bigint | number;
  /** An fd of the agent's process (`agent.process`), e.g. from `agent.createMemfd`. */
  readonly fd: number;
  readonly label?: string;
}

export interface WorkloadSpec {
  /** Also the session name (1..63 bytes). */
  readonly name: string;
  readonly files: readonly WorkloadFileSpec[];
  readonly checksum?: Checksum;
}

export interface WorkloadFile {
  readonly token: bigint;
  /** The file's fd in the agent's current process (renumbered after each update). */
  fd: number;
  readonly label: string | undefined;
}

export interface Workload {
  readonly name: string;
  /** The outgoing session's fd (-1 while not preserved). */
  sessionFd: number;
  readonly files: WorkloadFile[];
  readonly checksum: Checksum | undefined;
}

export type AgentStep =
  | 'open-device' | 'create-session' | 'preserve' | 'prepare' | 'manifest' | 'kexec' | 'retrieve-session' | 'retrieve-fd' | 'verify' | 'finish'
  | 'cleanup' | 'readopt' | 'cold-boot' | 'fresh-kexec';

export interface AgentError {
  readonly workload?: string;
  readonly step: AgentStep;
  readonly errno?: ErrnoName;
  /** The file's token (hex) when the error concerns one file. */
  readonly token?: string;
  readonly message: string;
}

export interface AdoptResult {
  readonly ok: boolean;
  readonly workload: string;
  readonly errors: AgentError[];
}

/** A file as the manifest records it just before the kexec. */
export interface FileSnapshot {
  readonly token: string;
  readonly label?: string;
  readonly size: number;
  readonly pos: number;
  readonly seals: number;
  readonly checksum?: string;
}

export interface FileResult {
  readonly token: string;
  readonly label?: string;
  readonly expected: FileSnapshot;
  /** What the new kernel handed back (absent when it was never retrieved). */
  got?: { size: number; pos: number; seals: number; checksum?: string };
  /** The restored file's fd in the agent's process (only when the update succeeded). */
  fd?: number;
  verified: boolean;
}

export type WorkloadStatus = 'restored' | 'restart-required' | 'running';

export interface WorkloadResult {
  readonly name: string;
  status: WorkloadStatus;
  /** Preserved again for the next update (restored workloads only). */
  readopted: boolean;
  readonly files: FileResult[];
  readonly errors: AgentError[];
}

export interface Phase {
  readonly name: string;
  readonly ms: number;
}

export type UpdateOutcome = 'updated' | 'fell-back' | 'refused';

export interface UpdateReport {
  readonly outcome: UpdateOutcome;
  readonly exitStatus: number;
  /** The error that decided a fall-back or refusal. */
  readonly reason?: AgentError;
  /** The agent's update counter (stored in its manifest, so it survives the kexec). */
  readonly generation: number;
  readonly from: { readonly release: string; readonly cmdline: string };
  readonly to: {
    readonly release: string; readonly cmdline: string; readonly coldBooted: boolean;
    /** A fall-back by a kexec without hand-over (UpdateOptions.fallbackBy). */
    readonly freshKexec?: boolean;
  };
  readonly phases: Phase[];
  /** From the start of the kexec until the workloads were handed back (or the cold boot ended). */
  readonly blackoutMs: number;
  readonly workloads: WorkloadResult[];
  /** Workloads whose state is lost: restart them from scratch. */
  readonly restartRequired: string[];
  readonly errors: AgentError[];
  /** Which layer refused and why, from the errnos and the new kernel's log (absent when all went well). */
  readonly diagnosis?: Diagnosis;
}

/** How a failed live update falls back: a power cycle, or a kexec that hands nothing over. */
export type FallbackBy = 'cold-boot' | 'fresh-kexec';

export interface UpdateOptions {
  readonly build?: KernelBuild;
  readonly cmdline?: string;
  /**
   * The fall-back (default cold-boot). `fresh-kexec` boots the target kernel by a kexec without a
   * hand-over: no firmware, faster, and every preserved resource is reset all the same; after a
   * panic only a cold boot is possible.
   */
  readonly fallbackBy?: FallbackBy;
}

export interface AgentOptions {
  /** Receives every structured log line (JSON). */
  readonly log?: AgentLogSink;
  /** The agent's own session name (default "luo-agent"). */
  readonly stateSession?: string;
  /** Keep /dev/liveupdate open between operations (default true: the agent owns the device). */
  readonly holdDevice?: boolean;
  /** What a fall-back cold boot boots (default: the kernel the update asked for). */
  readonly fallback?: UpdateOptions;
  /** Test and embedding hooks (see AgentHooks). */
  readonly hooks?: AgentHooks;
  readonly now?: () => Date;
}

/** Things "the machine" does around an update, not the agent: for tests and embedders. */
export interface AgentHooks {
  /** Right after a new kernel booted by the update's kexec (before the agent starts in it). */
  afterBoot?: (k: Kernel) => void;
  /** Just before the fall-back cold boot, with the kernel about to be discarded (undefined after a panic). */
  beforeColdBoot?: (k: Kernel | undefined) => void;
}

/** Thrown by agent helpers that return a value (createMemfd). */
export class AgentFailure extends Error {
  constructor(readonly step: AgentStep, readonly errno: ErrnoName | undefined, message: string) {
    super(errno ? `${errno}: ${message}` : message);
    this.name = 'AgentFailure';
  }
}

export interface MemfdOptions {
  readonly size?: number;
  /** memfd_create flags; MFD_ALLOW_SEALING is added when `seals` is given. */
  readonly flags?: number;
  /** Written in order (an iterable: large contents can be produced chunk by chunk). */
  readonly writes?: Iterable<{ readonly at: number; readonly data: Uint8Array }>;
  readonly seals?: number;
  /** The file position left for the workload (lseek SEEK_SET). */
  readonly pos?: number;
}

interface Manifest {
  readonly version: number;
  readonly generation: number;
  readonly workloads: ReadonlyArray<{ readonly name: string; readonly files: FileSnapshot[] }>;
}

const hex = (t: bigint): string => `0x${t.toString(16)}`;
const CHUNK = 1 << 20;

export class LiveUpdateAgent {
  /** The new kernel's log as read before a fall-back's cold boot. */
  private kmsg: string[] | undefined;
  readonly log: AgentLog;
  private proc: Process;
  private kernelRef: Kernel;
  private devFd = -1;
  private stateFd = -1;
  private readonly wl = new Map<string, Workload>();
  private gen = 0;
  private readonly stateName: string;
  private readonly hold: boolean;
  /** Mutable: set hooks at any time before an update. */
  hooks: AgentHooks;

  constructor(readonly machine: Machine, private readonly opts: AgentOptions = {}) {
    this.log = new AgentLog(opts.log, opts.now);
    this.stateName = opts.stateSession ?? DEFAULT_STATE_SESSION;
    this.hold = opts.holdDevice ?? true;
    this.hooks = { ...opts.hooks };
    this.kernelRef = machine.kernel;
    this.proc = processesOf(machine.kernel).spawn();
    this.log.info('agent.start', { pid: this.proc.pid, release: machine.kernel.build.release });
  }

  /** The agent's process on the running kernel (its fds are the workloads' fds). */
  get process(): Process {
    return this.proc;
  }

  get kernel(): Kernel {
    return this.kernelRef;
  }

  /** Updates completed by this agent lineage (from the manifest). */
  get generation(): number {
    return this.gen;
  }

  get workloads(): ReadonlyMap<string, Workload> {
    return this.wl;
  }

  workload(name: string): Workload | undefined {
    return this.wl.get(name);
  }

  // ------------------------------------------------------------------ helpers

  private errOf(r?: number): { errno?: ErrnoName; message: string } {
    const e = r !== undefined && r < 0 ? errnoName(-r) : this.proc.errno;
    const msg = this.proc.lastError?.message ?? (e ? `${e}` : 'failed');
    return { ...(e ? { errno: e } : {}), message: msg };
  }

  private assertCurrent(): void {
    if (this.machine.kernel !== this.kernelRef || this.kernelRef.state !== 'running') {
      throw new Error('the agent\'s kernel is no longer running (the machine was rebooted behind its back)');
    }
  }

  /** The device fd, opening it when needed: the fd or -errno. */
  private device(): number {
    if (this.devFd >= 0) return this.devFd;
    const fd = this.proc.open(LIVEUPDATE_DEV, O_RDWR);
    if (fd < 0) return -this.proc.errnoNumber;
    this.devFd = fd;
    return fd;
  }

  private putDevice(force = false): void {
    if (this.devFd >= 0 && (force || !this.hold)) {
      this.proc.close(this.devFd);
      this.devFd = -1;
    }
  }

  /**
   * A memfd in the agent's process for a workload: created, sized, written, sealed and positioned.
   * Throws AgentFailure with the failing syscall's errno.
   */
  createMemfd(name: string, o: MemfdOptions = {}): number {
    this.assertCurrent();
    const p = this.proc;
    const flags = (o.flags ?? 0) | (o.seals ? MFD_ALLOW_SEALING : 0);
    const fd = p.memfdCreate(name, flags);
    const fail = (what: string): never => {
      const e = this.errOf();
      if (fd >= 0) p.close(fd);
      throw new AgentFailure('prepare', e.errno, `memfd "${name}": ${what}: ${e.message}`);
    };
    if (fd < 0) fail('memfd_create');
    if (o.size !== undefined && p.ftruncate(fd, o.size) < 0) fail(`ftruncate(${o.size})`);
    for (const w of o.writes ?? []) if (p.pwrite(fd, w.data, w.at) < 0) fail(`pwrite at ${w.at}`);
    if (o.seals && p.fcntl(fd, F_ADD_SEALS, o.seals) < 0) fail(`F_ADD_SEALS 0x${o.seals.toString(16)}`);
    if (o.pos !== undefined && p.lseek(fd, o.pos, SEEK_SET) < 0) fail(`lseek(${o.pos})`);
    return fd;
  }

  private preserveAll(name: string, files: readonly WorkloadFile[], step: 'preserve' | 'readopt'): { sessionFd: number; errors: AgentError[] } {
    const errors: AgentError[] = [];
    const dev = this.device();
    if (dev < 0) {
      errors.push({ workload: name, step: step === 'readopt' ? 'readopt' : 'open-device', ...this.errOf(dev) });
      return { sessionFd: -1, errors };
    }
    const s = luoCreateSession(this.proc, dev, name);
    if (s < 0) {
      errors.push({ workload: name, step: step === 'readopt' ? 'readopt' : 'create-session', ...this.errOf(s) });
      return { sessionFd: -1, errors };
    }
    for (const f of files) {
      const r = luoSessionPreserveFd(this.proc, s, f.fd, f.token);
      if (r < 0) {
        errors.push({ workload: name, step, token: hex(f.token), ...this.errOf(r) });
        this.proc.close(s); // unpreserves what was preserved so far
        return { sessionFd: -1, errors };
      }
    }
    return { sessionFd: s, errors };
  }

  /** Takes a workload under the agent's care: its session is created and every fd preserved. */
  adopt(spec: WorkloadSpec): AdoptResult {
    this.assertCurrent();
    const errors: AgentError[] = [];
    const fail = (e: AgentError): AdoptResult => {
      errors.push(e);
      this.log.error('workload.adopt-failed', { ...e });
      return { ok: false, workload: spec.name, errors };
    };
    if (spec.name === this.stateName) return fail({ workload: spec.name, step: 'create-session', errno: 'EINVAL', message: `"${spec.name}" is the agent's own session name` });
    if (this.wl.has(spec.name)) return fail({ workload: spec.name, step: 'create-session', errno: 'EEXIST', message: `workload "${spec.name}" is already adopted` });
    const files = spec.files.map((f) => ({ token: BigInt.asUintN(64, BigInt(f.token)), fd: f.fd, label: f.label }));
    const r = this.preserveAll(spec.name, files, 'preserve');
    this.putDevice();
    if (r.errors.length) {
      for (const e of r.errors) fail(e);
      return { ok: false, workload: spec.name, errors };
    }
    this.wl.set(spec.name, { name: spec.name, sessionFd: r.sessionFd, files, checksum: spec.checksum });
    this.log.info('workload.adopted', { workload: spec.name, session_fd: r.sessionFd, files: files.map((f) => ({ token: f.token, fd: f.fd, label: f.label })) });
    return { ok: true, workload: spec.name, errors };
  }

  /** Stops caring for a workload: its session is closed (unpreserving its files) and its fds too. */
  drop(name: string): boolean {
    this.assertCurrent();
    const w = this.wl.get(name);
    if (!w) return false;
    if (w.sessionFd >= 0) this.proc.close(w.sessionFd);
    for (const f of w.files) this.proc.close(f.fd);
    this.wl.delete(name);
    this.log.info('workload.dropped', { workload: name });
    return true;
  }

  private view(workload: string, f: WorkloadFile, size: number): FileView {
    const p = this.proc;
    return {
      workload,
      token: f.token,
      label: f.label,
      size,
      pread: (off, len) => {
        const buf = new Uint8Array(len);
        const n = p.pread(f.fd, buf, off);
        if (n < 0) throw new AgentFailure('verify', p.errno, `pread of ${workload} token ${hex(f.token)}: ${p.lastError?.message ?? ''}`);
        return buf.subarray(0, n);
      },
    };
  }

  private checksumOf(w: { name: string; checksum: Checksum | undefined }, f: WorkloadFile, size: number): string | undefined {
    if (!w.checksum) return undefined;
    const v = this.view(w.name, f, size);
    if (w.checksum !== 'sha256') return w.checksum(v);
    const h = createHash('sha256');
    for (let off = 0; off < size; off += CHUNK) h.update(v.pread(off, Math.min(CHUNK, size - off)));
    return `sha256:${h.digest('hex')}`;
  }

  /** size (fstat), position (lseek SEEK_CUR), seals (F_GET_SEALS) and checksum of one file. */
  private snapshot(w: Workload, f: WorkloadFile): FileSnapshot {
    const p = this.proc;
    const st = p.fstat(f.fd);
    if (st === -1) throw new AgentFailure('prepare', p.errno, `fstat of ${w.name} token ${hex(f.token)}: ${p.lastError?.message ?? ''}`);
    const pos = p.lseek(f.fd, 0, SEEK_CUR);
    if (pos < 0) throw new AgentFailure('prepare', p.errno, `lseek of ${w.name} token ${hex(f.token)}: ${p.lastError?.message ?? ''}`);
    const seals = p.fcntl(f.fd, F_GET_SEALS);
    const checksum = this.checksumOf(w, f, st.size);
    return { token: hex(f.token), ...(f.label !== undefined ? { label: f.label } : {}), size: st.size, pos, seals: seals < 0 ? -1 : seals, ...(checksum !== undefined ? { checksum } : {}) };
  }

  /** Writes the manifest into a fresh memfd preserved in the agent's own session (replacing the last one). */
  private writeManifest(m: Manifest): void {
    const p = this.proc;
    if (this.stateFd >= 0) {
      p.close(this.stateFd);
      this.stateFd = -1;
    }
    const dev = this.device();
    if (dev < 0) throw new AgentFailure('manifest', this.errOf(dev).errno, `open ${LIVEUPDATE_DEV}: ${this.errOf(dev).message}`);
    const bytes = new TextEncoder().encode(JSON.stringify(m));
    const fd = this.createMemfd('luo-agent-manifest', { size: bytes.length, writes: [{ at: 0, data: bytes }] });
    try {
      const s = luoCreateSession(p, dev, this.stateName);
      if (s < 0) throw new AgentFailure('manifest', this.errOf(s).errno, `create session "${this.stateName}": ${this.errOf(s).message}`);
      const r = luoSessionPreserveFd(p, s, fd, MANIFEST_TOKEN);
      if (r < 0) {
        const e = this.errOf(r);
        p.close(s);
        throw new AgentFailure('manifest', e.errno, `preserve the manifest: ${e.message}`);
      }
      this.stateFd = s;
    } finally {
      p.close(fd); // LUO holds the file now
    }
  }

  // ------------------------------------------------------------------ update

  /**
   * One live update: prepare, kexec, and in the new kernel restore, verify, finish and re-adopt
   * every workload — or fall back to a cold boot (see the module comment). Never throws for
   * kernel-side failures; they are in the report.
   */
  update(uo: UpdateOptions = {}): UpdateReport {
    this.assertCurrent();
    const oldKernel = this.kernelRef;
    const from = { release: oldKernel.build.release, cmdline: oldKernel.cmdline.raw };
    const target = { build: uo.build ?? oldKernel.build, cmdline: uo.cmdline ?? oldKernel.cmdline.raw, fallbackBy: uo.fallbackBy ?? 'cold-boot' };
    const phases: Phase[] = [];
    const errors: AgentError[] = [];
    const results = new Map<string, WorkloadResult>();
    let clock = performance.now();
    const phase = (name: string): void => {
      const now = performance.now();
      phases.push({ name, ms: now - clock });
      clock = now;
    };
    const record = (e: AgentError): void => {
      errors.push(e);
      if (e.workload) results.get(e.workload)?.errors.push(e);
      this.log.error(`${e.step}.failed`, { ...e });
    };
    this.log.info('update.start', { generation: this.gen + 1, from: from.release, to: target.build.release, cmdline: target.cmdline, workloads: [...this.wl.keys()] });

    // ---- prepare: snapshot every file, write the manifest (old kernel)
    const snaps: Array<{ name: string; files: FileSnapshot[] }> = [];
    try {
      for (const w of this.wl.values()) {
        if (w.sessionFd < 0) throw new AgentFailure('prepare', 'ENOENT', `workload "${w.name}" is not preserved (adopt failed earlier)`);
        const files = w.files.map((f) => this.snapshot(w, f));
        snaps.push({ name: w.name, files });
        results.set(w.name, { name: w.name, status: 'running', readopted: false, files: files.map((s) => ({ token: s.token, ...(s.label !== undefined ? { label: s.label } : {}), expected: s, verified: false })), errors: [] });
      }
      this.writeManifest({ version: MANIFEST_VERSION, generation: this.gen + 1, workloads: snaps });
    } catch (e) {
      if (!(e instanceof AgentFailure)) throw e;
      phase('prepare');
      record({ step: e.step, ...(e.errno ? { errno: e.errno } : {}), message: e.message });
      this.putDevice();
      return this.finishReport('refused', errors, phases, 0, from, { release: from.release, cmdline: from.cmdline, coldBooted: false }, results);
    }
    this.putDevice();
    phase('prepare');
    const blackoutStart = performance.now();

    // ---- kexec (the agent's process keeps every session fd open across it)
    let k2: Kernel | undefined;
    this.log.info('kexec.start', { release: target.build.release, cmdline: target.cmdline });
    try {
      k2 = this.machine.kexec({ build: target.build, cmdline: target.cmdline });
    } catch (e) {
      if (e instanceof LuoError) {
        phase('kexec');
        record({ step: 'kexec', errno: e.errno, message: `reboot(LINUX_REBOOT_CMD_KEXEC) refused: ${e.message}` });
        this.log.warn('kexec.refused', { errno: e.errno, note: 'the old kernel keeps running; workloads stay preserved' });
        return this.finishReport('refused', errors, phases, 0, from, { release: from.release, cmdline: from.cmdline, coldBooted: false }, results);
      }
      if (!(e instanceof KernelPanic)) throw e;
      phase('kexec');
      record({ step: 'kexec', message: e.message });
      return this.fallBack(target, errors, phases, results, blackoutStart, from, clock, undefined);
    }
    const st = k2.kexecStats;
    if (st) {
      phases.push({ name: 'kexec.serialize', ms: st.serializeMs }, { name: 'kexec.handover', ms: st.handoverMs }, { name: 'kexec.boot', ms: st.bootMs });
      clock = performance.now();
    } else phase('kexec');
    this.hooks.afterBoot?.(k2);

    // ---- the agent starts again in the new kernel: a new process, nothing but LUO to go on
    this.kernelRef = k2;
    this.proc = processesOf(k2).spawn();
    this.devFd = -1;
    this.stateFd = -1;
    for (const w of this.wl.values()) {
      w.sessionFd = -1;
      for (const f of w.files) f.fd = -1;
    }
    this.log.info('agent.start', { pid: this.proc.pid, release: k2.build.release, after: 'kexec' });
    clock = performance.now();
    const p = this.proc;
    const dev = this.device();
    phase('open');
    if (dev < 0) {
      const e = this.errOf(dev);
      record({ step: 'open-device', ...e, message: `open ${LIVEUPDATE_DEV}: ${e.message}` });
      return this.fallBack(target, errors, phases, results, blackoutStart, from, clock, undefined);
    }

    // ---- retrieve: the manifest, then every workload it lists
    const retrieved: Array<{ name: string; sessionFd: number; files: Array<{ snap: FileSnapshot; fd: number }> }> = [];
    const state = { sessionFd: -1, memfd: -1 };
    let manifest: Manifest | undefined;
    try {
      manifest = this.readManifest(dev, state);
    } catch (e) {
      if (!(e instanceof AgentFailure)) throw e;
      record({ step: 'manifest', ...(e.errno ? { errno: e.errno } : {}), message: e.message });
    }
    if (manifest) {
      this.gen = manifest.generation;
      for (const mw of manifest.workloads) {
        const s = luoRetrieveSession(p, dev, mw.name);
        if (s < 0) {
          record({ workload: mw.name, step: 'retrieve-session', ...this.errOf(s) });
          continue;
        }
        const entry = { name: mw.name, sessionFd: s, files: [] as Array<{ snap: FileSnapshot; fd: number }> };
        retrieved.push(entry);
        for (const snap of mw.files) {
          const fd = luoSessionRetrieveFd(p, s, BigInt(snap.token));
          if (fd < 0) record({ workload: mw.name, step: 'retrieve-fd', token: snap.token, ...this.errOf(fd) });
          else entry.files.push({ snap, fd });
        }
      }
      // Workloads the agent cares for that the manifest does not list (should not happen).
      for (const name of this.wl.keys()) {
        if (!manifest.workloads.some((w) => w.name === name)) record({ workload: name, step: 'manifest', errno: 'ENOENT', message: `workload "${name}" is missing from the manifest` });
      }
    }
    phase('retrieve');

    // ---- verify what can be verified
    for (const r of retrieved) {
      const w = this.wl.get(r.name);
      const res = results.get(r.name);
      for (const { snap, fd } of r.files) {
        const fr = res?.files.find((f) => f.token === snap.token);
        try {
          const got = this.snapshot({ name: r.name, sessionFd: -1, files: [], checksum: w?.checksum }, { token: BigInt(snap.token), fd, label: snap.label });
          if (fr) fr.got = { size: got.size, pos: got.pos, seals: got.seals, ...(got.checksum !== undefined ? { checksum: got.checksum } : {}) };
          const bad: string[] = [];
          if (got.size !== snap.size) bad.push(`size ${got.size}, expected ${snap.size}`);
          if (got.pos !== snap.pos) bad.push(`position ${got.pos}, expected ${snap.pos}`);
          if (got.seals !== snap.seals) bad.push(`seals 0x${got.seals.toString(16)}, expected 0x${snap.seals.toString(16)}`);
          if (snap.checksum !== undefined && got.checksum !== snap.checksum) bad.push(`checksum ${got.checksum ?? '(none)'}, expected ${snap.checksum}`);
          if (bad.length) record({ workload: r.name, step: 'verify', token: snap.token, message: `${r.name} token ${snap.token}: ${bad.join('; ')}` });
          else if (fr) fr.verified = true;
        } catch (e) {
          if (!(e instanceof AgentFailure)) throw e;
          record({ workload: r.name, step: 'verify', token: snap.token, ...(e.errno ? { errno: e.errno } : {}), message: e.message });
        }
      }
    }
    phase('verify');
    if (errors.length) return this.fallBack(target, errors, phases, results, blackoutStart, from, clock, { retrieved, state });

    // ---- finish every session (the agent's own last), close the session fds
    for (const r of retrieved) {
      const f = luoSessionFinish(p, r.sessionFd);
      if (f < 0) {
        record({ workload: r.name, step: 'finish', ...this.errOf(f) });
        continue;
      }
      p.close(r.sessionFd);
      r.sessionFd = -1;
    }
    if (!errors.length) {
      if (luoSessionFinish(p, state.sessionFd) < 0) record({ step: 'finish', ...this.errOf(), message: `finish "${this.stateName}": ${this.errOf().message}` });
      else {
        p.close(state.sessionFd);
        state.sessionFd = -1;
        p.close(state.memfd);
        state.memfd = -1;
      }
    }
    phase('finish');
    if (errors.length) return this.fallBack(target, errors, phases, results, blackoutStart, from, clock, { retrieved, state });
    const blackoutMs = performance.now() - blackoutStart;

    // ---- hand the workloads back and preserve them again for the next update
    for (const r of retrieved) {
      const w = this.wl.get(r.name);
      const res = results.get(r.name);
      if (res) res.status = 'restored';
      for (const { snap, fd } of r.files) {
        const fr = res?.files.find((f) => f.token === snap.token);
        if (fr) fr.fd = fd;
      }
      if (!w) continue;
      for (const f of w.files) f.fd = r.files.find((x) => BigInt(x.snap.token) === f.token)?.fd ?? -1;
      const again = this.preserveAll(w.name, w.files, 'readopt');
      w.sessionFd = again.sessionFd;
      if (res) res.readopted = again.sessionFd >= 0;
      for (const e of again.errors) record(e);
    }
    this.putDevice();
    phase('readopt');
    const outcome = this.finishReport('updated', errors, phases, blackoutMs, from, { release: k2.build.release, cmdline: k2.cmdline.raw, coldBooted: false }, results);
    return outcome;
  }

  /** RETRIEVE_SESSION of the agent's session, RETRIEVE_FD of the manifest, read and parse it. */
  private readManifest(dev: number, state: { sessionFd: number; memfd: number }): Manifest {
    const p = this.proc;
    const s = luoRetrieveSession(p, dev, this.stateName);
    if (s < 0) throw new AgentFailure('manifest', this.errOf(s).errno, `retrieve session "${this.stateName}": ${this.errOf(s).message}`);
    state.sessionFd = s;
    const fd = luoSessionRetrieveFd(p, s, MANIFEST_TOKEN);
    if (fd < 0) throw new AgentFailure('manifest', this.errOf(fd).errno, `retrieve the manifest: ${this.errOf(fd).message}`);
    state.memfd = fd;
    const st = p.fstat(fd);
    if (st === -1) throw new AgentFailure('manifest', p.errno, 'fstat of the manifest');
    const buf = new Uint8Array(st.size);
    if (p.pread(fd, buf, 0) !== st.size) throw new AgentFailure('manifest', p.errno, 'short read of the manifest');
    let m: unknown;
    try {
      m = JSON.parse(new TextDecoder().decode(buf));
    } catch (e) {
      throw new AgentFailure('manifest', 'EINVAL', `the manifest is not JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    const ok = (x: unknown): x is Manifest =>
      typeof x === 'object' && x !== null && (x as Manifest).version === MANIFEST_VERSION && Number.isInteger((x as Manifest).generation)
      && Array.isArray((x as Manifest).workloads) && (x as Manifest).workloads.every((w) => typeof w.name === 'string' && Array.isArray(w.files));
    if (!ok(m)) throw new AgentFailure('manifest', 'EINVAL', `the manifest is not a version ${MANIFEST_VERSION} agent manifest`);
    return m;
  }

  /**
   * The fall-back: close what was retrieved (memfds first, then FINISH and close each session, so
   * nothing stays retrieved-but-unfinished), close the device, cold-boot, start over empty.
   */
  private fallBack(
    target: { build: KernelBuild; cmdline: string; fallbackBy: FallbackBy },
    errors: AgentError[],
    phases: Phase[],
    results: Map<string, WorkloadResult>,
    blackoutStart: number,
    from: { release: string; cmdline: string },
    clockStart: number,
    live: { retrieved: Array<{ name: string; sessionFd: number; files: Array<{ snap: FileSnapshot; fd: number }> }>; state: { sessionFd: number; memfd: number } } | undefined,
  ): UpdateReport {
    let clock = clockStart;
    const phase = (name: string): void => {
      const now = performance.now();
      phases.push({ name, ms: now - clock });
      clock = now;
    };
    const reason = errors[0];
    // dmesg of the kernel the agent woke up in, read before the cold boot wipes it
    if (this.machine.kernel === this.kernelRef && this.kernelRef.state === 'running') this.kmsg = this.readKmsg();
    this.log.warn('fallback.start', { reason: reason?.message, step: reason?.step, errno: reason?.errno, workload: reason?.workload });
    const record = (e: AgentError): void => {
      errors.push(e);
      if (e.workload) results.get(e.workload)?.errors.push(e);
      this.log.error('cleanup.failed', { ...e });
    };
    // Still on the new kernel (no panic): give back everything retrieved.
    if (this.machine.kernel === this.kernelRef && this.kernelRef.state === 'running') {
      const p = this.proc;
      const sessions = [...(live?.retrieved ?? []).map((r) => ({ name: r.name as string | undefined, sessionFd: r.sessionFd, fds: r.files.map((f) => f.fd) }))];
      if (live && live.state.sessionFd >= 0) sessions.push({ name: undefined, sessionFd: live.state.sessionFd, fds: live.state.memfd >= 0 ? [live.state.memfd] : [] });
      for (const s of sessions) {
        for (const fd of s.fds) p.close(fd);
        if (s.sessionFd < 0) continue;
        if (luoSessionFinish(p, s.sessionFd) < 0) record({ ...(s.name ? { workload: s.name } : {}), step: 'cleanup', ...this.errOf(), message: `finish ${s.name ?? this.stateName}: ${this.errOf().message}` });
        p.close(s.sessionFd);
        this.log.info('cleanup.session-finished', { session: s.name ?? this.stateName });
      }
      this.putDevice(true);
      phase('cleanup');
    }
    this.hooks.beforeColdBoot?.(this.machine.panic ? undefined : this.machine.kernel);
    const boot = { build: this.opts.fallback?.build ?? target.build, cmdline: this.opts.fallback?.cmdline ?? target.cmdline };
    // a fresh kexec needs a running kernel to do it; a panicked machine is cold-booted
    const fresh = target.fallbackBy === 'fresh-kexec' && !this.machine.panic && this.machine.kernel.state === 'running';
    this.log.warn(fresh ? 'fallback.fresh-kexec' : 'fallback.cold-boot', { release: boot.build.release, cmdline: boot.cmdline });
    let k: Kernel;
    try {
      k = fresh ? this.machine.kexec({ ...boot, handover: false }) : this.machine.coldBoot(boot);
    } catch (e) {
      // the fresh kexec was refused or its kernel panicked: the power cycle is what is left
      record({ step: 'fresh-kexec', ...(e instanceof LuoError ? { errno: e.errno } : {}), message: `fresh kexec: ${e instanceof Error ? e.message : String(e)}` });
      k = this.machine.coldBoot(boot);
    }
    const viaKexec = fresh && k.kexecStats !== undefined;
    this.kernelRef = k;
    this.proc = processesOf(k).spawn();
    this.devFd = -1;
    this.stateFd = -1;
    phase(viaKexec ? 'fresh-kexec' : 'cold-boot');
    const blackoutMs = performance.now() - blackoutStart;
    for (const w of this.wl.keys()) {
      if (!results.has(w)) results.set(w, { name: w, status: 'restart-required', readopted: false, files: [], errors: [] });
    }
    for (const r of results.values()) {
      r.status = 'restart-required';
      r.readopted = false;
      for (const f of r.files) delete f.fd;
    }
    this.wl.clear();
    this.log.info('agent.start', { pid: this.proc.pid, release: k.build.release, after: viaKexec ? 'fresh-kexec' : 'cold-boot' });
    return this.finishReport('fell-back', errors, phases, blackoutMs, from, { release: k.build.release, cmdline: k.cmdline.raw, coldBooted: !viaKexec, ...(viaKexec ? { freshKexec: true } : {}) }, results);
  }

  /**
   * The kernel log as a real agent reads it: /dev/kmsg records through its own process, until
   * EAGAIN; the messages, unescaped. Nothing of the kernel's insides.
   */
  private readKmsg(): string[] {
    const p = this.proc;
    const fd = p.open('/dev/kmsg', O_RDONLY | O_NONBLOCK);
    if (fd < 0) return [];
    const out: string[] = [];
    const buf = new Uint8Array(8192);
    const dec = new TextDecoder();
    for (let n = p.read(fd, buf); n > 0; n = p.read(fd, buf)) {
      const rec = dec.decode(buf.subarray(0, n));
      out.push(rec.slice(rec.indexOf(';') + 1, -1).replace(/\\x([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))));
    }
    p.close(fd);
    return out;
  }

  private finishReport(
    outcome: UpdateOutcome,
    errors: AgentError[],
    phases: Phase[],
    blackoutMs: number,
    from: { release: string; cmdline: string },
    to: UpdateReport['to'],
    results: Map<string, WorkloadResult>,
  ): UpdateReport {
    const exitStatus = outcome === 'updated' ? EXIT_UPDATED : outcome === 'fell-back' ? EXIT_FELL_BACK : EXIT_REFUSED;
    const workloads = [...results.values()];
    const reason = outcome === 'updated' ? undefined : errors[0];
    const diagnosis = diagnose(errors, this.kmsg ?? (this.kernelRef.state === 'running' ? this.readKmsg() : undefined));
    this.kmsg = undefined;
    const report: UpdateReport = {
      outcome,
      exitStatus,
      ...(reason ? { reason } : {}),
      generation: this.gen,
      from,
      to,
      phases,
      blackoutMs,
      workloads,
      restartRequired: outcome === 'fell-back' ? workloads.map((w) => w.name) : [],
      errors,
      ...(diagnosis ? { diagnosis } : {}),
    };
    const level = outcome === 'updated' ? (errors.length ? 'warn' : 'info') : outcome === 'fell-back' ? 'error' : 'warn';
    this.log.log(level, 'update.done', {
      outcome,
      exit_status: exitStatus,
      generation: this.gen,
      blackout_ms: Math.round(blackoutMs * 1000) / 1000,
      phases: Object.fromEntries(phases.map((p) => [p.name, Math.round(p.ms * 1000) / 1000])),
      restart_required: report.restartRequired,
      errors: errors.length,
      reason: reason?.message,
      ...(diagnosis ? { refused_by: diagnosis.layer, why: diagnosis.reason, ...(diagnosis.kmsg ? { kmsg: diagnosis.kmsg } : {}) } : {}),
    });
    return report;
  }
}
