/**
 * The FDT-era LUO hand-over: the "LUO" sub-FDT read with the same model the kernel path uses
 * (luo/fdt-v1.ts) — luo-v1 (6.19 to kho-v3) with its nodes, or luo-v2 with the luo_ser its
 * luo-abi-header names — then the session array ({u64 count} and 80-byte entries over 16 pages) and
 * each session's file array (64-byte entries over 2 pages), which luo-v3 kept too.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { LUO_FDT_ABI_HEADER, LUO_FDT_COMPATIBLE_V1, LUO_FDT_COMPATIBLE_V2, LUO_FDT_FLB_NODE, LuoSerV2 } from '../abi/luo.ts';
import { Fdt } from '../fdt/ro.ts';
import { arrayCapacity, type ArrayShape, FILE_ARRAY, SESSION_ARRAY } from '../luo/entry-array.ts';
import { readLuoFdtV1, readLuoFdtV2, readSubsystemsNode } from '../luo/fdt-v1.ts';
import type { Chain } from './chain.ts';
import type { Ctx } from './context.ts';
import { hex, type LuoSerInfo } from './report.ts';

/** Decodes a "LUO" sub-FDT at `pa` by its root compatible; undefined (reported) when no kernel of that era would take it. */
export function decodeLuoFdt(ctx: Ctx, blob: Uint8Array, pa: bigint | undefined, where: string): LuoSerInfo | undefined {
  let compat: string | undefined;
  try {
    compat = Fdt.open(blob).getPropStrings(0, 'compatible')[0];
  } catch {
    // the luo-v1 reader says what is wrong with it
  }
  return compat === LUO_FDT_COMPATIBLE_V2 ? decodeLuoFdtV2(ctx, blob, pa, where) : decodeLuoFdtV1(ctx, blob, pa, where);
}

/** luo-v2: the FDT, then the 24-byte luo_ser at its luo-abi-header (read from memory when there is any). */
function decodeLuoFdtV2(ctx: Ctx, blob: Uint8Array, pa: bigint | undefined, where: string): LuoSerInfo | undefined {
  let header: bigint;
  try {
    header = readLuoFdtV2(blob);
  } catch (e) {
    ctx.problems.error(where, `${e instanceof LuoError ? e.detail : String(e)}: the kernel refuses it (EINVAL at LUO's early startup); not decoded further`);
    return undefined;
  }
  const sw = `luo_ser @${hex(header)} (luo-abi-header)`;
  const bytes = ctx.read(header, LuoSerV2.size, sw, LUO_FDT_ABI_HEADER);
  if (!bytes) return undefined;
  ctx.checkPreserved(header, LuoSerV2.size, sw, 'luo_ser');
  const v = LuoSerV2.decode(bytes);
  return { ...(pa !== undefined ? { pa } : {}), size: BigInt(blob.length), compatible: LUO_FDT_COMPATIBLE_V2, header, liveupdateNum: v.liveupdate_num, sessionsPa: v.sessions_pa, flbsPa: v.flbs_pa };
}

/** Decodes the luo-v1 sub-FDT at `pa`; undefined (reported) when the kernel of that era would refuse it. */
function decodeLuoFdtV1(ctx: Ctx, blob: Uint8Array, pa: bigint | undefined, where: string): LuoSerInfo | undefined {
  let flb = false;
  try {
    flb = Fdt.open(blob).subnodeOffset(0, LUO_FDT_FLB_NODE) >= 0;
  } catch {
    // readLuoFdtV1 says what is wrong with it
  }
  try {
    const v = readLuoFdtV1(blob, flb);
    if (!flb) ctx.problems.info(where, 'no luo-flb node: written by a release before FLBs (6.19); a 7.0 kernel refuses it (ENOENT)');
    const node = readSubsystemsNode(blob);
    if (node.kind === 'incompatible') ctx.problems.error(where, `its "subsystems" node is not "subsystems-v1": a kernel with the seeds' subsystems panics on it`);
    return {
      ...(pa !== undefined ? { pa } : {}), size: BigInt(blob.length), compatible: LUO_FDT_COMPATIBLE_V1, liveupdateNum: v.liveupdateNum, sessionsPa: v.sessionHeaderPa, flbsPa: v.flbHeaderPa ?? 0n,
      ...(node.kind === 'ok' ? { subsystemsNode: Object.fromEntries(node.data) } : {}),
    };
  } catch (e) {
    ctx.problems.error(where, `${e instanceof LuoError ? e.detail : String(e)}: the kernel refuses it (EINVAL at LUO's early startup); not decoded further`);
    return undefined;
  }
}

/**
 * The entries of a fixed array at `pa`: `count` of them, or (session array) the count in its first
 * u64. A count past the capacity is reported and cut (the kernel of that era did not check).
 */
export function readArray(ctx: Ctx, pa: bigint, shape: ArrayShape, label: string, count?: bigint): Chain {
  const where = `${label} @${hex(pa)}`;
  const size = shape.pages * PAGE_SIZE;
  if (pa % BigInt(PAGE_SIZE) !== 0n) ctx.problems.error(where, 'not page aligned');
  const bytes = ctx.read(pa, size, where, label);
  if (!bytes) return { blocks: [], entries: [] };
  ctx.checkPreserved(pa, size, where, label);
  const n = count ?? new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  const cap = arrayCapacity(shape);
  if (n > BigInt(cap)) ctx.problems.error(where, `count ${n} is more than the ${cap} entries it holds: the kernel would read past it`);
  const k = Number(n > BigInt(cap) ? BigInt(cap) : n);
  const entries = Array.from({ length: k }, (_, i) => {
    const off = shape.header + i * shape.entrySize;
    return { pa: pa + BigInt(off), bytes: bytes.subarray(off, off + shape.entrySize) };
  });
  return { blocks: [{ index: 0, pa, next: 0n, count: n, capacity: cap }], entries };
}

export const sessionArray = (ctx: Ctx, pa: bigint): Chain => readArray(ctx, pa, SESSION_ARRAY, 'session array');
export const fileArray = (ctx: Ctx, pa: bigint, count: bigint, session: string): Chain => readArray(ctx, pa, FILE_ARRAY, `session "${session}" file array`, count);
