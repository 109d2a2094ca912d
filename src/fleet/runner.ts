/**
 * A host runner: N simulated hosts (each a real luo machine of a release, with a VM whose memory is a
 * memfd adopted by the live-update agent), registered in etcd under one presence lease per runner.
 * It watches for assignments of its hosts and performs each as a real simulated live update (the
 * agent's snapshot, kexec, KHO walk, LUO restore, retrieve, verify, finish), then records the result
 * in one transaction that holds only while the host's slot is still its own (a slot the controller
 * timed out, or that expired with this runner's lease, takes no late result). Hosts finishing
 * together have their transactions sent together (batcher.ts), each keeping its own outcome.
 */
import { findRelease } from '../abi/releases.ts';
import { type FallbackBy, LiveUpdateAgent, type UpdateReport } from '../agent/index.ts';
import { LuoClient } from '../client/index.ts';
import { LuoError } from '../errno.ts';
import { buildForRelease } from '../kernel/build.ts';
import { Machine } from '../kernel/machine.ts';
import { injectFault } from '../scenario/faults.ts';
import { type Assignment, type HostRecord, json, keys, type RunnerRecord } from './keys.ts';
import type { HostOutcome, HostResult } from './result.ts';
import { type Compare, type FleetStore, type Kv, type LeaseHandle, type Op, retryWithBackoff } from './store.ts';
import { TxnBatcher } from './batcher.ts';

/** How a test or demo makes a host fail: its kexec refused, or a corrupt hand-over (a fall-back). */
export type HostFault = 'refused' | 'fell-back' | 'slow';

export interface RunnerOptions {
  readonly id: string;
  readonly count: number;
  readonly release: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Spread the hosts over this many racks: host i gets the label rack=r<i mod racks>. */
  readonly racks?: number;
  /** Host ids are `<prefix>-<n>` (default: the runner id). */
  readonly prefix?: string;
  /** Presence lease TTL in seconds (default 3): a runner that dies frees its hosts' slots this fast. */
  readonly ttl?: number;
  readonly faults?: Readonly<Record<string, HostFault>>;
  /** Attach to these `luo serve` daemons instead of simulating `count` hosts: one host per socket. */
  readonly sockets?: readonly string[];
  /** Updates in progress at once (default 128: every host a campaign admits at once, typically). */
  readonly parallel?: number;
  /** Each update waits this long first (tests: a window in which to kill the runner). */
  readonly updateDelayMs?: number;
  readonly log?: (msg: string) => void;
}

const VM_BYTES = 1 << 20;

/** What one live update of a host gave. */
export interface UpdateRecord {
  readonly outcome: HostOutcome;
  readonly blackoutMs?: number;
  readonly phases?: Readonly<Record<string, number>>;
  readonly reason?: string;
  readonly layer?: string;
  /** A fall-back by a kexec without hand-over (the campaign's policy.fallback), not a cold boot. */
  readonly freshKexec?: true;
  /** The release the host runs afterwards. */
  readonly release: string;
}

/** A host the runner drives: a simulated machine, or a `luo serve` daemon. */
export interface HostDriver {
  readonly id: string;
  readonly release: string;
  /** The live update; `fallback` is how a failed one falls back (a daemon host falls back its own way). */
  update(target: string, fault: HostFault | undefined, fallback?: FallbackBy): Promise<UpdateRecord>;
}

/**
 * A simulated host, kept compact while idle: its id and release, not a booted machine. Admitted,
 * it boots a machine of its release, puts the guest memory in a memfd the live-update agent
 * adopts, and does the real live update (the agent checks the memory the new kernel hands back
 * against its sha256 before the update: a host whose memory came back different is verify-failed).
 * The VM is paused across an update and writes nothing, so its memory is always the contents it
 * was made with: made again from the id at each boot, nothing kept in between.
 */
export class SimHost implements HostDriver {
  constructor(readonly id: string, public release: string) {}

  /** The guest memory the host boots with. */
  private guestMemory(): Uint8Array {
    const data = new Uint8Array(VM_BYTES);
    for (let i = 0; i < data.length; i += 4096) data[i] = (i >> 12) & 0xff;
    data.set(new TextEncoder().encode(this.id), 8);
    return data;
  }

  /** The live update to `target`, as the agent reports it; `fault` arms a failure first. */
  async update(target: string, fault: HostFault | undefined, fallback: FallbackBy = 'cold-boot'): Promise<UpdateRecord> {
    let report: UpdateReport;
    let host: { machine: Machine; agent: LiveUpdateAgent };
    try {
      host = this.boot();
      report = this.run(host, target, fault, fallback);
    } catch (e) {
      return { outcome: 'refused', reason: e instanceof Error ? e.message : String(e), release: this.release };
    }
    const outcome: HostOutcome = report.outcome === 'updated' ? (report.workloads.every((w) => w.files.every((f) => f.verified)) ? 'updated' : 'verify-failed') : report.outcome;
    if (report.outcome !== 'refused') this.release = target;
    return {
      outcome, release: this.release, blackoutMs: report.blackoutMs, phases: Object.fromEntries(report.phases.map((p) => [p.name, Math.round(p.ms * 1000) / 1000])),
      ...(report.diagnosis ? { reason: report.diagnosis.reason, layer: report.diagnosis.layer } : {}),
      ...(report.to.freshKexec ? { freshKexec: true as const } : {}),
    };
  }

  /** A machine of the host's release running its VM (guest memory in a memfd the agent adopted). */
  private boot(): { machine: Machine; agent: LiveUpdateAgent } {
    const machine = new Machine({ ramSize: 1n << 30n, build: buildForRelease(this.release) });
    const agent = new LiveUpdateAgent(machine);
    const fd = agent.createMemfd(`${this.id}-ram`, { writes: [{ at: 0, data: this.guestMemory() }] });
    const r = agent.adopt({ name: 'vm-1', files: [{ fd, token: 0x100n, label: 'guest RAM' }], checksum: 'sha256' });
    if (!r.ok) throw new LuoError('EIO', `host ${this.id}: the agent could not adopt its VM: ${r.errors.map((e) => e.message).join('; ')}`);
    return { machine, agent };
  }

  private run(host: { machine: Machine; agent: LiveUpdateAgent }, target: string, fault: HostFault | undefined, fallback: FallbackBy): UpdateReport {
    const k = host.agent.kernel;
    if (fault === 'refused') injectFault(k, { op: 'freeze', errno: 'EIO', times: 1 });
    if (fault === 'fell-back' && k.luo?.enabled) {
      // a hand-over the new kernel cannot read: LUO's compatible overwritten after serialization
      k.onReboot(() => host.machine.memory.write(k.luo!.outgoingSerPa, new TextEncoder().encode('luo-v0\0')));
    }
    return host.agent.update({ build: buildForRelease(target), fallbackBy: fallback });
  }
}

/**
 * A real `luo serve` daemon as a host: its release is what the daemon runs; an update is its kexec
 * into the target release (`luo kexec --release`), whose statistics give the blackout. What the new
 * kernel kept is read back from it: a hand-over (liveupdate number up) or none (a cold boot).
 */
class DaemonHost implements HostDriver {
  private constructor(readonly id: string, readonly socket: string, public release: string) {}

  static async attach(id: string, socket: string): Promise<DaemonHost> {
    const c = await LuoClient.connect(socket);
    try {
      const st = await c.status();
      const r = findRelease(st.release);
      if (!r) throw new LuoError('EINVAL', `the daemon on ${socket} runs "${st.release}", a release luo does not know`);
      return new DaemonHost(id, socket, r.name);
    } finally {
      await c.close();
    }
  }

  async update(target: string): Promise<UpdateRecord> {
    const c = await LuoClient.connect(this.socket);
    const before = (await c.status()).liveupdateNum;
    let stats: Record<string, unknown>;
    try {
      stats = (await c.kexec({ release: target })).stats;
    } catch (e) {
      await c.close().catch(() => undefined);
      return { outcome: 'refused', layer: 'kexec', reason: e instanceof Error ? e.message : String(e), release: this.release };
    }
    this.release = target;
    const after = await LuoClient.connectRetry(this.socket);
    const num = (await after.status()).liveupdateNum;
    await after.close();
    const phases = { freeze: Number(stats['freezeMs']), image: Number(stats['imageMs']), takeover: Number(stats['takeoverMs']) };
    // the blackout (freeze to the new daemon's readiness); an older luo reports only the total
    const blackoutMs = Number(stats['blackoutMs'] ?? stats['totalMs']);
    if (num <= before) return { outcome: 'fell-back', layer: 'KHO', reason: 'the new kernel took no hand-over (liveupdate number did not advance)', blackoutMs, phases, release: target };
    return { outcome: 'updated', blackoutMs, phases, release: target };
  }
}

export class HostRunner {
  private readonly busy = new Set<string>();
  private readonly again = new Set<string>();
  /** The latest assignment seen per host, waiting to be performed. */
  private readonly assigned = new Map<string, Kv>();
  private stopWatch: (() => Promise<void>) | undefined;
  private stopped = false;
  private readonly queue: string[] = [];
  private working = 0;
  /** Updates performed (for tests and the status line). */
  updates = 0;

  /** The `updating` and result writes of hosts finishing together go to etcd together. */
  private readonly batcher: TxnBatcher;

  private constructor(private readonly store: FleetStore, private readonly opts: RunnerOptions, private readonly lease: LeaseHandle, private readonly hosts: Map<string, HostDriver>) {
    this.batcher = new TxnBatcher(store, opts.log && ((m) => opts.log!(`runner ${opts.id}: ${m}`)));
  }

  /** etcd transactions this runner's updates asked for, and sent (fewer: batched). */
  get transactions(): { asked: number; sent: number } {
    return { asked: this.batcher.asked, sent: this.batcher.sent };
  }

  static async start(store: FleetStore, opts: RunnerOptions): Promise<HostRunner> {
    if (!findRelease(opts.release)) throw new LuoError('ENOENT', `unknown release "${opts.release}" (luo releases)`);
    const hosts = new Map<string, HostDriver>();
    const prefix = opts.prefix ?? opts.id;
    for (const [i, socket] of (opts.sockets ?? []).entries()) {
      const d = await DaemonHost.attach(`${prefix}-${String(i).padStart(4, '0')}`, socket);
      hosts.set(d.id, d);
    }
    for (let i = 0; i < (opts.sockets?.length ? 0 : opts.count); i++) {
      const id = `${prefix}-${String(i).padStart(4, '0')}`;
      hosts.set(id, new SimHost(id, findRelease(opts.release)!.name));
    }
    // the lease only once the hosts exist: nothing keeps it alive while they are made
    const lease = await store.grantLease(opts.ttl ?? 3);
    const r = new HostRunner(store, opts, lease, hosts);
    const rec: RunnerRecord = { id: opts.id, pid: process.pid, lease: lease.id, hosts: r.hosts.size };
    await store.put(keys.runner(opts.id), JSON.stringify(rec), lease.id);
    await r.registerAll();
    // assignments made while this runner was away are gone with its old lease: only new ones count
    await r.watchAssignments(false);
    void lease.lost.then(() => {
      if (!r.stopped) opts.log?.(`runner ${opts.id}: presence lease ${lease.id} lost`);
    });
    opts.log?.(`runner ${opts.id}: ${r.hosts.size} host(s) registered (${opts.sockets?.length ? `daemons on ${opts.sockets.join(', ')}` : opts.release}; lease ${lease.id})`);
    return r;
  }

  /**
   * Takes up each new assignment of one of its hosts. Should etcd end the watch, the assignments
   * present are read (and taken up: `catchUp`) and a new watch starts, retrying while etcd is away.
   */
  private async watchAssignments(catchUp: boolean): Promise<void> {
    const { kvs, revision } = await this.store.range(keys.assigns());
    if (catchUp) for (const kv of kvs) this.onAssign(kv);
    this.stopWatch = await this.store.watch(keys.assigns(), revision, (e) => e.type === 'put' && this.onAssign(e.kv), () => void this.rewatch());
  }

  /** An assignment of one of its hosts, as the watch delivered it (value and revisions: no read). */
  private onAssign(kv: Kv): void {
    const host = kv.key.slice(keys.assigns().length);
    if (!this.hosts.has(host)) return;
    this.assigned.set(host, kv);
    this.enqueue(host);
  }

  private async rewatch(): Promise<void> {
    await retryWithBackoff(async () => {
      await this.watchAssignments(true);
      this.opts.log?.(`runner ${this.opts.id}: etcd ended the assignment watch; read them again and watching anew`);
    }, () => this.stopped);
  }

  get hostIds(): string[] {
    return [...this.hosts.keys()];
  }

  private record(h: HostDriver, state: HostRecord['state']): string {
    const i = Number(/(\d+)$/.exec(h.id)?.[1] ?? 0);
    const labels = { ...(this.opts.labels ?? {}), ...(this.opts.racks ? { rack: `r${i % this.opts.racks}` } : {}) };
    return JSON.stringify({ id: h.id, runner: this.opts.id, release: h.release, labels, lease: this.lease.id, state } satisfies HostRecord);
  }

  private register(h: HostDriver, state: HostRecord['state']): Promise<bigint> {
    return this.store.put(keys.host(h.id), this.record(h, state), this.lease.id);
  }

  /** Every host registered idle, 100 to a transaction (etcd's default limit is 128 operations). */
  private async registerAll(): Promise<void> {
    const all = [...this.hosts.values()];
    for (let i = 0; i < all.length; i += 100) {
      const ops = all.slice(i, i + 100).map((h) => ({ put: keys.host(h.id), value: this.record(h, 'idle'), lease: this.lease.id }));
      // holds only while this runner's record is under this lease
      const r = await this.store.txn([{ key: keys.runner(this.opts.id), target: 'lease', op: '==', value: this.lease.id }], ops);
      if (!r.succeeded) throw new LuoError('EIO', `runner ${this.opts.id}: its presence lease ${this.lease.id} went away while registering`);
    }
  }

  private enqueue(host: string): void {
    if (!this.queue.includes(host)) this.queue.push(host);
    void this.work();
  }

  /**
   * Up to `parallel` updates at once: the simulated work is CPU-bound and runs one at a time anyway,
   * but while hosts wait for etcd (two transactions each, a few ms apiece under load) others
   * compute. With 16 the runners idled a fifth of a campaign's time, every worker waiting on etcd.
   */
  private async work(): Promise<void> {
    if (this.working >= (this.opts.parallel ?? 128)) return;
    this.working++;
    try {
      while (this.queue.length && !this.stopped) {
        const id = this.queue.shift()!;
        if (this.busy.has(id)) {
          this.again.add(id); // assigned anew while its last update finishes: taken up after it
          continue;
        }
        try {
          await this.perform(id);
        } catch (e) {
          this.opts.log?.(`runner ${this.opts.id}: host ${id}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    } finally {
      this.working--;
    }
  }

  private async perform(id: string): Promise<void> {
    const h = this.hosts.get(id)!;
    this.busy.add(id);
    try {
      const a = this.assigned.get(id);
      if (!a) return;
      this.assigned.delete(id);
      const asg = json<Assignment>(a.value);
      const slotKey = keys.slot(asg.campaign, asg.wave, asg.slot);
      // the admission wrote slot and assignment in one transaction: the slot is still this
      // admission's while its create revision is the assignment's (checked by etcd, not by a read)
      const ours: Compare = { key: slotKey, target: 'create', op: '==', value: a.createRevision };
      const started = await this.batcher.txn({ compares: [ours], success: [{ put: keys.host(id), value: this.record(h, 'updating'), lease: this.lease.id }] });
      if (!started.succeeded) {
        // taken back (timed out) before it started: drop this assignment, and only this one
        await this.store.txn([{ key: keys.assign(id), target: 'create', op: '==', value: a.createRevision }], [{ del: keys.assign(id) }]);
        return;
      }
      if (this.opts.updateDelayMs) await new Promise((r) => setTimeout(r, this.opts.updateDelayMs));
      const fault = this.opts.faults?.[id];
      if (fault === 'slow') await new Promise((r) => setTimeout(r, 60_000));
      const from = h.release;
      const u = await h.update(asg.target, fault, asg.fallback);
      const { release: _r, ...rec } = u;
      const result: HostResult = { host: id, from, to: asg.target, wave: asg.wave, at: Date.now(), by: this.opts.id, ...rec };
      // the result counts only while the slot is still this host's; the host is idle again either way
      const idle: Op = { put: keys.host(id), value: this.record(h, 'idle'), lease: this.lease.id };
      const r = await this.batcher.txn({
        compares: [ours, { key: keys.result(asg.campaign, id), target: 'create', op: '==', value: 0 }],
        success: [{ put: keys.result(asg.campaign, id), value: JSON.stringify(result) }, { del: slotKey }, { del: keys.assign(id) }, idle],
        failure: [idle],
      });
      this.updates++;
      this.opts.log?.(`runner ${this.opts.id}: ${id} ${from} -> ${asg.target}: ${u.outcome}${r.succeeded ? '' : ' (too late: its slot was taken back)'}`);
    } catch (e) {
      await this.register(h, 'idle').catch(() => undefined);
      throw e;
    } finally {
      this.busy.delete(id);
      if (this.again.delete(id)) this.enqueue(id);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopWatch?.();
    await this.lease.revoke().catch(() => undefined);
  }
}
