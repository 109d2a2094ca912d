/**
 * The fleet's etcd key space, and the JSON records under it. Everything lives under `luo/fleet/`:
 *
 *   hosts/<host>                       a registered host (attached to its runner's presence lease)
 *   runners/<runner>                   a host runner (same lease)
 *   leader                             the controller that leads (its election lease)
 *   assign/<host>                      "update this host now" (the runner's lease: gone with the runner)
 *   campaigns/<c>/spec                 the validated campaign and its wave plan (written once)
 *   campaigns/<c>/state                phase, current wave, why it paused (the controller writes it)
 *   campaigns/<c>/intent               pause / resume / abort (the operator writes it)
 *   campaigns/<c>/gate                 while present, nothing is admitted (an external hold)
 *   campaigns/<c>/slots/<wave>/<n>     a host in flight in slot n < maxConcurrent (the runner's lease)
 *   campaigns/<c>/admitted/<host>      the host was admitted (written once, never removed)
 *   campaigns/<c>/results/<host>       its result (written once)
 */
import type { HostResult } from './result.ts';

export const ROOT = 'luo/fleet/';

export const keys = {
  host: (h: string) => `${ROOT}hosts/${h}`,
  hosts: () => `${ROOT}hosts/`,
  runner: (r: string) => `${ROOT}runners/${r}`,
  leader: () => `${ROOT}leader`,
  assign: (h: string) => `${ROOT}assign/${h}`,
  assigns: () => `${ROOT}assign/`,
  campaigns: () => `${ROOT}campaigns/`,
  campaign: (c: string) => `${ROOT}campaigns/${c}/`,
  spec: (c: string) => `${ROOT}campaigns/${c}/spec`,
  state: (c: string) => `${ROOT}campaigns/${c}/state`,
  intent: (c: string) => `${ROOT}campaigns/${c}/intent`,
  gate: (c: string) => `${ROOT}campaigns/${c}/gate`,
  slots: (c: string) => `${ROOT}campaigns/${c}/slots/`,
  slot: (c: string, wave: number, n: number) => `${ROOT}campaigns/${c}/slots/${wave}/${n}`,
  admitted: (c: string, h: string) => `${ROOT}campaigns/${c}/admitted/${h}`,
  admittedAll: (c: string) => `${ROOT}campaigns/${c}/admitted/`,
  result: (c: string, h: string) => `${ROOT}campaigns/${c}/results/${h}`,
  results: (c: string) => `${ROOT}campaigns/${c}/results/`,
};

/**
 * The bucket a key (given without ROOT) belongs to in a KeyMirror: one per kind of campaign key
 * (`campaigns/<c>/results/`, `.../admitted/`, `.../slots/`, and `campaigns/<c>/` for spec, state,
 * intent and gate), otherwise its first segment (`hosts/`, `assign/`, `runners/`, `leader/`).
 */
export function bucketOf(rest: string): string {
  const parts = rest.split('/', 4);
  if (parts[0] === 'campaigns' && parts.length >= 3) return parts.length === 4 ? `campaigns/${parts[1]}/${parts[2]}/` : `campaigns/${parts[1]}/`;
  return `${parts[0]}/`;
}

/** Buckets by name, for readers of a KeyMirror (the names bucketOf gives, relative to ROOT). */
export const buckets = {
  hosts: 'hosts/',
  assigns: 'assign/',
  results: (c: string) => `campaigns/${c}/results/`,
  slots: (c: string) => `campaigns/${c}/slots/`,
  /** The campaign a bucket name of the form `campaigns/<c>/` names, else undefined. */
  campaignOf: (bucket: string): string | undefined => /^campaigns\/([^/]+)\/$/.exec(bucket)?.[1],
};

export interface HostRecord {
  readonly id: string;
  readonly runner: string;
  /** The catalogue release it runs. */
  readonly release: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The runner's presence lease (slots and assignments of this host are attached to it). */
  readonly lease: string;
  readonly state: 'idle' | 'updating';
}

export interface RunnerRecord {
  readonly id: string;
  readonly pid: number;
  readonly lease: string;
  readonly hosts: number;
}

export type CampaignPhase = 'running' | 'paused' | 'aborted' | 'done';

export interface CampaignState {
  readonly phase: CampaignPhase;
  /** Index of the wave being admitted. */
  readonly wave: number;
  readonly reason?: string;
  /** When the current wave's last result came in (its soak runs from there). */
  readonly waveDoneAt?: number;
  /** The intent revision already applied. */
  readonly intentRev: string;
  /** What an operator's resume accepted: failures of the current wave and the campaign's timeouts so far (only more halt it again). */
  readonly forgiven?: { readonly failures: number; readonly timeouts: number };
  readonly updatedAt: number;
}

export interface Intent {
  readonly action: 'pause' | 'resume' | 'abort';
  readonly at: number;
  readonly by: string;
}

export interface Assignment {
  readonly campaign: string;
  readonly target: string;
  readonly wave: number;
  readonly slot: number;
  /** The campaign's fall-back when it is not a cold boot (absent: cold boot). */
  readonly fallback?: 'fresh-kexec';
}

export interface SlotRecord {
  readonly host: string;
  readonly admittedAt: number;
}

export type { HostResult };

export const json = <T>(s: string): T => JSON.parse(s) as T;
