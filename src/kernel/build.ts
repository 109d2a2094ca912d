/**
 * How a simulated kernel was built: its `uname -r`, the release ABI its code speaks (the catalogue
 * in src/abi/releases.ts, every entry of which luo runs) and a few Kconfig facts.
 */
import { type ErrnoName, LuoError } from '../errno.ts';
import type { KhoProfile } from '../abi/kho.ts';
import type { HandlerPlugin } from '../luo/plugin.ts';
import { DEFAULT_RELEASE, findRelease, type Release, type ReleaseAbi, RELEASES } from '../abi/releases.ts';

export interface KernelBuild {
  /** `uname -r` (kexec-metadata's previous_release). */
  readonly release: string;
  /** What the code of this kernel writes and accepts across a kexec. */
  readonly abi: ReleaseAbi;
  /** CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT (the selftests' config sets it). */
  readonly khoEnableDefault: boolean;
  /** Bytes of the kernel image (text, data, bss) reserved at boot. */
  readonly imageSize: number;
  /** File handler plugins built into this kernel (registered at late init, after memfd's). */
  readonly handlers?: readonly HandlerPlugin[];
  /** CONFIG_LIVEUPDATE_TEST: the test module's three FLBs on every handler (luo/test-flbs.ts). */
  readonly liveupdateTest?: boolean;
  /** Subsystems built in (a driver's liveupdate_register_subsystem at init): each hands over its `data` at the freeze. */
  readonly subsystems?: readonly SubsystemDecl[];
}

/** A declared subsystem: its name and the u64 its freeze hands over (what its prepare computes). */
export interface SubsystemDecl {
  readonly name: string;
  readonly data: bigint;
  /** Its prepare or freeze fails with this errno (the first `times` calls in each kernel; default every call). */
  readonly fail?: SubsystemFailure;
}

/** The callbacks of a subsystem that return an error in the kernel (cancel, boot and finish cannot fail). */
export interface SubsystemFailure {
  readonly op: 'prepare' | 'freeze';
  readonly errno: ErrnoName;
  readonly times?: number;
}

export function buildOf(r: Release): KernelBuild {
  return { release: r.uname, abi: r.abi, khoEnableDefault: true, imageSize: 32 << 20 };
}

export const DEFAULT_BUILD: KernelBuild = buildOf(findRelease(DEFAULT_RELEASE)!);

/** The build of a catalogue release by name (or uname); ENOENT naming the known ones. */
export function buildForRelease(name: string): KernelBuild {
  const r = findRelease(name);
  if (!r) throw new LuoError('ENOENT', `unknown release "${name}" (known: ${RELEASES.map((x) => x.name).join(', ')}; see luo releases)`);
  return buildOf(r);
}

/** A build whose KHO is the old bitmap tracker or the radix one (the rest of its ABI unchanged). */
export function withKhoProfile(b: KernelBuild, profile: KhoProfile): KernelBuild {
  return { ...b, abi: { ...b.abi, kho: { family: profile, compatible: profile } } };
}

/**
 * The KHO implementation a build runs: kho-v1's bitmaps; kho-v2's radix tree with sub-FDTs by
 * preserved-data alone (no finalize: "kho: remove finalize state and clients" came before the radix
 * tree); or the radix tree with raw subtrees (preserved-data and blob-size) and kexec-metadata that
 * kho-v3 (linux-mm @65660710) and kho-v4 share — kho-v4 only bumped the string (kernel-abi.md 6.1).
 */
export function khoProfileOf(b: KernelBuild): KhoProfile {
  const f = b.abi.kho.family;
  return f === 'kho-v3' ? 'kho-v4' : f;
}

/**
 * The build of `release` with what `from` has built in besides its ABI (handler plugins,
 * CONFIG_LIVEUPDATE_TEST, declared subsystems): a kexec into another release keeps the machine's drivers.
 */
export function releaseLike(release: string, from: KernelBuild): KernelBuild {
  const b = buildForRelease(release);
  return { ...b, ...(from.handlers ? { handlers: from.handlers } : {}), ...(from.liveupdateTest ? { liveupdateTest: true } : {}), ...(from.subsystems ? { subsystems: from.subsystems } : {}) };
}

/** The same build with these file handler plugins built in (replacing any it had). */
export function withHandlers(b: KernelBuild, handlers: readonly HandlerPlugin[]): KernelBuild {
  return { ...b, handlers };
}

/** A short label: "kho-v4, luo-v5". */
export const abiLabel = (abi: ReleaseAbi): string => `${abi.kho.compatible}, ${abi.luo.compatible}`;
