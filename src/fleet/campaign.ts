/**
 * Campaign files: the target release, which hosts, the waves (how many hosts, how many at once, how
 * many failures stop it, how long to soak) and the policy (blackout SLO, per-host timeout, what counts
 * as a failure, cold-boot hops allowed or not, safe mode). Validated strictly with line, column and
 * field; then planned against the registered hosts: every selected host placed in one wave, and each
 * host's hop checked with `luo plan` (refused unless the campaign allows cold-boot hops).
 */
import * as z from 'zod';
import { findRelease, RELEASES } from '../abi/releases.ts';
import { LuoError } from '../errno.ts';
import { plan } from '../releases/plan.ts';
import { fields, int, listOf, oneOf, Refusal, show, text, value } from '../schema/values.ts';
import { checkYaml, FileSchemaError, loadYaml, type SchemaIssue, toJsonSchema } from '../schema/yaml-file.ts';
import type { HostRecord } from './keys.ts';
import { FAILURE_KINDS, type FailureKind } from './result.ts';
import type { FallbackBy } from '../agent/agent.ts';
import { clockMinutes, WEEKDAYS, type Window } from './window.ts';

/** A duration: milliseconds, or a number with ms, s, m or h ("500ms", "30s", "2m"). */
export const duration: z.ZodType<number> = value({ anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string', pattern: '^\\d+(ms|s|m|h)$' }] }, (v) => {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  const m = typeof v === 'string' ? /^(\d+)(ms|s|m|h)$/.exec(v.trim()) : null;
  if (!m) return new Refusal(`expected a duration (ms, or a number with ms, s, m or h), got ${show(v)}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
});

const releaseName = oneOf(RELEASES.flatMap((r) => [r.name, r.uname]));

export interface WaveSpec {
  readonly name: string;
  /** How many hosts (absent with `percent` absent too: every host no earlier wave took). */
  readonly hosts?: number;
  readonly percent?: number;
  readonly maxConcurrent: number;
  readonly maxFailures?: number;
  readonly maxFailurePct?: number;
  readonly soakMs: number;
}

export interface CampaignSpec {
  readonly name: string;
  readonly target: string;
  readonly select: { readonly labels: Readonly<Record<string, string>>; readonly releases?: readonly string[] };
  readonly waves: readonly WaveSpec[];
  readonly policy: {
    readonly blackoutSloMs?: number;
    readonly hostTimeoutMs: number;
    readonly allowColdBoot: boolean;
    /** How a host that cannot live-update falls back (the agent's fallbackBy; default cold-boot). */
    readonly fallback: FallbackBy;
    readonly failOn: readonly FailureKind[];
    /** One host alone first: a first wave of more than one host is preceded by a wave of one. */
    readonly safeMode: boolean;
    /** Pause when this many hosts of the campaign timed out. */
    readonly pauseAfterTimeouts?: number;
  };
  /** When hosts may be admitted (always, when empty). */
  readonly windows: readonly Window[];
}

const wave = fields({
  name: text({ nonEmpty: true }), hosts: int(1).optional(), percent: int(1, 100).optional(), maxConcurrent: int(1, 100000),
  maxFailures: int(0).optional(), maxFailurePct: int(0, 100).optional(), soak: duration.optional(),
}).transform((w, ctx): WaveSpec => {
  if (w.hosts !== undefined && w.percent !== undefined) ctx.addIssue({ code: 'custom', message: 'give "hosts" or "percent", not both', path: ['percent'] });
  if (w.maxFailures !== undefined && w.maxFailurePct !== undefined) ctx.addIssue({ code: 'custom', message: 'give "maxFailures" or "maxFailurePct", not both', path: ['maxFailurePct'] });
  const o: WaveSpec = { name: w.name, maxConcurrent: w.maxConcurrent, soakMs: w.soak ?? 0 };
  return { ...o, ...(w.hosts !== undefined ? { hosts: w.hosts } : {}), ...(w.percent !== undefined ? { percent: w.percent } : {}), ...(w.maxFailures !== undefined ? { maxFailures: w.maxFailures } : {}), ...(w.maxFailurePct !== undefined ? { maxFailurePct: w.maxFailurePct } : {}) };
});

const labels = z.record(z.string(), z.string());

const clock = value({ type: 'string', pattern: '^([01]\\d|2[0-3]):[0-5]\\d$' }, (v) =>
  (typeof v === 'string' ? clockMinutes(v) : undefined) ?? new Refusal(`expected a UTC clock time "HH:MM", got ${show(v)}`));

const windowSpec = fields({ from: clock, to: clock, days: listOf(oneOf(WEEKDAYS)).optional() }).transform((w, ctx): Window => {
  if (w.from === w.to) ctx.addIssue({ code: 'custom', message: 'a window must not be empty (from equals to)', path: ['to'] });
  return { from: w.from, to: w.to, ...(w.days ? { days: w.days } : {}) };
});

export const campaignSchema = fields({
  name: text({ nonEmpty: true, pattern: /^[a-z0-9][a-z0-9-]{0,62}$/, patternMessage: 'a campaign name is 1..63 of a-z, 0-9 and "-", starting with a letter or digit' }),
  target: releaseName,
  select: fields({ labels: labels.optional(), releases: listOf(releaseName).optional() }).optional(),
  waves: z.array(wave).min(1, { error: 'needs at least one wave' }),
  policy: fields({
    blackoutSlo: duration.optional(), hostTimeout: duration.optional(), allowColdBoot: z.boolean().optional(), fallback: oneOf(['cold-boot', 'fresh-kexec'] as const).optional(),
    failOn: listOf(oneOf(FAILURE_KINDS)).optional(), safeMode: z.boolean().optional(), pauseAfterTimeouts: int(1).optional(),
  }).optional(),
  windows: listOf(windowSpec).optional(),
}).transform((c): CampaignSpec => ({
  name: c.name,
  target: findRelease(c.target)!.name,
  select: { labels: c.select?.labels ?? {}, ...(c.select?.releases ? { releases: c.select.releases.map((r) => findRelease(r)!.name) } : {}) },
  waves: c.waves,
  policy: {
    ...(c.policy?.blackoutSlo !== undefined ? { blackoutSloMs: c.policy.blackoutSlo } : {}),
    hostTimeoutMs: c.policy?.hostTimeout ?? 120_000,
    allowColdBoot: c.policy?.allowColdBoot ?? false,
    fallback: c.policy?.fallback ?? 'cold-boot',
    failOn: c.policy?.failOn ?? [...FAILURE_KINDS],
    safeMode: c.policy?.safeMode ?? false,
    ...(c.policy?.pauseAfterTimeouts !== undefined ? { pauseAfterTimeouts: c.policy.pauseAfterTimeouts } : {}),
  },
  windows: c.windows ?? [],
}));

export class CampaignFileError extends FileSchemaError {
  constructor(file: string, issues: SchemaIssue[]) {
    super(file, issues);
    this.name = 'CampaignFileError';
  }
}

const fail = (file: string, issues: SchemaIssue[]): Error => new CampaignFileError(file, issues);

export function parseCampaign(text: string, file = '<campaign>'): CampaignSpec {
  return checkYaml(loadYaml(text, file, fail), campaignSchema as unknown as z.ZodType<CampaignSpec>, file, fail);
}

export const campaignJsonSchema = () => toJsonSchema(campaignSchema, {
  id: 'https://github.com/luo/luo/docs/campaign.schema.json', title: 'luo fleet campaign', description: 'A fleet live-update campaign for `luo fleet campaign create FILE.yaml`.',
});

/** A wave as the controller runs it: its hosts fixed at creation. */
export interface PlannedWave {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly maxConcurrent: number;
  /** Failures tolerated in this wave (more pauses the campaign). */
  readonly maxFailures: number;
  readonly soakMs: number;
}

export interface PlannedCampaign {
  readonly spec: CampaignSpec;
  readonly waves: readonly PlannedWave[];
  /** Each selected host's release when the campaign was created. */
  readonly from: Readonly<Record<string, string>>;
  /** Hops that cannot live-update (allowed only with policy.allowColdBoot), by host. */
  readonly coldBoot: Readonly<Record<string, string>>;
  readonly createdAt: number;
}

/**
 * Places the selected hosts (sorted by id) into the waves in order; refuses an empty selection, hosts
 * left in no wave, and hops `luo plan` says cannot live-update unless cold-boot hops are allowed.
 */
export function planCampaign(spec: CampaignSpec, hosts: readonly HostRecord[], now = Date.now()): PlannedCampaign {
  const selected = hosts
    .filter((h) => Object.entries(spec.select.labels).every(([k, v]) => h.labels[k] === v))
    .filter((h) => !spec.select.releases || spec.select.releases.includes(findRelease(h.release)?.name ?? h.release))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (!selected.length) throw new LuoError('ENOENT', `no registered host matches the selection (labels ${JSON.stringify(spec.select.labels)}${spec.select.releases ? `, releases ${spec.select.releases.join(', ')}` : ''})`);
  const target = findRelease(spec.target)!;
  const coldBoot: Record<string, string> = {};
  for (const h of selected) {
    const from = findRelease(h.release);
    if (!from) throw new LuoError('EINVAL', `host ${h.id} runs "${h.release}", a release luo does not know`);
    const v = plan(from, target).verdict;
    if (v.kind !== 'live-update') coldBoot[h.id] = `${from.name} -> ${target.name}: ${'layer' in v ? `${v.layer}: ` : ''}${v.reason}`;
  }
  const refusedHops = Object.entries(coldBoot);
  if (refusedHops.length && !spec.policy.allowColdBoot) {
    const kinds = [...new Set(refusedHops.map(([, why]) => why))];
    throw new LuoError('EINVAL', `${refusedHops.length} host(s) cannot live-update to ${target.name} (luo plan): ${kinds.join('; ')}; set policy.allowColdBoot to let them fall back to a cold boot`);
  }
  const waves: WaveSpec[] = spec.policy.safeMode && (spec.waves[0]!.hosts ?? 2) > 1 ? [{ name: 'safe-mode', hosts: 1, maxConcurrent: 1, maxFailures: 0, soakMs: spec.waves[0]!.soakMs }, ...spec.waves] : [...spec.waves];
  const out: PlannedWave[] = [];
  let next = 0;
  for (const [i, w] of waves.entries()) {
    const left = selected.length - next;
    const n = Math.min(left, w.hosts ?? (w.percent !== undefined ? Math.ceil((w.percent / 100) * selected.length) : left));
    const ids = selected.slice(next, next + n).map((h) => h.id);
    next += n;
    if (!ids.length) throw new LuoError('EINVAL', `wave ${i} "${w.name}" gets no host (${selected.length} selected, the earlier waves took them)`);
    const maxFailures = w.maxFailures ?? (w.maxFailurePct !== undefined ? Math.floor((w.maxFailurePct / 100) * ids.length) : 0);
    out.push({ name: w.name, hosts: ids, maxConcurrent: w.maxConcurrent, maxFailures, soakMs: w.soakMs });
  }
  if (next < selected.length) throw new LuoError('EINVAL', `${selected.length - next} selected host(s) are in no wave: give the last wave no "hosts" or "percent" to take the rest`);
  return { spec, waves: out, from: Object.fromEntries(selected.map((h) => [h.id, findRelease(h.release)!.name])), coldBoot, createdAt: now };
}
