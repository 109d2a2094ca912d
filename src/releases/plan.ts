/**
 * `luo plan`: what a kernel of release TO does with the hand-over a kernel of release FROM leaves,
 * layer by layer in the order the new kernel boots (KHO's root, LUO's early startup, the files at the
 * first open of /dev/liveupdate), decided from the two releases' ABI facts alone; and, when the hop
 * cannot live-update, the shortest chain of releases that can, hop by hop. The matrix tests run every
 * pair luo can boot and check each prediction against what the simulated kernels do.
 */
import { blockCapacity, LuoFileSer, LuoSessionSer } from '../abi/luo.ts';
import { type Release, type ReleaseAbi, RELEASES } from '../abi/releases.ts';

export type Layer = 'KHO' | 'LUO' | 'files';

export type Verdict =
  /** Sessions and files are restored. */
  | { readonly kind: 'live-update' }
  /** The new kernel does not accept the hand-over: it boots as after a cold boot, every session lost. */
  | { readonly kind: 'no-handover'; readonly layer: 'KHO'; readonly reason: string; readonly log: string }
  /**
   * LUO's early startup fails: a panic (or, with luo.restore_fail=disable, no /dev/liveupdate;
   * `panicsAlways` when the new kernel calls panic() itself and the policy cannot help).
   */
  | { readonly kind: 'restore-failed'; readonly layer: 'LUO'; readonly errno: 'EINVAL' | 'ENOENT'; readonly reason: string; readonly log: string; readonly panicsAlways?: true }
  /** The kernel boots but the first open of /dev/liveupdate fails (EIO) once a file was preserved. */
  | { readonly kind: 'open-failed'; readonly layer: 'files'; readonly errno: 'EIO'; readonly reason: string; readonly log: string }
  /** Sessions come back without the files no handler claims: RETRIEVE_FD of them is ENOENT. */
  | { readonly kind: 'files-lost'; readonly layer: 'files'; readonly errno: 'ENOENT'; readonly reason: string; readonly log: string }
  /** The strings agree but the layouts do not: the new kernel misreads the hand-over. */
  | { readonly kind: 'undefined'; readonly layer: 'LUO'; readonly reason: string };

export interface HopPlan {
  readonly from: string;
  readonly to: string;
  readonly verdict: Verdict;
  /** What else changes for the agent (uAPI, limits). */
  readonly notes: readonly string[];
}

export interface Plan extends HopPlan {
  /** When the direct hop cannot live-update: the shortest chain of hops that can (from ... to), if any. */
  readonly chain: readonly string[] | null;
}

/** What the kernel of `to` does with a hand-over written by the kernel of `from`. */
export function verdictOf(from: ReleaseAbi, to: ReleaseAbi): Verdict {
  // kho_populate: the root's compatible must be exactly this kernel's (fdt_node_check_compatible)
  if (from.kho.compatible !== to.kho.compatible) {
    return {
      kind: 'no-handover', layer: 'KHO',
      reason: `the new kernel's KHO accepts only "${to.kho.compatible}" roots and finds "${from.kho.compatible}": it disables KHO revival and the preserved memory is freed`,
      log: `handover FDT is incompatible with '${to.kho.compatible}'`,
    };
  }
  const a = from.luo;
  const b = to.luo;
  // luo_early_startup: the "LUO" subtree in this kernel's format and version
  if (a.format !== b.format || a.compatible !== b.compatible) {
    const found = a.format === 'raw' ? `a raw luo_ser "${a.compatible}"` : `an FDT "${a.compatible}"`;
    const want = b.format === 'raw' ? `a raw luo_ser "${b.compatible}"` : `an FDT "${b.compatible}"`;
    return {
      kind: 'restore-failed', layer: 'LUO', errno: 'EINVAL',
      reason: `the "LUO" subtree is ${found}, the new kernel reads ${want}`,
      log: b.format === 'raw' ? `"LUO" blob compatible is "${a.compatible}", this kernel speaks "${b.compatible}"` : `FDT 'LUO' is incompatible with '${b.compatible}'`,
    };
  }
  if (a.format === 'fdt' && b.format === 'fdt' && b.flb && !a.flb) {
    // luo_flb_setup_incoming (luo_flb.c @cab056f2): a missing node is -ENOENT, and early startup fails
    return { kind: 'restore-failed', layer: 'LUO', errno: 'ENOENT', reason: 'the new kernel requires a "luo-flb" node the old one did not write', log: 'Unable to get FLB node [luo-flb]' };
  }
  if (a.format === 'fdt' && b.format === 'fdt' && b.subsystems && !a.subsystems) {
    // luo_subsystems_startup (the seeds' luo_subsystems.c): no node is panic(), whatever the policy
    return {
      kind: 'restore-failed', layer: 'LUO', errno: 'ENOENT', panicsAlways: true,
      reason: 'the new kernel requires a "subsystems" node in the LUO FDT the old one did not write, and panics without it (luo.restore_fail cannot help)',
      log: 'Failed to find /subsystems node',
    };
  }
  if (a.format === 'raw' && b.format === 'raw' && (a.sessions !== b.sessions || a.files !== b.files)) {
    return { kind: 'undefined', layer: 'LUO', reason: `both say "${a.compatible}" but one keeps entries in arrays, the other in blocks: nothing notices, the new kernel misreads the hand-over` };
  }
  // Blocks of another size under the same string (the seeds' 2-page blocks): the new kernel reads each
  // block's header and its entries from the start, so it works while no block holds more than the new
  // kernel's blocks can (notesOf says the limit).
  // luo_file_deserialize at the first open: every file needs a handler with its compatible
  if (from.memfd !== to.memfd && b.format === 'fdt') {
    // the FDT era's luo_session_deserialize ignored its files' error (luo_session.c @7f790dd)
    return {
      kind: 'files-lost', layer: 'files', errno: 'ENOENT',
      reason: `memfds preserved by "${from.memfd}" have no handler in the new kernel ("${to.memfd}"): their sessions come back without them`,
      log: `No registered handler for compatible '${from.memfd}'`,
    };
  }
  if (from.memfd !== to.memfd) {
    return {
      kind: 'open-failed', layer: 'files', errno: 'EIO',
      reason: `memfds preserved by "${from.memfd}" have no handler in the new kernel ("${to.memfd}"): opening /dev/liveupdate fails once any was preserved`,
      log: `no registered handler for compatible "${from.memfd}"`,
    };
  }
  return { kind: 'live-update' };
}

function notesOf(from: ReleaseAbi, to: ReleaseAbi): string[] {
  const n: string[] = [];
  const a = from.luo;
  const b = to.luo;
  if (a.format === 'raw' && b.format === 'raw' && a.compatible === b.compatible && a.blockPages > b.blockPages) {
    const cap = (size: number, pages: number): number => blockCapacity(size, pages);
    n.push(
      `the old kernel's ${a.blockPages}-page blocks hold up to ${cap(LuoSessionSer.size, a.blockPages)} sessions or ${cap(LuoFileSer.size, a.blockPages)} files each; `
      + `the new kernel accepts at most ${cap(LuoSessionSer.size, b.blockPages)} and ${cap(LuoFileSer.size, b.blockPages)} per block: a fuller session block is EINVAL at early boot (a panic), a fuller file block EIO at the first open`,
    );
  }
  if ((from.memfd === 'memfd-v1' || to.memfd === 'memfd-v1') && from.memfd === to.memfd) n.push('memfd-v1 does not hand seals over: retrieved memfds come back with only F_SEAL_SEAL');
  if (from.uapi.getName && !to.uapi.getName) n.push('the new kernel has no LIVEUPDATE_SESSION_GET_NAME');
  if (!from.uapi.getName && to.uapi.getName) n.push('the new kernel adds LIVEUPDATE_SESSION_GET_NAME and checks session directions');
  if (to.limits.sessions < from.limits.sessions) n.push(`the new kernel holds at most ${to.limits.sessions} outgoing sessions (${to.limits.sessionsErrno} beyond)`);
  if (to.limits.filesPerSession < from.limits.filesPerSession) n.push(`the new kernel holds at most ${to.limits.filesPerSession} files per session (ENOSPC beyond)`);
  return n;
}

export function planHop(from: Release, to: Release): HopPlan {
  return { from: from.name, to: to.name, verdict: verdictOf(from.abi, to.abi), notes: notesOf(from.abi, to.abi) };
}

/** The shortest chain of live-update hops from `from` to `to` through the catalogue (null: none). */
export function chainOf(from: Release, to: Release, releases: readonly Release[] = RELEASES): string[] | null {
  const prev = new Map<string, string>([[from.name, '']]);
  const queue = [from];
  while (queue.length) {
    const r = queue.shift()!;
    if (r.name === to.name) {
      const path = [r.name];
      for (let p = prev.get(r.name)!; p; p = prev.get(p)!) path.unshift(p);
      return path;
    }
    for (const n of releases) {
      if (prev.has(n.name) || verdictOf(r.abi, n.abi).kind !== 'live-update') continue;
      prev.set(n.name, r.name);
      queue.push(n);
    }
  }
  return null;
}

export function plan(from: Release, to: Release, releases: readonly Release[] = RELEASES): Plan {
  const hop = planHop(from, to);
  return { ...hop, chain: hop.verdict.kind === 'live-update' ? [from.name, to.name] : chainOf(from, to, releases) };
}
