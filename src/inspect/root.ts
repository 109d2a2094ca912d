/**
 * The KHO root FDT: found at a given address or by scanning memory for an FDT whose root
 * compatible starts with "kho-v" (page-aligned offsets first, then 8-byte aligned), then checked
 * in full (libfdt's checks, the compatible, preserved-memory-map, each subtree's properties).
 */
import { PROP_PRESERVED_MEMORY_MAP, PROP_SUB_BLOB_SIZE, PROP_SUB_FDT_DATA, PROP_SUB_FDT_V1, PAGE_SIZE } from '../abi/kho.ts';
import { checkFdt } from '../fdt/check.ts';
import { Fdt, headerProblems } from '../fdt/ro.ts';
import { type PhysView, le64, tryRead } from './phys.ts';
import { type Problems, type RootInfo, type SubtreeInfo, hex } from './report.ts';

const FDT_MAGIC = [0xd0, 0x0d, 0xfe, 0xed] as const;
const MAX_FDT = 1 << 20;
const MAX_CANDIDATES = 16;

const be32 = (b: Uint8Array, p: number): number => ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;

/** The first string of the root's compatible, or undefined. */
export function rootCompatible(fdt: Fdt): string | undefined {
  try {
    return fdt.getPropStrings(0, 'compatible')[0];
  } catch {
    return undefined;
  }
}

/** A KHO root candidate at `pa`: the FDT blob when its root compatible starts with "kho-v". */
function candidate(view: PhysView, pa: bigint): Uint8Array | undefined {
  const hdr = tryRead(view, pa, 40);
  if (!hdr) return undefined;
  const total = be32(hdr, 4);
  if (total < 40 || total > MAX_FDT) return undefined;
  const blob = tryRead(view, pa, total);
  if (!blob) return undefined;
  try {
    return rootCompatible(Fdt.open(blob))?.startsWith('kho-v') ? blob : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Scans the view for KHO root FDTs: page-aligned first; 8-byte aligned only when that finds none.
 * With several candidates (stale copies in a dump), `prefer` picks the one to use; by default the
 * first whose preserved-memory-map is set (an unfinalized kho-v1 root has 0).
 */
export function scanForRoot(view: PhysView, problems: Problems, prefer?: (c: { pa: bigint; blob: Uint8Array }) => boolean): { pa: bigint; blob: Uint8Array } | undefined {
  const found: { pa: bigint; blob: Uint8Array }[] = [];
  for (const step of [PAGE_SIZE, 8]) {
    for (const { pa, bytes } of view.chunks(1 << 20)) {
      const mis = Number(pa % BigInt(step));
      for (let off = mis ? step - mis : 0; off + 4 <= bytes.length && found.length < MAX_CANDIDATES; off += step) {
        if (bytes[off] !== FDT_MAGIC[0] || bytes[off + 1] !== FDT_MAGIC[1] || bytes[off + 2] !== FDT_MAGIC[2] || bytes[off + 3] !== FDT_MAGIC[3]) continue;
        const at = pa + BigInt(off);
        if (step === 8 && at % BigInt(PAGE_SIZE) === 0n) continue;
        const blob = candidate(view, at);
        if (blob) found.push({ pa: at, blob });
      }
    }
    if (found.length) break;
  }
  if (!found.length) return undefined;
  const best = (found.length > 1 && prefer ? found.find(prefer) : undefined) ?? found.find((f) => memoryMapOf(f.blob) !== 0n) ?? found[0]!;
  if (found.length > 1) {
    problems.info('root FDT scan', `${found.length} KHO root FDT candidates (${found.map((f) => hex(f.pa)).join(', ')}); using ${hex(best.pa)}`);
  }
  return best;
}

/** The preserved-memory-map of a root blob (0 when absent or unreadable). */
export function memoryMapOf(b: Uint8Array): bigint {
  try {
    const v = Fdt.open(b).getProp(0, PROP_PRESERVED_MEMORY_MAP);
    return v && v.length === 8 ? le64(v) : 0n;
  } catch { return 0n; }
}

/** A blob cut short of its totalsize, zero-filled so its first bytes can still be decoded. */
export function zeroFillTruncated(blob: Uint8Array): Uint8Array | undefined {
  const hp = headerProblems(blob);
  if (hp.length !== 1 || hp[0]!.code !== 'TRUNCATED' || hp[0]!.offset !== 4 || !/available bytes/.test(hp[0]!.message)) return undefined;
  const total = be32(blob, 4);
  if (total > MAX_FDT) return undefined;
  const out = new Uint8Array(total);
  out.set(blob);
  return out;
}

/**
 * Runs the full FDT check on `blob`, reporting each problem at `where` with its byte offset, and
 * returns a reader when the tree is usable (a truncated blob is zero-filled, with a note).
 */
export function openCheckedFdt(blob: Uint8Array, where: string, problems: Problems): Fdt | undefined {
  return openFdtReport(blob, where, problems).fdt;
}

/** openCheckedFdt, also saying whether the tree was read from a zero-filled, cut-short blob. */
export function openFdtReport(blob: Uint8Array, where: string, problems: Problems): { fdt?: Fdt; partial: boolean } {
  const found = checkFdt(blob);
  for (const p of found) problems.error(`${where} offset ${p.offset}`, `FDT_ERR_${p.code}: ${p.message}`);
  let src = blob;
  if (found.length) {
    const filled = zeroFillTruncated(blob);
    if (filled) {
      problems.info(where, `blob ends at byte ${blob.length} of ${filled.length}; decoded with the missing bytes as zeros`);
      src = filled;
    }
  }
  try {
    const fdt = Fdt.open(src);
    fdt.tree();
    return { fdt, partial: src !== blob };
  } catch (e) {
    if (!found.length) problems.error(where, (e as Error).message);
    return { partial: src !== blob };
  }
}

/** Problems found in a cut-short tree are likely the cut itself: reported as notes. */
type Report_ = (where: string, msg: string) => void;

function u64Prop(fdt: Fdt, off: number, name: string, where: string, problems: Problems, required: boolean, missing: Report_): bigint | undefined {
  let v: Uint8Array | undefined;
  try { v = fdt.getProp(off, name); } catch { v = undefined; }
  if (!v) {
    if (required) missing(where, `missing ${name} property`);
    return undefined;
  }
  if (v.length !== 8) { problems.error(where, `${name} is ${v.length} bytes, expected a native-endian u64 (8)`); return undefined; }
  return le64(v);
}

/** Decodes a root FDT blob: compatible, profile, preserved-memory-map and the subtree nodes. */
export function decodeRoot(blob: Uint8Array, pa: bigint | undefined, foundBy: RootInfo['foundBy'], problems: Problems): { info: RootInfo; subtrees: SubtreeInfo[] } | undefined {
  const where = pa === undefined ? 'root FDT' : `root FDT @${hex(pa)}`;
  const { fdt, partial } = openFdtReport(blob, where, problems);
  if (!fdt) return undefined;
  const missing: Report_ = partial ? (w, m) => problems.info(w, `${m} (it may lie in the missing bytes)`) : (w, m) => problems.error(w, m);
  const compatible = rootCompatible(fdt) ?? '';
  const info: RootInfo = { ...(pa !== undefined ? { pa } : {}), size: blob.length, foundBy, compatible };
  const base = compatible.split(';')[0]!;
  const m = /^kho-v(\d+)$/.exec(base);
  if (!compatible) missing(where, 'root node has no compatible string');
  else if (!m) problems.error(where, `root compatible "${compatible}" is not a KHO root (kho-v1 .. kho-v4)`);
  else if (Number(m[1]) < 1 || Number(m[1]) > 4) problems.warn(where, `unknown KHO version "${base}" (known: kho-v1 .. kho-v4); decoded as kho-v4`);
  const version = m ? Math.min(4, Math.max(1, Number(m[1]))) : 4;
  if (m) info.profile = `kho-v${version}`;
  const mm = u64Prop(fdt, 0, PROP_PRESERVED_MEMORY_MAP, where, problems, true, missing);
  if (mm !== undefined) {
    info.preservedMemoryMap = mm;
    if (mm === 0n) problems.error(where, `preserved-memory-map is 0: the next kernel ignores this hand-over${version === 1 ? ' (kho-v1 root not finalized)' : ''}`);
  }
  const subtrees: SubtreeInfo[] = [];
  let names: number[] = [];
  try { names = fdt.subnodeList(0); } catch { names = []; }
  for (const off of names) {
    const name = fdt.getName(off);
    const sw = `${where} subtree "${name}"`;
    const st: SubtreeInfo = { name };
    if (version === 1) {
      const f = u64Prop(fdt, off, PROP_SUB_FDT_V1, sw, problems, true, missing);
      if (f !== undefined) st.fdt = f;
    } else {
      const d = u64Prop(fdt, off, PROP_SUB_FDT_DATA, sw, problems, true, missing);
      if (d !== undefined) st.preservedData = d;
      const s = u64Prop(fdt, off, PROP_SUB_BLOB_SIZE, sw, problems, version >= 3, missing);
      if (s !== undefined) st.blobSize = s;
    }
    subtrees.push(st);
  }
  return { info, subtrees };
}
