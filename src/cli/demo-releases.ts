/**
 * The demo's release hops: a small host with one VM live-updates between two releases whose
 * hand-over ABIs agree, and falls back to a cold boot between two that do not — each with what
 * `luo plan` predicted beforehand and what the agent learned afterwards.
 */
import { findRelease } from '../abi/releases.ts';
import { LiveUpdateAgent } from '../agent/index.ts';
import { buildForRelease } from '../kernel/build.ts';
import { Machine } from '../kernel/machine.ts';
import { plan } from '../releases/plan.ts';

export interface HopResult {
  readonly from: string;
  readonly to: string;
  /** What luo plan said: "live-update" or the refusing layer. */
  readonly predicted: string;
  /** What happened: "updated" or "fell-back (<layer>)". */
  readonly happened: string;
  readonly agreed: boolean;
}

/** One VM's 1 MiB of memory in a memfd, adopted by the agent on `from`, then the agent's update to `to`. */
export function releaseHop(from: string, to: string): HopResult {
  const a = findRelease(from)!;
  const b = findRelease(to)!;
  const v = plan(a, b).verdict;
  const m = new Machine({ ramSize: 1n << 30n, build: buildForRelease(from) });
  const agent = new LiveUpdateAgent(m);
  const fd = agent.createMemfd('vm-ram', { writes: [{ at: 0, data: new Uint8Array(1 << 20).fill(0x5a) }] });
  agent.adopt({ name: 'vm-1', files: [{ fd, token: 0x100n, label: 'ram' }] });
  const r = agent.update({ build: buildForRelease(to) });
  const predicted = v.kind === 'live-update' ? 'live-update' : v.layer;
  const happened = r.outcome === 'updated' ? 'updated' : `${r.outcome} (${r.diagnosis?.layer ?? '?'})`;
  const agreed = v.kind === 'live-update' ? r.outcome === 'updated' : r.outcome === 'fell-back' && r.diagnosis?.layer === (v.layer === 'KHO' ? 'KHO' : v.layer);
  return { from, to, predicted, happened, agreed };
}

/** The two hops the demo shows: one that live-updates across releases, one that must fall back. */
export const DEMO_HOPS: ReadonlyArray<readonly [string, string]> = [['7.3.4', '7.3.5'], ['7.3.4', 'mm-granular']];
