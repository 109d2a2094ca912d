/**
 * What the controller knows of one campaign, kept up to date change by change from the watched keys
 * (src/fleet/mirror.ts) so a reconcile costs the hosts in flight and the free slots, not the size of
 * the fleet: which hosts were admitted, which are open (admitted, no result yet), each wave's results
 * and failures (by the campaign's policy), the campaign's timeouts, and per wave the first host not
 * yet admitted (admissions are in wave order and never undone, so it only moves forward).
 */
import type { PlannedCampaign } from './campaign.ts';
import { type HostResult, isFailure } from './result.ts';

export class CampaignLedger {
  private planned: PlannedCampaign | undefined;
  private readonly waveOf = new Map<string, number>();
  readonly results = new Map<string, HostResult>();
  readonly admitted = new Set<string>();
  /** Admitted hosts without a result. */
  readonly open = new Set<string>();
  private done: number[] = [];
  private failed: number[] = [];
  private timedOut = 0;
  private cursor: number[] = [];

  get spec(): PlannedCampaign | undefined {
    return this.planned;
  }

  /** The campaign's plan (written once); counts made before it was known are made again. */
  setPlan(p: PlannedCampaign): void {
    this.planned = p;
    this.waveOf.clear();
    p.waves.forEach((w, i) => w.hosts.forEach((h) => this.waveOf.set(h, i)));
    this.done = p.waves.map(() => 0);
    this.failed = p.waves.map(() => 0);
    this.cursor = p.waves.map(() => 0);
    this.timedOut = 0;
    for (const r of this.results.values()) this.count(r);
  }

  admit(host: string): void {
    this.admitted.add(host);
    if (!this.results.has(host)) this.open.add(host);
  }

  record(r: HostResult): void {
    if (this.results.has(r.host)) return; // written once; a repeat is the same result
    this.results.set(r.host, r);
    this.open.delete(r.host);
    this.count(r);
  }

  private count(r: HostResult): void {
    const p = this.planned;
    if (!p) return;
    const w = this.waveOf.get(r.host);
    if (w !== undefined) {
      this.done[w]!++;
      if (isFailure(r, p.spec.policy.failOn, p.spec.policy.blackoutSloMs)) this.failed[w]!++;
    }
    if (r.outcome === 'timed-out') this.timedOut++;
  }

  /** Results in wave `w`. */
  resultsIn(w: number): number {
    return this.done[w] ?? 0;
  }

  /** Failures in wave `w`, as the campaign's policy counts them. */
  failuresIn(w: number): number {
    return this.failed[w] ?? 0;
  }

  /** Timed-out hosts in the whole campaign. */
  get timeouts(): number {
    return this.timedOut;
  }

  /** Hosts of wave `w` not admitted yet, in wave order (pull as many as there are free slots). */
  *waiting(w: number): Generator<string> {
    const hosts = this.planned?.waves[w]?.hosts ?? [];
    let i = this.cursor[w] ?? 0;
    while (i < hosts.length && this.admitted.has(hosts[i]!)) i++;
    this.cursor[w] = i;
    for (; i < hosts.length; i++) if (!this.admitted.has(hosts[i]!)) yield hosts[i]!;
  }
}
