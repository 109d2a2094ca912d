/**
 * Why a live update did not go through, as an agent can learn it: the errnos of its own calls and
 * the kernel log it reads (/dev/kmsg) in the kernel it woke up in — never kernel internals. Names the
 * layer that refused (the old kernel's reboot path, KHO, LUO, the file handlers) and the log line that
 * says why, in the terms `luo plan` uses.
 */
import type { ErrnoName } from '../errno.ts';

export const REFUSING_LAYERS = ['kexec', 'KHO', 'LUO', 'files', 'agent'] as const;
export type RefusingLayer = (typeof REFUSING_LAYERS)[number];

export interface Diagnosis {
  readonly layer: RefusingLayer;
  readonly reason: string;
  /** The kernel log line it rests on, when there is one. */
  readonly kmsg?: string;
}

export interface ObservedError {
  readonly step: string;
  readonly errno?: ErrnoName;
  readonly message: string;
}

const RULES: ReadonlyArray<{ re: RegExp; layer: RefusingLayer; says: string }> = [
  { re: /KHO: .*(incompatible|failed to get preserved memory map|preserved-memory-map is 0)/, layer: 'KHO', says: 'the new kernel did not accept the KHO hand-over' },
  { re: /KHO: disabling KHO revival/, layer: 'KHO', says: 'the new kernel did not accept the KHO hand-over' },
  { re: /luo: failed to restore the incoming live-update state/, layer: 'LUO', says: "LUO's early startup failed" },
  { re: /No registered handler for compatible|no registered handler for compatible/, layer: 'files', says: 'a preserved file has no handler in the new kernel' },
  { re: /failed to deserialize incoming sessions/, layer: 'files', says: 'the sessions could not be restored' },
];

/** The first error decides; the kernel log of the new kernel says which layer it came from. */
export function diagnose(errors: readonly ObservedError[], kmsg: readonly string[] | undefined): Diagnosis | undefined {
  const first = errors[0];
  if (!first) return undefined;
  if (first.step === 'kexec') {
    // an errno: the old kernel's reboot path refused; none: the new kernel panicked before userspace
    if (first.errno) return { layer: 'kexec', reason: `the old kernel refused the kexec: ${first.message}` };
    return { layer: /incoming tree|liveupdate|LUO|\/subsystems node/i.test(first.message) ? 'LUO' : 'kexec', reason: `the new kernel panicked: ${first.message}` };
  }
  for (const rule of RULES) {
    const line = kmsg?.find((l) => rule.re.test(l));
    if (line) return { layer: rule.layer, reason: `${rule.says} (${first.step}${first.errno ? ` ${first.errno}` : ''})`, kmsg: line };
  }
  return { layer: 'agent', reason: `${first.step}${first.errno ? ` ${first.errno}` : ''}: ${first.message}` };
}
