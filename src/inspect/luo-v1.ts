/**
 * The FDT-era LUO hand-over (luo-v1, releases 6.19 and 7.0): the "LUO" sub-FDT read with the same
 * model the kernel path uses (luo/fdt-v1.ts), then the session array ({u64 count} and 80-byte
 * entries over 16 pages) and each session's file array (64-byte entries over 2 pages).
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { LUO_FDT_COMPATIBLE_V1, LUO_FDT_FLB_NODE } from '../abi/luo.ts';
import { Fdt } from '../fdt/ro.ts';
import { arrayCapacity, type ArrayShape, FILE_ARRAY, SESSION_ARRAY } from '../luo/entry-array.ts';
import { readLuoFdtV1 } from '../luo/fdt-v1.ts';
import type { Chain } from './chain.ts';
import type { Ctx } from './context.ts';
import { hex, type LuoSerInfo } from './report.ts';

/** Decodes the "LUO" sub-FDT at `pa`; undefined (reported) when the kernel of that era would refuse it. */
export function decodeLuoFdtV1(ctx: Ctx, blob: Uint8Array, pa: bigint | undefined, where: string): LuoSerInfo | undefined {
  let flb = false;
  try {
    flb = Fdt.open(blob).subnodeOffset(0, LUO_FDT_FLB_NODE) >= 0;
  } catch {
    // readLuoFdtV1 says what is wrong with it
  }
  try {
    const v = readLuoFdtV1(blob, flb);
    if (!flb) ctx.problems.info(where, 'no luo-flb node: written by a release before FLBs (6.19); a 7.0 kernel refuses it (ENOENT)');
    return { ...(pa !== undefined ? { pa } : {}), size: BigInt(blob.length), compatible: LUO_FDT_COMPATIBLE_V1, liveupdateNum: v.liveupdateNum, sessionsPa: v.sessionHeaderPa, flbsPa: v.flbHeaderPa ?? 0n };
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
