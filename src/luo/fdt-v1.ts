/**
 * The FDT-era LUO state: the one-page FDT under the KHO subtree "LUO". luo-v1: root compatible
 * "luo-v1" and `liveupdate-number`, a `luo-session` node pointing at the session array, and (from
 * the FLB patches on) a `luo-flb` node pointing at the FLB header page. luo-v2 (the v7 series'
 * patch 3): root compatible "luo-v2" and `luo-abi-header`, the address of a 24-byte luo_ser holding
 * the number and both addresses. Values are native-endian u64. The readers make exactly the checks
 * of luo_early_startup (luo_core.c @cab056f2, and as patch 3 left it), luo_session_setup_incoming
 * (luo_session.c @7f790dd) and luo_flb_setup_incoming (luo_flb.c @cab056f2).
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import {
  LUO_FDT_ABI_HEADER, LUO_FDT_COMPATIBLE_V1, LUO_FDT_COMPATIBLE_V2, LUO_FDT_FLB_COMPATIBLE, LUO_FDT_FLB_HEADER, LUO_FDT_FLB_NODE, LUO_FDT_LIVEUPDATE_NUM, LUO_FDT_SESSION_COMPATIBLE,
  LUO_FDT_SESSION_HEADER, LUO_FDT_SESSION_NODE,
} from '../abi/luo.ts';
import { Fdt } from '../fdt/ro.ts';
import { FdtSw } from '../fdt/sw.ts';
import { SUBSYSTEMS_COMPATIBLE, subsystemsOfNode, writeSubsystemsNode } from './subsystems.ts';

/** LUO_SUBSYSTEMS_NODE_NAME of the seeds' luo_subsystems.c. */
export const SUBSYSTEMS_NODE = 'subsystems';

export interface LuoFdtV1 {
  readonly liveupdateNum: bigint;
  readonly sessionHeaderPa: bigint;
  /** Absent when the release has no FLB node. */
  readonly flbHeaderPa?: bigint;
  /** The seeds' `subsystems` node: name -> u64 (absent: no node). */
  readonly subsystems?: ReadonlyArray<readonly [string, bigint]>;
}

/** What the incoming FDT says of a `subsystems` node. */
export type SubsystemsNode = { readonly kind: 'absent' } | { readonly kind: 'incompatible' } | { readonly kind: 'ok'; readonly data: Map<string, bigint> };

/** luo_fdt_setup: writes the FDT into `page` (fdt_create over the whole page); returns fdt_totalsize. */
export function writeLuoFdtV1(page: Uint8Array, v: LuoFdtV1): number {
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
  if (v.subsystems) {
    // luo_subsystems_fdt_setup: node "subsystems", compatible, one u64 per subsystem
    sw.beginNode(SUBSYSTEMS_NODE);
    writeSubsystemsNode(sw, v.subsystems);
    sw.endNode();
  }
  sw.endNode();
  return finishInto(sw, page);
}

function finishInto(sw: FdtSw, page: Uint8Array): number {
  page.set(sw.finish().subarray(0, PAGE_SIZE));
  return sw.blob().length;
}

/** luo_fdt_setup of luo-v2: compatible and luo-abi-header; returns fdt_totalsize. */
export function writeLuoFdtV2(page: Uint8Array, luoSerPa: bigint): number {
  const sw = new FdtSw(PAGE_SIZE);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', LUO_FDT_COMPATIBLE_V2);
  sw.propertyLeU64(LUO_FDT_ABI_HEADER, luoSerPa);
  sw.endNode();
  return finishInto(sw, page);
}

const u64Of = (v: Uint8Array | undefined): bigint | undefined => (v && v.length === 8 ? new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true) : undefined);

function openLuoFdt(blob: Uint8Array, compatible: string): Fdt {
  let fdt: Fdt;
  try {
    fdt = Fdt.open(blob);
  } catch (e) {
    throw new LuoError('EINVAL', `FDT 'LUO' is invalid: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!fdt.nodeCheckCompatible(0, compatible)) throw new LuoError('EINVAL', `FDT 'LUO' is incompatible with '${compatible}'`);
  return fdt;
}

/** The incoming luo-v2 FDT: the address of its luo_ser (EINVAL for a wrong compatible or header property). */
export function readLuoFdtV2(blob: Uint8Array): bigint {
  const fdt = openLuoFdt(blob, LUO_FDT_COMPATIBLE_V2);
  const v = fdt.getProp(0, LUO_FDT_ABI_HEADER);
  const pa = u64Of(v);
  if (pa === undefined) throw new LuoError('EINVAL', `Unable to get ABI header '${LUO_FDT_ABI_HEADER}' [${v?.length ?? 0}]`);
  return pa;
}

/** luo_subsystems_startup's view of the incoming FDT's `subsystems` node (EINVAL for a value that is not a u64). */
export function readSubsystemsNode(blob: Uint8Array): SubsystemsNode {
  const fdt = Fdt.open(blob);
  const off = fdt.subnodeOffset(0, SUBSYSTEMS_NODE);
  if (off < 0) return { kind: 'absent' };
  if (!fdt.nodeCheckCompatible(off, SUBSYSTEMS_COMPATIBLE)) return { kind: 'incompatible' };
  return { kind: 'ok', data: subsystemsOfNode(fdt, off) };
}

/** The incoming FDT: EINVAL for a wrong compatible or property, ENOENT for a missing FLB node (when `flb`). */
export function readLuoFdtV1(blob: Uint8Array, flb: boolean): LuoFdtV1 {
  const fdt = openLuoFdt(blob, LUO_FDT_COMPATIBLE_V1);
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
