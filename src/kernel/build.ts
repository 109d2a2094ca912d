/**
 * How a simulated kernel was built: its `uname -r`, the release ABI its code speaks (the catalogue
 * in src/abi/releases.ts) and a few Kconfig facts. Which release ABIs luo can run today is said here:
 * the others are listed (luo releases, luo plan) but refused at boot with the layer still missing.
 */
import { LuoError } from '../errno.ts';
import type { KhoProfile } from '../abi/kho.ts';
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
 * The KHO implementation a build runs: kho-v1's bitmaps, or the radix tree with raw subtrees
 * (preserved-data and blob-size) and kexec-metadata that kho-v3 (linux-mm @65660710) and kho-v4 share —
 * kho-v4 only bumped the string (kernel-abi.md 6.1).
 */
export function khoProfileOf(b: KernelBuild): KhoProfile {
  const f = b.abi.kho.family;
  if (f === 'kho-v1' || f === 'kho-v4') return f;
  if (f === 'kho-v3') return 'kho-v4';
  throw new LuoError('EOPNOTSUPP', `KHO ${f} is not modelled yet`);
}

/**
 * Why luo cannot run a kernel of this ABI yet (undefined: it can). A kho-v1 build with a raw LUO
 * runs with live update disabled, as such a kernel would (it cannot describe a raw subtree).
 */
export function unsupportedAbi(abi: ReleaseAbi): string | undefined {
  if (abi.kho.family === 'kho-v2') return `KHO ${abi.kho.family} (${abi.kho.compatible}) is not modelled yet`;
  const l = abi.luo;
  if (l.format === 'fdt') return undefined;
  if (l.format !== 'raw') return `LUO ${l.compatible} (an FDT with luo-abi-header) is not modelled yet`;
  if (l.sessions !== 'blocks' || l.files !== 'blocks') return `LUO ${l.compatible} (sessions in ${l.sessions === 'blocks' ? 'blocks' : 'an array'}, files in ${l.files === 'blocks' ? 'blocks' : 'arrays'}) is not modelled yet`;
  if (l.blockPages !== 1) return `LUO blocks of ${l.blockPages} pages are not modelled yet`;
  return undefined;
}

/** A short label: "kho-v4, luo-v5". */
export const abiLabel = (abi: ReleaseAbi): string => `${abi.kho.compatible}, ${abi.luo.compatible}`;
