/**
 * The FDT-era LUO state (luo-v1): the one-page FDT under the KHO subtree "LUO" — root compatible
 * "luo-v1" and `liveupdate-number`, a `luo-session` node pointing at the session array, and (from
 * the FLB patches on) a `luo-flb` node pointing at the FLB header page. Values are native-endian u64.
 * The reader makes exactly the checks of luo_early_startup (luo_core.c @cab056f2),
 * luo_session_setup_incoming (luo_session.c @7f790dd) and luo_flb_setup_incoming (luo_flb.c @cab056f2).
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import {
  LUO_FDT_COMPATIBLE_V1, LUO_FDT_FLB_COMPATIBLE, LUO_FDT_FLB_HEADER, LUO_FDT_FLB_NODE, LUO_FDT_LIVEUPDATE_NUM, LUO_FDT_SESSION_COMPATIBLE,
  LUO_FDT_SESSION_HEADER, LUO_FDT_SESSION_NODE,
} from '../abi/luo.ts';
import { Fdt } from '../fdt/ro.ts';
import { FdtSw } from '../fdt/sw.ts';

export interface LuoFdtV1 {
  readonly liveupdateNum: bigint;
  readonly sessionHeaderPa: bigint;
  /** Absent when the release has no FLB node. */
  readonly flbHeaderPa?: bigint;
}

/** luo_fdt_setup: writes the FDT into `page` (fdt_create over the whole page). */
export function writeLuoFdtV1(page: Uint8Array, v: LuoFdtV1): void {
  const sw = new FdtSw(PAGE_SIZE);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', LUO_FDT_COMPATIBLE_V1);
  sw.propertyLeU64(LUO_FDT_LIVEUPDATE_NUM, v.liveupdateNum);
  sw.beginNode(LUO_FDT_SESSION_NODE);
  sw.propertyString('compatible', LUO_FDT_SESSION_COMPATIBLE);
  sw.propertyLeU64(LUO_FDT_SESSION_HEADER, v.sessionHeaderPa);
  sw.endNode();
  if (v.flbHeaderPa !== undefined) {
    sw.beginNode(LUO_FDT_FLB_NODE);
    sw.propertyString('compatible', LUO_FDT_FLB_COMPATIBLE);
    sw.propertyLeU64(LUO_FDT_FLB_HEADER, v.flbHeaderPa);
    sw.endNode();
  }
  sw.endNode();
  page.set(sw.finish().subarray(0, PAGE_SIZE));
}

const u64Of = (v: Uint8Array | undefined): bigint | undefined => (v && v.length === 8 ? new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true) : undefined);

/** The incoming FDT: EINVAL for a wrong compatible or property, ENOENT for a missing FLB node (when `flb`). */
export function readLuoFdtV1(blob: Uint8Array, flb: boolean): LuoFdtV1 {
  let fdt: Fdt;
  try {
    fdt = Fdt.open(blob);
  } catch (e) {
    throw new LuoError('EINVAL', `FDT 'LUO' is invalid: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!fdt.nodeCheckCompatible(0, LUO_FDT_COMPATIBLE_V1)) throw new LuoError('EINVAL', `FDT 'LUO' is incompatible with '${LUO_FDT_COMPATIBLE_V1}'`);
  const num = u64Of(fdt.getProp(0, LUO_FDT_LIVEUPDATE_NUM));
  if (num === undefined) throw new LuoError('EINVAL', `Unable to get live update number '${LUO_FDT_LIVEUPDATE_NUM}'`);
  const s = fdt.subnodeOffset(0, LUO_FDT_SESSION_NODE);
  if (s < 0) throw new LuoError('EINVAL', `Unable to get session node: [${LUO_FDT_SESSION_NODE}]`);
  if (!fdt.nodeCheckCompatible(s, LUO_FDT_SESSION_COMPATIBLE)) throw new LuoError('EINVAL', `Session node incompatible [${LUO_FDT_SESSION_COMPATIBLE}]`);
  const sessionHeaderPa = u64Of(fdt.getProp(s, LUO_FDT_SESSION_HEADER));
  if (sessionHeaderPa === undefined) throw new LuoError('EINVAL', `Unable to get session header '${LUO_FDT_SESSION_HEADER}'`);
  if (!flb) return { liveupdateNum: num, sessionHeaderPa };
  const f = fdt.subnodeOffset(0, LUO_FDT_FLB_NODE);
  if (f < 0) throw new LuoError('ENOENT', `Unable to get FLB node [${LUO_FDT_FLB_NODE}]`);
  if (!fdt.nodeCheckCompatible(f, LUO_FDT_FLB_COMPATIBLE)) throw new LuoError('EINVAL', `FLB node is incompatible with '${LUO_FDT_FLB_COMPATIBLE}'`);
  const flbHeaderPa = u64Of(fdt.getProp(f, LUO_FDT_FLB_HEADER));
  if (flbHeaderPa === undefined) throw new LuoError('EINVAL', `Unable to get FLB header property '${LUO_FDT_FLB_HEADER}'`);
  return { liveupdateNum: num, sessionHeaderPa, flbHeaderPa };
}
