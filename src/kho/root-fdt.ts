/**
 * The KHO root FDT: built once at boot with the sequential writer into one page, then edited in
 * place as subtrees come and go (open_into the same page, add/del node, setprop, pack), exactly
 * the libfdt call sequences of kernel/liveupdate/kexec_handover.c. Also reads an incoming root.
 */
import { LuoError } from '../errno.ts';
import {
  KHO_FDT_COMPATIBLE,
  type KhoProfile,
  PAGE_SIZE,
  PROP_PRESERVED_MEMORY_MAP,
  PROP_SUB_BLOB_SIZE,
  PROP_SUB_FDT_DATA,
  PROP_SUB_FDT_V1,
} from '../abi/kho.ts';
import { FdtError } from '../fdt/format.ts';
import { Fdt } from '../fdt/ro.ts';
import { FdtRw } from '../fdt/rw.ts';
import { FdtSw } from '../fdt/sw.ts';

const le64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

/** kho_out_fdt_setup: root "" with compatible and preserved-memory-map (native-endian u64). */
export function buildRootFdt(page: Uint8Array, profile: KhoProfile, memMapPa: bigint, compatible: string = KHO_FDT_COMPATIBLE[profile]): void {
  const sw = new FdtSw(PAGE_SIZE);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', compatible);
  sw.property(PROP_PRESERVED_MEMORY_MAP, le64(memMapPa));
  sw.endNode();
  page.set(sw.finish().subarray(0, PAGE_SIZE));
}

/**
 * kho_add_subtree. kho-v4: child node `name` with preserved-data then blob-size (libfdt inserts
 * each new property first, so blob-size ends up first in the blob, as on real kernels). kho-v2:
 * preserved-data alone. kho-v1: one "fdt" property. A duplicate name is EEXIST; running out of the page is ENOMEM.
 */
export function addSubtreeNode(page: Uint8Array, profile: KhoProfile, name: string, pa: bigint, size: number): void {
  const rw = FdtRw.openInto(page, page, PAGE_SIZE);
  let off: number;
  try {
    off = rw.addSubnode(0, name);
  } catch (e) {
    rw.pack();
    if (e instanceof FdtError && e.code === 'EXISTS') throw new LuoError('EEXIST', `KHO subtree "${name}" already exists`);
    throw new LuoError('ENOMEM', `KHO root FDT: cannot add "${name}": ${String(e)}`);
  }
  try {
    if (profile === 'kho-v1') {
      rw.setProp(off, PROP_SUB_FDT_V1, le64(pa));
    } else if (profile === 'kho-v2') {
      rw.setProp(off, PROP_SUB_FDT_DATA, le64(pa));
    } else {
      rw.setProp(off, PROP_SUB_FDT_DATA, le64(pa));
      rw.setProp(off, PROP_SUB_BLOB_SIZE, le64(BigInt(size)));
    }
  } catch (e) {
    rw.delNode(off);
    rw.pack();
    throw new LuoError('ENOMEM', `KHO root FDT: cannot set properties of "${name}": ${String(e)}`);
  }
  rw.pack();
}

/** kho_remove_subtree: delete the first subnode whose data address equals `pa`. */
export function removeSubtreeNode(page: Uint8Array, profile: KhoProfile, pa: bigint): void {
  const rw = FdtRw.openInto(page, page, PAGE_SIZE);
  const prop = profile === 'kho-v1' ? PROP_SUB_FDT_V1 : PROP_SUB_FDT_DATA;
  const ro = Fdt.open(page);
  for (let off = ro.firstSubnode(0); off >= 0; off = ro.nextSubnode(off)) {
    const v = ro.getProp(off, prop);
    if (!v || v.length !== 8) continue;
    if (new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true) === pa) {
      rw.delNode(off);
      break;
    }
  }
  rw.pack();
}

/** kho-v1 finalize: overwrite preserved-memory-map in place (fdt_getprop_w + put_unaligned). */
export function setMemoryMap(page: Uint8Array, pa: bigint): void {
  const fdt = Fdt.open(page);
  const prop = findPropValueOffset(fdt, page, PROP_PRESERVED_MEMORY_MAP);
  new DataView(page.buffer, page.byteOffset + prop, 8).setBigUint64(0, pa, true);
}

export function readMemoryMap(page: Uint8Array): bigint {
  const v = Fdt.open(page).getProp(0, PROP_PRESERVED_MEMORY_MAP);
  if (!v || v.length !== 8) throw new LuoError('EINVAL', 'root FDT has no 8-byte preserved-memory-map');
  return new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true);
}

function findPropValueOffset(fdt: Fdt, page: Uint8Array, name: string): number {
  const v = fdt.getProp(0, name);
  if (!v || v.length !== 8) throw new LuoError('EINVAL', `root FDT has no 8-byte ${name}`);
  return v.byteOffset - page.byteOffset;
}

/** An incoming root FDT that passed kho_populate's checks. */
export interface IncomingRoot {
  readonly blob: Uint8Array;
  readonly fdt: Fdt;
  readonly memMapPa: bigint;
  readonly subtreeNames: readonly string[];
}

/**
 * kho_populate's checks on the root the previous kernel left: header, this kernel's `compat` (an
 * exact string: "kho-v4" does not match "kho-v4;radix-v1;vmalloc-v1"), a non-zero 8-byte
 * preserved-memory-map. Throws LuoError(EINVAL) saying which check failed.
 */
export function readIncomingRoot(page: Uint8Array, compat: string): IncomingRoot {
  let fdt: Fdt;
  try {
    fdt = Fdt.open(page);
  } catch (e) {
    throw new LuoError('EINVAL', `handover FDT is invalid: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!fdt.nodeCheckCompatible(0, compat)) {
    let found = '';
    try { found = fdt.getPropStrings(0, 'compatible').join(', '); } catch { found = '(none)'; }
    throw new LuoError('EINVAL', `handover FDT is incompatible with '${compat}' (it says "${found}")`);
  }
  const mm = fdt.getProp(0, PROP_PRESERVED_MEMORY_MAP);
  if (!mm || mm.length !== 8) throw new LuoError('EINVAL', 'handover FDT: failed to get preserved memory map');
  const memMapPa = new DataView(mm.buffer, mm.byteOffset, 8).getBigUint64(0, true);
  if (memMapPa === 0n) throw new LuoError('EINVAL', 'handover FDT: preserved-memory-map is 0');
  const names: string[] = [];
  for (let off = fdt.firstSubnode(0); off >= 0; off = fdt.nextSubnode(off)) names.push(fdt.getName(off));
  const blob = page.slice(0, fdt.totalSize);
  return { blob, fdt: Fdt.open(blob), memMapPa, subtreeNames: names };
}

/** kho_retrieve_subtree on an incoming root: ENOENT if missing, EINVAL if its properties are broken. */
export function subtreeOf(root: IncomingRoot, name: string, profile: KhoProfile): { pa: bigint; size: number } {
  const off = root.fdt.subnodeOffset(0, name);
  if (off < 0) throw new LuoError('ENOENT', `KHO subtree "${name}" not found`);
  const u64 = (prop: string): bigint | undefined => {
    const v = root.fdt.getProp(off, prop);
    return v && v.length === 8 ? new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true) : undefined;
  };
  if (profile === 'kho-v1') {
    const pa = u64(PROP_SUB_FDT_V1);
    if (pa === undefined) throw new LuoError('EINVAL', `KHO subtree "${name}": missing or invalid fdt property`);
    return { pa, size: PAGE_SIZE };
  }
  const pa = u64(PROP_SUB_FDT_DATA);
  if (pa === undefined) throw new LuoError('EINVAL', `KHO subtree "${name}": missing or invalid preserved-data property`);
  // kho-v2 records no size: its subtrees are one-page sub-FDTs, as kho-v1's
  if (profile === 'kho-v2') return { pa, size: PAGE_SIZE };
  const size = u64(PROP_SUB_BLOB_SIZE);
  if (size === undefined) throw new LuoError('EINVAL', `broken KHO subnode '${name}': missing or invalid blob-size property`);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new LuoError('EINVAL', `KHO subtree "${name}": blob-size ${size} is impossible`);
  return { pa, size: Number(size) };
}
