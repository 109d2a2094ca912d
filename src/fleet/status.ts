/**
 * A campaign in numbers, from its plan, state, results and slots in flight: per wave the hosts,
 * outcomes and hosts in flight; the blackout quantiles of updated hosts. One pure function, used by
 * `luo fleet campaign status`, the demo and the fleet dashboard alike.
 */
import type { PlannedCampaign } from './campaign.ts';
import type { CampaignState } from './keys.ts';
import type { HostResult } from './result.ts';
import { admissionOpen } from './window.ts';

export interface WaveStatus {
  readonly name: string;
  readonly hosts: number;
  /** Hosts by outcome, and `pending` for those without a result and not in flight. */
  readonly counts: Record<string, number>;
  readonly inFlight: number;
  readonly maxConcurrent: number;
  readonly maxFailures: number;
}

export interface CampaignStatus {
  readonly name: string;
  readonly target: string;
  readonly state: CampaignState;
  readonly waves: WaveStatus[];
  readonly blackoutMs: { p50: number; p99: number; max: number } | null;
  /** Admissions are allowed now (no windows, or inside one). */
  readonly windowOpen: boolean;
  readonly results: HostResult[];
}

/** The value at quantile `p` of ascending `xs` (nearest rank). */
export function quantile(xs: readonly number[], p: number): number {
  return xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
}

export function summarize(name: string, planned: PlannedCampaign, state: CampaignState, results: readonly HostResult[], inFlightWaves: readonly number[], now = Date.now()): CampaignStatus {
  const byHost = new Map(results.map((r) => [r.host, r]));
  const waves = planned.waves.map((w, i): WaveStatus => {
    const counts: Record<string, number> = {};
    for (const h of w.hosts) {
      const o = byHost.get(h)?.outcome ?? 'pending';
      counts[o] = (counts[o] ?? 0) + 1;
    }
    const inFlight = inFlightWaves.filter((x) => x === i).length;
    if (inFlight) counts['pending'] = (counts['pending'] ?? 0) - inFlight;
    return { name: w.name, hosts: w.hosts.length, counts, inFlight, maxConcurrent: w.maxConcurrent, maxFailures: w.maxFailures };
  });
  const b = results.filter((r) => r.outcome === 'updated' && r.blackoutMs !== undefined).map((r) => r.blackoutMs!).sort((x, y) => x - y);
  return {
    name, target: planned.spec.target, state, waves, blackoutMs: b.length ? { p50: quantile(b, 0.5), p99: quantile(b, 0.99), max: b[b.length - 1]! } : null,
    windowOpen: admissionOpen(planned.spec.windows, now), results: [...results],
  };
}
