/**
 * One host's result in a campaign, as the runner measured it (from the agent's report) or as the
 * controller recorded a timeout; and whether the campaign's policy counts it as a failure.
 */
export type HostOutcome = 'updated' | 'fell-back' | 'refused' | 'timed-out' | 'verify-failed';

export interface HostResult {
  readonly host: string;
  readonly outcome: HostOutcome;
  readonly from: string;
  readonly to: string;
  /** Kexec to workloads handed back, as the agent measured it (absent for a timeout). */
  readonly blackoutMs?: number;
  /** The agent's phases (freeze and serialize, kexec, boot, restore, retrieve, verify, finish). */
  readonly phases?: Readonly<Record<string, number>>;
  /** Why it did not update: the refusing layer and the reason the agent learned. */
  readonly reason?: string;
  readonly layer?: string;
  /** A fall-back by a kexec without hand-over (policy.fallback fresh-kexec), not a cold boot. */
  readonly freshKexec?: true;
  readonly wave: number;
  readonly at: number;
  /** Who wrote it: the host's runner, or the controller (timeouts). */
  readonly by: string;
}

/** What a campaign counts as a failure. */
export const FAILURE_KINDS = ['fell-back', 'refused', 'timed-out', 'verify-failed', 'slo'] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

export function isFailure(r: HostResult, failOn: readonly FailureKind[], sloMs: number | undefined): boolean {
  if (r.outcome === 'updated') return sloMs !== undefined && failOn.includes('slo') && (r.blackoutMs ?? 0) > sloMs;
  return failOn.includes(r.outcome);
}
