/**
 * The fleet dashboard's feed: a watched copy of the fleet's etcd keys (src/fleet/mirror.ts), turned
 * into snapshots at most every `intervalMs` while something changed. A snapshot holds the leader,
 * the runners, each campaign's waves, blackout histogram and failures, one character per host for
 * the grid (in the order of the host list served at /api/fleet/hosts, which changes only when hosts
 * come or go: `hostsRev`), and the events seen since the dashboard started.
 */
import type { PlannedCampaign } from '../fleet/campaign.ts';
import { bucketOf, buckets, type CampaignState, type HostRecord, keys, ROOT, type RunnerRecord, type SlotRecord } from '../fleet/keys.ts';
import { KeyMirror } from '../fleet/mirror.ts';
import { type HostResult, isFailure } from '../fleet/result.ts';
import { type CampaignStatus, summarize } from '../fleet/status.ts';
import type { FleetStore, WatchEvent } from '../fleet/store.ts';
import { Hub } from './server.ts';

/**
 * A host's cell, relative to one campaign: `.` not in it, `w` waiting, `a` in flight, `u` updated,
 * `s` updated over the blackout SLO, `f` fell back, `r` refused, `t` timed out, `v` verify failed,
 * `x` in the campaign but not registered now (its runner is away) and without a result.
 */
export const CELL = { none: '.', waiting: 'w', inFlight: 'a', updated: 'u', slo: 's', 'fell-back': 'f', refused: 'r', 'timed-out': 't', 'verify-failed': 'v', absent: 'x' } as const;

export interface FleetFailure {
  readonly host: string;
  readonly wave: number;
  readonly outcome: string;
  readonly layer?: string;
  readonly reason?: string;
  readonly blackoutMs?: number;
  readonly at: number;
}

export interface FleetCampaignView extends Omit<CampaignStatus, 'results'> {
  readonly hosts: number;
  readonly sloMs: number | null;
  /** Blackouts of updated hosts in `bins.length` bins of `binMs` from 0 (the last bin holds the rest; the SLO may lie beyond). */
  readonly histogram: { readonly binMs: number; readonly bins: number[] };
  /** Failed hosts, the latest first (at most 200). */
  readonly failures: FleetFailure[];
  readonly failureCount: number;
  /** One character per host of the host list (CELL). */
  readonly cells: string;
}

export interface FleetEvent {
  readonly at: number;
  readonly level: 'info' | 'warn' | 'bad';
  readonly text: string;
}

export interface FleetSnapshotBody {
  readonly source: { readonly kind: 'fleet'; readonly label: string };
  readonly status: string;
  readonly error: string | null;
  readonly leader: string | null;
  readonly runners: Array<{ id: string; pid: number; hosts: number }>;
  readonly hostCount: number;
  readonly hostsRev: number;
  readonly campaigns: FleetCampaignView[];
  readonly events: FleetEvent[];
}

const MAX_CAMPAIGNS = 8;
const MAX_EVENTS = 200;
const BINS = 40;

export class FleetFeed {
  readonly hub: Hub<FleetSnapshotBody>;
  private mirror: KeyMirror | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dirty = true;
  private hostIds: string[] = [];
  private hostsRev = 0;
  private hostSetChanged = true;
  private readonly events: FleetEvent[] = [];
  private readonly seenState = new Map<string, string>();

  constructor(private readonly store: FleetStore, private readonly intervalMs = 250) {
    this.hub = new Hub<FleetSnapshotBody>({ source: { kind: 'fleet', label: store.endpoints.join(',') }, status: 'starting', error: null, leader: null, runners: [], hostCount: 0, hostsRev: 0, campaigns: [], events: [] });
  }

  async start(): Promise<void> {
    this.mirror = await KeyMirror.start(this.store, ROOT, bucketOf, {
      change: (e, m, replayed) => this.note(e, m, replayed),
      reset: () => {
        this.hostSetChanged = true;
        this.event('warn', 'etcd ended the watch: the dashboard read the fleet again');
      },
    });
    this.publish();
    this.timer = setInterval(() => {
      if (this.dirty) this.publish();
    }, this.intervalMs);
  }

  /** The host list the cells follow. */
  hosts(): { rev: number; ids: string[] } {
    return { rev: this.hostsRev, ids: this.hostIds };
  }

  private event(level: FleetEvent['level'], text: string): void {
    this.events.unshift({ at: Date.now(), level, text });
    if (this.events.length > MAX_EVENTS) this.events.pop();
  }

  /** Notes what an operator wants to see happen (events only for changes seen live, not replayed). */
  private note(e: WatchEvent, m: KeyMirror, replayed: boolean): void {
    this.dirty = true;
    const rest = e.kv.key.slice(ROOT.length);
    const b = bucketOf(rest);
    if (b === buckets.hosts && (e.type === 'delete' || !this.hostIds.length || e.kv.createRevision === e.kv.modRevision)) this.hostSetChanged = true;
    if (replayed) return;
    if (rest === 'leader') this.event(e.type === 'put' ? 'info' : 'warn', e.type === 'put' ? `controller ${e.kv.value} leads` : 'no controller leads (its lease ended)');
    else if (b === 'runners/') {
      const id = rest.slice('runners/'.length);
      if (e.type === 'put' && e.kv.createRevision === e.kv.modRevision) this.event('info', `runner ${id} registered ${m.value<RunnerRecord>(e.kv.key)?.hosts ?? 0} host(s)`);
      else if (e.type === 'delete') this.event('warn', `runner ${id} went away (its presence lease ended)`);
    } else if (e.type === 'put' && rest.endsWith('/state') && b.startsWith('campaigns/')) {
      const c = buckets.campaignOf(b)!;
      const s = m.value<CampaignState>(e.kv.key)!;
      const sig = `${s.phase}/${s.wave}/${s.reason ?? ''}`;
      if (this.seenState.get(c) === sig) return;
      const wave = m.value<PlannedCampaign>(keys.spec(c))?.waves[s.wave]?.name ?? String(s.wave);
      this.event(s.phase === 'paused' || s.phase === 'aborted' ? 'warn' : 'info', `${c}: ${s.phase}${s.phase === 'running' ? `, wave ${s.wave} "${wave}"` : ''}${s.reason ? ` (${s.reason})` : ''}`);
      this.seenState.set(c, sig);
    } else if (e.type === 'put' && b.endsWith('/results/')) {
      const r = m.value<HostResult>(e.kv.key)!;
      if (r.outcome !== 'updated') this.event('bad', `${r.host}: ${r.outcome}${r.layer ? ` (${r.layer})` : ''}${r.reason ? `: ${r.reason}` : ''}`);
    } else if (e.type === 'put' && rest.endsWith('/intent')) {
      const c = buckets.campaignOf(b)!;
      const i = m.value<{ action: string; by: string }>(e.kv.key)!;
      this.event('info', `${c}: the operator asked to ${i.action} (${i.by})`);
    }
  }

  private refreshHosts(m: KeyMirror, campaigns: readonly string[]): void {
    if (!this.hostSetChanged) return;
    const ids = new Set<string>();
    for (const k of m.keysOf(buckets.hosts)) ids.add(k.slice(keys.hosts().length));
    for (const c of campaigns) for (const w of m.value<PlannedCampaign>(keys.spec(c))?.waves ?? []) for (const h of w.hosts) ids.add(h);
    const next = [...ids].sort();
    if (next.length !== this.hostIds.length || next.some((h, i) => h !== this.hostIds[i])) {
      this.hostIds = next;
      this.hostsRev++;
    }
    this.hostSetChanged = false;
  }

  private campaignView(m: KeyMirror, c: string, index: Map<string, number>): FleetCampaignView | undefined {
    const planned = m.value<PlannedCampaign>(keys.spec(c));
    const state = m.value<CampaignState>(keys.state(c));
    if (!planned || !state) return undefined;
    const results: HostResult[] = [];
    for (const k of m.keysOf(buckets.results(c))) results.push(m.value<HostResult>(k)!);
    const slots: number[] = [];
    const inFlight = new Set<string>();
    for (const k of m.keysOf(buckets.slots(c))) {
      slots.push(Number(k.slice(keys.slots(c).length).split('/')[0]));
      inFlight.add(m.value<SlotRecord>(k)!.host);
    }
    const { results: _r, ...status } = summarize(c, planned, state, results, slots);
    const policy = planned.spec.policy;
    const sloMs = policy.blackoutSloMs ?? null;
    const cells = new Array<string>(this.hostIds.length).fill(CELL.none);
    for (const w of planned.waves) for (const h of w.hosts) {
      const i = index.get(h);
      if (i !== undefined) cells[i] = inFlight.has(h) ? CELL.inFlight : m.get(keys.host(h)) ? CELL.waiting : CELL.absent;
    }
    const failures: FleetFailure[] = [];
    const blackouts: number[] = [];
    for (const r of results) {
      const i = index.get(r.host);
      const failed = isFailure(r, policy.failOn, policy.blackoutSloMs);
      if (r.outcome === 'updated' && r.blackoutMs !== undefined) blackouts.push(r.blackoutMs);
      if (i !== undefined) cells[i] = r.outcome === 'updated' ? (sloMs !== null && (r.blackoutMs ?? 0) > sloMs ? CELL.slo : CELL.updated) : CELL[r.outcome];
      if (failed || r.outcome !== 'updated') failures.push({ host: r.host, wave: r.wave, outcome: r.outcome === 'updated' ? 'slo' : r.outcome, ...(r.layer ? { layer: r.layer } : {}), ...(r.reason ? { reason: r.reason } : {}), ...(r.blackoutMs !== undefined ? { blackoutMs: r.blackoutMs } : {}), at: r.at });
    }
    failures.sort((a, b) => b.at - a.at);
    // scaled to the data; the SLO joins the scale when it is near enough to be seen against it
    const dataTop = status.blackoutMs ? status.blackoutMs.max * 1.05 : 1;
    const top = Math.max(1, dataTop, sloMs !== null && sloMs <= dataTop * 3 ? sloMs * 1.1 : 0);
    const binMs = niceBin(top / BINS);
    const n = Math.max(1, Math.min(BINS, Math.ceil(top / binMs)));
    const bins = new Array<number>(n).fill(0);
    for (const b of blackouts) bins[Math.min(n - 1, Math.floor(b / binMs))]!++;
    return { ...status, hosts: planned.waves.reduce((n, w) => n + w.hosts.length, 0), sloMs, histogram: { binMs, bins }, failures: failures.slice(0, 200), failureCount: failures.length, cells: cells.join('') };
  }

  private publish(): void {
    const m = this.mirror;
    if (!m) return;
    this.dirty = false;
    const names = m.bucketNames().map((b) => buckets.campaignOf(b)).filter((c): c is string => c !== undefined);
    // the latest campaigns first
    const created = (c: string): number => m.value<PlannedCampaign>(keys.spec(c))?.createdAt ?? 0;
    const shown = names.sort((a, b) => created(b) - created(a)).slice(0, MAX_CAMPAIGNS);
    this.refreshHosts(m, shown);
    const index = new Map(this.hostIds.map((h, i) => [h, i]));
    const campaigns = shown.map((c) => this.campaignView(m, c, index)).filter((v): v is FleetCampaignView => v !== undefined);
    const runners = [...m.keysOf('runners/')].map((k) => m.value<RunnerRecord>(k)!).map((r) => ({ id: r.id, pid: r.pid, hosts: r.hosts })).sort((a, b) => a.id.localeCompare(b.id));
    const leader = m.get(keys.leader())?.value ?? null;
    const registered = m.size(buckets.hosts);
    const running = campaigns.filter((c) => c.state.phase === 'running').length;
    this.hub.publish({
      source: { kind: 'fleet', label: this.store.endpoints.join(',') },
      status: `${registered} host(s) registered, ${runners.length} runner(s), ${campaigns.length ? `${running} campaign(s) running of ${campaigns.length}` : 'no campaign'}${leader ? `; ${leader} leads` : '; no controller leads'}`,
      error: null, leader, runners, hostCount: this.hostIds.length, hostsRev: this.hostsRev, campaigns, events: this.events.slice(0, 50),
    });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.mirror?.stop();
  }
}

/** A bin width of 1, 2 or 5 times a power of ten, at least `x`. */
function niceBin(x: number): number {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const f of [1, 2, 5, 10]) if (f * p >= x) return f * p;
  return 10 * p;
}
