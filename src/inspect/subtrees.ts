/**
 * The other KHO subtrees: kexec-metadata (raw, version 1, 73 bytes), "subsystems" (an FDT,
 * subsystems-v1, one u64 per subsystem) and any FDT-format blob (memblock-v1 and others: checked
 * and its root compatible named). Readers' rules from kexec_handover.c and luo/subsystems.ts.
 */
import { KEXEC_METADATA_VERSION, KexecMetadata } from '../abi/kho.ts';
import { decodeSubsystemsFdt } from '../luo/subsystems.ts';
import type { Ctx } from './context.ts';
import { le32 } from './phys.ts';
import { type KexecMetadataInfo, hex } from './report.ts';
import { openCheckedFdt, rootCompatible } from './root.ts';

export const isFdtBlob = (b: Uint8Array): boolean => b.length >= 4 && b[0] === 0xd0 && b[1] === 0x0d && b[2] === 0xfe && b[3] === 0xed;

/** kexec-metadata: the kernel ignores it (with a warning) when short or of another version. */
export function decodeKexecMetadata(ctx: Ctx, b: Uint8Array, pa: bigint | undefined, size: bigint, where: string): KexecMetadataInfo | undefined {
  if (b.length < 4) { ctx.problems.warn(where, `blob of ${b.length} byte(s) is too small (the kernel ignores it)`); return undefined; }
  const version = le32(b, 0);
  if (version !== KEXEC_METADATA_VERSION) { ctx.problems.warn(where, `version ${version} is not ${KEXEC_METADATA_VERSION} (the kernel ignores it)`); return undefined; }
  if (b.length < KexecMetadata.size) { ctx.problems.warn(where, `blob of ${b.length} byte(s) is too small for version 1 (${KexecMetadata.size}; the kernel ignores it)`); return undefined; }
  const m = KexecMetadata.decode(b);
  if (!b.subarray(4, 69).includes(0)) ctx.problems.warn(where, 'previous_release is not NUL-terminated');
  return { ...(pa !== undefined ? { pa } : {}), size, version: m.version, previousRelease: m.previous_release, kexecCount: m.kexec_count };
}

/** The "subsystems" FDT: name -> u64. */
export function decodeSubsystems(ctx: Ctx, b: Uint8Array, where: string): Record<string, bigint> | undefined {
  if (!openCheckedFdt(b, where, ctx.problems)) return undefined;
  try {
    return Object.fromEntries(decodeSubsystemsFdt(b));
  } catch (e) {
    ctx.problems.error(where, (e as Error).message);
    return undefined;
  }
}

/** Any FDT-format subtree: full check, and its root compatible. */
export function fdtCompatible(ctx: Ctx, b: Uint8Array, where: string): string | undefined {
  const fdt = openCheckedFdt(b, where, ctx.problems);
  if (!fdt) return undefined;
  const c = rootCompatible(fdt);
  if (c === undefined) ctx.problems.warn(where, 'FDT root has no compatible string');
  return c;
}

/** Reads a sub-FDT at `pa` whose size is its header's totalsize (kho-v1 "fdt" subtrees). */
export function readFdtAt(ctx: Ctx, pa: bigint, where: string): Uint8Array | undefined {
  const hdr = ctx.read(pa, 8, where, 'fdt');
  if (!hdr) return undefined;
  if (!isFdtBlob(hdr)) { ctx.problems.error(where, `fdt ${hex(pa)} does not start with the FDT magic`); return undefined; }
  const total = new DataView(hdr.buffer, hdr.byteOffset).getUint32(4, false);
  if (total < 40 || total > 1 << 20) { ctx.problems.error(where, `FDT at ${hex(pa)} has totalsize ${total}`); return undefined; }
  return ctx.read(pa, total, where, 'fdt');
}
