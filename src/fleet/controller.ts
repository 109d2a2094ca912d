/**
 * The campaign controller. Several may run; one leads: leadership is the key `leader` created under
 * the controller's own lease (it goes when the lease does), and every write the leader makes is a
 * transaction that also compares that key's lease with its own — a leader that lost its lease can
 * write nothing (fencing). The leader reconciles every running campaign from a watched copy of the
 * fleet's keys (src/fleet/mirror.ts) on each change and on a short tick:
 *
 * - operator intent (pause, resume, abort) is applied to the campaign state;
 * - admitted hosts whose slot vanished (their runner's lease expired) or outlived the host timeout
 *   are recorded `timed-out`, once;
 * - a wave whose failures pass its limit (or a campaign past its timeout limit) pauses, with the
 *   reason; in-flight hosts finish;
 * - a wave with every result in soaks, then the next wave starts (or the campaign is done);
 * - free slots of the current wave are filled, each admission ONE transaction that holds only if the
 *   slot is free, the host was never admitted, the state and intent are those just read (not paused
 *   or aborted since), no gate key exists, the host is not in flight for another campaign, and this
 *   controller still leads.
 */
import { LuoError } from '../errno.ts';
import type { PlannedCampaign } from './campaign.ts';
import { type Assignment, bucketOf, buckets, type CampaignState, type HostRecord, type Intent, keys, ROOT, type SlotRecord } from './keys.ts';
import { CampaignLedger } from './ledger.ts';
import { KeyMirror } from './mirror.ts';
import type { HostResult } from './result.ts';
import { admissionOpen } from './window.ts';
import { type Compare, type FleetStore, type Kv, type LeaseHandle, type Op, type WatchEvent, txnTooLarge } from './store.ts';

/**
 * Admissions per transaction: 4 shared compares + 5 per host and 3 ops per host stay well inside
 * etcd's default --max-txn-ops (128 compares, 128 operations); a cluster with a lower limit
 * refuses the batch, and the admissions are then made one by one.
 */
const ADMIT_BATCH = 16;

export interface ControllerOptions {
  readonly id: string;
  /** Election lease TTL in seconds (default 2). */
  readonly ttl?: number;
  /** Reconcile at least this often (ms; timeouts and soaks need it). */
  readonly tickMs?: number;
  readonly log?: (msg: string) => void;
}

export class Controller {
  private lease: LeaseHandle | undefined;
  /** etcd refused a batch of admissions as too large (said once; admissions go one by one after). */
  private batchRefused = false;
  private leading = false;
  private stopped = false;
  private mirror!: KeyMirror;
  private readonly ledgers = new Map<string, CampaignLedger>();
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  private running: Promise<void> = Promise.resolve();
  /** Admissions this controller made (tests and logs). */
  admissions = 0;

  private constructor(private readonly store: FleetStore, private readonly opts: ControllerOptions) {}

  static async start(store: FleetStore, opts: ControllerOptions): Promise<Controller> {
    const c = new Controller(store, opts);
    c.mirror = await KeyMirror.start(store, ROOT, bucketOf, {
      change: (e, m) => {
        c.note(e, m);
        c.kick();
      },
      reset: () => {
        c.log('etcd ended the watch of the fleet (compacted past it): read it again');
        c.ledgers.clear();
      },
    });
    c.timer = setInterval(() => c.kick(), opts.tickMs ?? 200);
    c.kick();
    return c;
  }

  /** Keeps each campaign's ledger in step with its spec, admissions and results. */
  private note(e: WatchEvent, m: KeyMirror): void {
    if (!e.kv.key.startsWith(keys.campaigns())) return;
    const [c, kind, host] = e.kv.key.slice(keys.campaigns().length).split('/') as [string, string | undefined, string | undefined];
    if (kind === 'spec' && e.type === 'delete') this.ledgers.delete(c);
    if (!kind || e.type !== 'put') return;
    let l = this.ledgers.get(c);
    if (!l) this.ledgers.set(c, (l = new CampaignLedger()));
    if (kind === 'spec') l.setPlan(m.value<PlannedCampaign>(e.kv.key)!);
    else if (kind === 'admitted' && host) l.admit(host);
    else if (kind === 'results' && host) l.record(m.value<HostResult>(e.kv.key)!);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private log(msg: string): void {
    this.opts.log?.(`controller ${this.opts.id}: ${msg}`);
  }

  /** Runs one reconcile after the current one (changes arriving meanwhile fold into it). */
  private kick(): void {
    if (this.stopped || this.pending) return;
    this.pending = true;
    this.running = this.running.then(async () => {
      this.pending = false;
      if (this.stopped) return;
      try {
        if (await this.lead()) await this.reconcileAll();
      } catch (e) {
        this.log(`reconcile: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  }

  /** Campaigns for leadership (a free `leader` key taken under our lease). */
  private async lead(): Promise<boolean> {
    if (this.leading) return true;
    // a standby tries only when the copy shows no leader (not a transaction per change)
    if (this.mirror.get(keys.leader())) return false;
    if (!this.lease) {
      const l = await this.store.grantLease(this.opts.ttl ?? 2);
      this.lease = l;
      void l.lost.then(() => {
        if (this.lease === l) {
          this.lease = undefined;
          if (this.leading) this.log('lost the election lease: no longer leading');
          this.leading = false;
        }
      });
    }
    const r = await this.store.txn([{ key: keys.leader(), target: 'create', op: '==', value: 0 }], [{ put: keys.leader(), value: this.opts.id, lease: this.lease.id }]);
    if (r.succeeded) {
      this.leading = true;
      this.log(`leading (lease ${this.lease.id})`);
    }
    return this.leading;
  }

  /** The condition every leader write carries. */
  private fence(): Compare {
    return { key: keys.leader(), target: 'lease', op: '==', value: this.lease?.id ?? '0' };
  }

  /** Fenced transaction: only while this controller still holds the leader key under its lease. */
  private async write(compares: Compare[], ops: Op[]): Promise<boolean> {
    const r = await this.store.txn([this.fence(), ...compares], ops);
    return r.succeeded;
  }

  /** Every campaign reconciled from the watched copy (no read of the fleet per change). */
  private async reconcileAll(): Promise<void> {
    for (const [c, l] of this.ledgers) await this.reconcile(c, l);
  }

  private async reconcile(c: string, l: CampaignLedger): Promise<void> {
    const m = this.mirror;
    const planned = l.spec;
    const stateKv = m.get(keys.state(c));
    if (!planned || !stateKv) return;
    let state = m.value<CampaignState>(keys.state(c))!;
    const intentKv = m.get(keys.intent(c));
    const now = Date.now();
    const stateCmp = (kv: Kv | undefined, key: string): Compare => ({ key, target: 'mod', op: '==', value: kv?.modRevision ?? 0n });
    const putState = (s: CampaignState): Op => ({ put: keys.state(c), value: JSON.stringify(s) });
    // the campaign's state and the operator's intent are still what was just read
    const unchanged: Compare[] = [stateCmp(stateKv, keys.state(c)), stateCmp(intentKv, keys.intent(c))];

    const wave = planned.waves[state.wave];
    if (!wave) return;
    const slots = new Map<string, { kv: Kv; rec: SlotRecord; n: number }>();
    const wavePrefix = `${keys.slots(c)}${state.wave}/`;
    for (const k of m.keysOf(buckets.slots(c))) {
      if (!k.startsWith(wavePrefix)) continue;
      const rec = m.value<SlotRecord>(k)!;
      slots.set(rec.host, { kv: m.get(k)!, rec, n: Number(k.slice(wavePrefix.length)) });
    }

    // operator intent (a resume accepts the current wave's failures so far)
    if (intentKv && intentKv.modRevision > BigInt(state.intentRev)) {
      const intent = m.value<Intent>(keys.intent(c))!;
      const phase = state.phase === 'done' || state.phase === 'aborted' ? state.phase : intent.action === 'pause' ? 'paused' : intent.action === 'abort' ? 'aborted' : 'running';
      const { reason: _r, ...base } = state;
      const next: CampaignState = {
        ...base, phase, intentRev: String(intentKv.modRevision), updatedAt: now,
        ...(phase === 'running' ? { forgiven: { failures: l.failuresIn(state.wave), timeouts: l.timeouts } } : { reason: `${intent.action} by ${intent.by}` }),
      };
      if (await this.write(unchanged, [putState(next)])) this.log(`${c}: ${intent.action} (${phase})`);
      return;
    }
    if (state.phase !== 'running') return;

    // timeouts: a slot that vanished (its runner's lease expired) or outlived the host timeout
    for (const h of [...l.open]) {
      const s = slots.get(h);
      const expired = !s;
      if (!expired && now - s.rec.admittedAt <= planned.spec.policy.hostTimeoutMs) continue;
      const r: HostResult = {
        host: h, outcome: 'timed-out', from: planned.from[h] ?? '?', to: planned.spec.target, wave: state.wave, at: now, by: this.opts.id,
        reason: expired ? "its runner went away (the host's slot expired with the runner's lease)" : `no result within ${planned.spec.policy.hostTimeoutMs} ms`,
      };
      const cmps: Compare[] = [{ key: keys.result(c, h), target: 'create', op: '==', value: 0 }];
      const ops: Op[] = [{ put: keys.result(c, h), value: JSON.stringify(r) }];
      if (s) {
        cmps.push({ key: s.kv.key, target: 'mod', op: '==', value: s.kv.modRevision });
        ops.push({ del: s.kv.key }, { del: keys.assign(h) });
      }
      if (await this.write(cmps, ops)) {
        l.record(r);
        if (s) slots.delete(h);
        this.log(`${c}: ${h} timed out (${r.reason})`);
      }
    }

    // halting
    const failures = l.failuresIn(state.wave) - (state.forgiven?.failures ?? 0);
    const timeouts = l.timeouts - (state.forgiven?.timeouts ?? 0);
    const limit = planned.spec.policy.pauseAfterTimeouts;
    const halt = failures > wave.maxFailures
      ? `wave ${state.wave} "${wave.name}": ${failures} failure(s), more than the ${wave.maxFailures} it allows`
      : limit !== undefined && timeouts >= limit ? `${timeouts} host(s) timed out (the policy pauses at ${limit})` : undefined;
    if (halt) {
      const next: CampaignState = { ...state, phase: 'paused', reason: halt, updatedAt: now };
      if (await this.write(unchanged, [putState(next)])) this.log(`${c}: paused: ${halt}`);
      return;
    }

    // a finished wave soaks, then the next one starts
    if (l.resultsIn(state.wave) === wave.hosts.length) {
      if (state.waveDoneAt === undefined) {
        state = { ...state, waveDoneAt: now, updatedAt: now };
        await this.write(unchanged, [putState(state)]);
        return;
      }
      if (now - state.waveDoneAt < wave.soakMs) return;
      const last = state.wave + 1 >= planned.waves.length;
      const { waveDoneAt: _done, forgiven, ...rest } = state;
      // a new wave counts its own failures; accepted timeouts stay accepted
      const carried = forgiven ? { forgiven: { failures: 0, timeouts: forgiven.timeouts } } : {};
      const next: CampaignState = last ? { ...rest, phase: 'done', reason: 'every wave completed', updatedAt: now } : { ...rest, ...carried, wave: state.wave + 1, updatedAt: now };
      if (await this.write(unchanged, [putState(next)])) this.log(`${c}: ${last ? 'done' : `wave ${next.wave} "${planned.waves[next.wave]!.name}" starts`}`);
      return;
    }

    // admissions: inside a maintenance window only; free slots of this wave, hosts never admitted, in order
    if (!admissionOpen(planned.spec.windows, now)) return;
    const used = new Set([...slots.values()].map((s) => s.n));
    const free = Array.from({ length: wave.maxConcurrent }, (_, n) => n).filter((n) => !used.has(n));
    if (!free.length) return;
    // each admission: the slot, the admission record and the assignment, all under conditions
    const admissions: Array<{ compares: Compare[]; ops: Op[] }> = [];
    for (const h of l.waiting(state.wave)) {
      const n = free.shift();
      if (n === undefined) break;
      const host = m.value<HostRecord>(keys.host(h));
      if (!host || m.get(keys.assign(h))) {
        free.unshift(n);
        continue; // not present (its runner is away), or in flight for another campaign: it waits
      }
      const slotKey = keys.slot(c, state.wave, n);
      const asg: Assignment = { campaign: c, target: planned.spec.target, wave: state.wave, slot: n, ...(planned.spec.policy.fallback === 'fresh-kexec' ? { fallback: 'fresh-kexec' as const } : {}) };
      admissions.push({
        compares: [
          { key: slotKey, target: 'create', op: '==', value: 0 },
          { key: keys.admitted(c, h), target: 'create', op: '==', value: 0 },
          { key: keys.result(c, h), target: 'create', op: '==', value: 0 },
          { key: keys.host(h), target: 'lease', op: '==', value: host.lease },
          // not in flight for another campaign (one update of a host at a time)
          { key: keys.assign(h), target: 'create', op: '==', value: 0 },
        ],
        ops: [
          { put: slotKey, value: JSON.stringify({ host: h, admittedAt: now } satisfies SlotRecord), lease: host.lease },
          { put: keys.admitted(c, h), value: JSON.stringify({ wave: state.wave, slot: n, at: now, by: this.opts.id }) },
          { put: keys.assign(h), value: JSON.stringify(asg), lease: host.lease },
        ],
      });
    }
    // Several admissions per transaction (all or none: a wave's slots fill in a few round trips,
    // not one per host); a batch that fails is tried host by host, which stops at the first refusal.
    const shared: Compare[] = [...unchanged, { key: keys.gate(c), target: 'create', op: '==', value: 0 }];
    for (let i = 0; i < admissions.length; i += ADMIT_BATCH) {
      const batch = admissions.slice(i, i + ADMIT_BATCH);
      const together = batch.length > 1 && !this.batchRefused && (await this.write([...shared, ...batch.flatMap((a) => a.compares)], batch.flatMap((a) => a.ops)).catch((e: unknown) => {
        const why = txnTooLarge(e);
        // a cluster whose --max-txn-ops is lower than a batch needs: one host per transaction from now on
        if (why !== undefined) {
          this.batchRefused = true;
          this.log(`etcd refused ${batch.length} admissions in one transaction (${why}): admitting one host per transaction`);
        }
        return false;
      }));
      if (together) {
        this.admissions += batch.length;
        continue;
      }
      for (const a of batch) {
        // the ledger learns of the admission from the watch, with its slot (never ahead of it: a
        // host open without its slot in the copy would look like one whose runner went away)
        if (!(await this.write([...a.compares, ...shared], a.ops))) return; // something changed under us: the next reconcile reads it again
        this.admissions++;
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.mirror?.stop();
    if (this.lease) await this.lease.revoke().catch(() => undefined);
  }
}

/** Writes a campaign and its first state, once (EEXIST if the name is taken). */
export async function createCampaign(store: FleetStore, planned: PlannedCampaign): Promise<void> {
  const c = planned.spec.name;
  const state: CampaignState = { phase: 'running', wave: 0, intentRev: '0', updatedAt: Date.now() };
  const r = await store.txn([{ key: keys.spec(c), target: 'create', op: '==', value: 0 }], [{ put: keys.spec(c), value: JSON.stringify(planned) }, { put: keys.state(c), value: JSON.stringify(state) }]);
  if (!r.succeeded) throw new LuoError('EEXIST', `a campaign named "${c}" exists already`);
}

/** Records the operator's intent; the leading controller applies it at its next reconcile. */
export async function setIntent(store: FleetStore, c: string, action: Intent['action'], by: string): Promise<void> {
  if (!(await store.get(keys.spec(c)))) throw new LuoError('ENOENT', `no campaign named "${c}"`);
  await store.put(keys.intent(c), JSON.stringify({ action, at: Date.now(), by } satisfies Intent));
}
