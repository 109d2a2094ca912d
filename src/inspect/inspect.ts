/**
 * `luo inspect` as a library: opens any hand-over artefact (root FDT, sub-blob, luo image, ELF core
 * dump, captured pages), finds the KHO root FDT, decodes the tracker, subtrees, luo_ser, sessions,
 * files, memfds and FLBs, and returns a Report. Never throws on bad input; every walk is bounded.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { PAGE_SIZE } from '../abi/kho.ts';
import { KEXEC_METADATA_NAME } from '../abi/kho.ts';
import { LUO_SUBTREE_NAME } from '../abi/luo.ts';
import { Ctx } from './context.ts';
import { decodeLuoFdt } from './luo-v1.ts';
import { writtenBy } from './releases.ts';
import { decodeFlbs, decodeLuoSer, decodeSessions, entryKindsOf } from './luo.ts';
import { MAX_READ, type PhysView, SegmentView, tryRead } from './phys.ts';
import { type FileInfo, type InputKind, Problems, type Report, type SessionInfo, type SubtreeInfo, hex } from './report.ts';
import { memfdData } from './memfd.ts';
import { decodeRoot, memoryMapOf, rootCompatible, openCheckedFdt, scanForRoot } from './root.ts';
import { Fdt } from '../fdt/ro.ts';
import { type Input, openInput, PAGE_FILE } from './sources.ts';
import { decodeKexecMetadata, decodeSubsystems, fdtCompatible, isFdtBlob, readFdtAt } from './subtrees.ts';
import { walkChunks, walkRadix } from './tracker.ts';
import { SUBSYSTEMS_SUBTREE } from '../luo/subsystems.ts';

export interface InspectOptions {
  kind?: InputKind;
  /** Where the root FDT is (overrides metadata and the scan). */
  fdtAddr?: bigint;
  /** Bytes of each memfd folio to include (0: none). */
  memfdContents?: number;
  /** Receives each preserved memfd's logical content (`luo inspect --extract`). */
  onFileData?: (session: SessionInfo, file: FileInfo, data: Uint8Array) => void;
}

/** Files larger than this are neither hashed nor extracted (a problem says so). */
export const MAX_FILE_DATA = 256 << 20;

/**
 * Each memfd's content [0, size) rebuilt from its folios while the memory view is open: its
 * sha256 goes into the report, and the bytes to `onFileData` when given.
 */
function fileData(r: Report, view: PhysView, opts: InspectOptions, problems: Problems): void {
  const orders = new Map<number, number>();
  for (const b of r.tracker?.list ?? []) orders.set(Number(b.pa >> 12n), b.order);
  for (const s of r.sessions) {
    for (const f of s.files) {
      const m = f.memfd;
      if (!m) continue;
      const where = `session "${s.name}" file ${f.index} (token ${hex(f.token)})`;
      let data: Uint8Array;
      try {
        data = memfdData(view, m, (pfn) => orders.get(pfn) ?? 0, MAX_FILE_DATA);
      } catch (e) {
        problems.info(where, `content not hashed or extracted: ${(e as Error).message}`);
        continue;
      }
      m.sha256 = createHash('sha256').update(data).digest('hex');
      opts.onFileData?.(s, f, data);
    }
  }
}

function emptyReport(kind: InputKind, path: string, description: string): Report {
  return {
    input: { kind, path, description, ranges: [] },
    root: null, subtrees: [], tracker: null, kexecMetadata: null, luo: null,
    sessionBlocks: [], sessions: [], flbs: null, subsystems: null, writtenBy: null, problems: [],
  };
}

/** Inspects the artefact at `path`. */
export async function inspectPath(path: string, opts: InspectOptions = {}): Promise<Report> {
  const problems = new Problems();
  let input: Input | undefined;
  try {
    input = await openInput(path, opts.kind, problems);
  } catch (e) {
    problems.error(`input ${path}`, `cannot open: ${(e as Error).message}`);
  }
  if (!input) {
    const r = emptyReport(opts.kind ?? 'blob', path, 'unreadable');
    r.problems = problems.finish();
    return r;
  }
  try {
    return inspectInput(input, opts, problems);
  } finally {
    input.close();
  }
}

/** Inspects an opened input (a memory view, or a lone blob). */
export function inspectInput(input: Input, opts: InspectOptions, problems: Problems = new Problems()): Report {
  const r = emptyReport(input.kind, input.path, input.view.description);
  const ranges = input.view.ranges();
  r.input.ranges = ranges.slice(0, 256);
  if (ranges.length > 256) problems.info('input', `${ranges.length} memory ranges; the first 256 are listed`);
  try {
    if (input.blob) decodeLoneBlob(r, input.blob, input.path, input.kind, problems);
    else {
      decodeMemory(r, input.view, input.fdtAddr, opts, problems);
      fileData(r, input.view, opts, problems);
    }
  } catch (e) {
    // A decoder bug must not hide what was found so far.
    problems.error('inspect', `internal error: ${(e as Error).stack ?? String(e)}`);
  }
  r.writtenBy = writtenBy(r);
  r.problems = problems.finish();
  return r;
}

/** A file that is one blob, not memory: a root FDT, a sub-FDT, a luo_ser or kexec-metadata. */
function decodeLoneBlob(r: Report, blob: Uint8Array, path: string, kind: InputKind, problems: Problems): void {
  const ctx = new Ctx(new SegmentView([], 'none'), problems, true);
  const name = basename(path);
  if (isFdtBlob(blob) || kind === 'fdt') {
    let compat: string | undefined;
    try {
      const probe = new Problems();
      const fdt = openCheckedFdt(blob, 'probe', probe);
      compat = fdt ? rootCompatible(fdt) : undefined;
    } catch { compat = undefined; }
    if (compat === undefined || compat.startsWith('kho-v')) {
      const root = decodeRoot(blob, undefined, 'file', problems);
      if (root) {
        r.root = root.info;
        r.subtrees = root.subtrees;
        problems.info(`file ${name}`, 'a lone root FDT: the tracker and subtree blobs it points to are not part of this input');
      }
      return;
    }
    const where = `FDT ${name}`;
    const st: SubtreeInfo = { name, compatible: compat };
    r.subtrees = [st];
    if (compat === 'subsystems-v1') r.subsystems = decodeSubsystems(ctx, blob, where) ?? null;
    else if (compat.startsWith('luo-v')) r.luo = decodeLuoFdt(ctx, blob, undefined, where) ?? null;
    else openCheckedFdt(blob, where, problems);
    return;
  }
  if (name === KEXEC_METADATA_NAME) {
    r.kexecMetadata = decodeKexecMetadata(ctx, blob, undefined, BigInt(blob.length), `kexec-metadata blob ${name}`) ?? null;
    return;
  }
  if (name === LUO_SUBTREE_NAME || blob.subarray(0, 5).every((c, i) => c === 'luo-v'.charCodeAt(i))) {
    r.luo = decodeLuoSer(ctx, blob, undefined, BigInt(blob.length), `LUO blob ${name}`) ?? null;
    if (r.luo) problems.info(`LUO blob ${name}`, 'a lone luo_ser: the sessions and FLB page it points to are not part of this input');
    return;
  }
  if (blob.length === 73 && blob[0] === 1 && blob[1] === 0 && blob[2] === 0 && blob[3] === 0) {
    r.kexecMetadata = decodeKexecMetadata(ctx, blob, undefined, BigInt(blob.length), `kexec-metadata blob ${name}`) ?? null;
    return;
  }
  const page = PAGE_FILE.exec(name);
  if (page) {
    // one page of a pages capture: what it points at lives in the other pages
    problems.warn(`file ${name}`, `one page of a pages capture (${page[1]} at 0x${page[2]}): not an FDT, a luo_ser or kexec-metadata on its own; its pointers lead to the other pages, so inspect the directory that holds it`);
    return;
  }
  problems.warn(`file ${name}`, `unrecognised blob of ${blob.length} byte(s): not an FDT, a luo_ser (LUO) or kexec-metadata; --kind raw reads a file as physical memory from address 0`);
}

/** Reads the FDT at `pa` (its header's totalsize), or reports why it cannot. */
function readRootAt(view: PhysView, pa: bigint, why: string, problems: Problems): Uint8Array | undefined {
  const where = `root FDT @${hex(pa)} (${why})`;
  const hdr = tryRead(view, pa, 40);
  if (!hdr) { problems.error(where, `${hex(pa)} is outside the memory view`); return undefined; }
  if (!isFdtBlob(hdr)) { problems.error(where, `no FDT magic at ${hex(pa)}`); return undefined; }
  const total = new DataView(hdr.buffer, hdr.byteOffset).getUint32(4, false);
  const len = Math.min(Math.max(total, 40), MAX_READ);
  const blob = tryRead(view, pa, len);
  if (blob) return blob;
  // Give the checker what is there, so it reports the truncation with its offset.
  for (let n = len - 1; n >= 40; n = Math.min(n - 1, Math.floor(n / PAGE_SIZE) * PAGE_SIZE)) {
    const part = tryRead(view, pa, n);
    if (part) return part;
  }
  return hdr;
}

function decodeMemory(r: Report, view: PhysView, metaAddr: bigint | undefined, opts: InspectOptions, problems: Problems): void {
  const ctx = new Ctx(view, problems, false);
  let pa: bigint | undefined;
  let blob: Uint8Array | undefined;
  let foundBy: 'argument' | 'image metadata' | 'scan' = 'scan';
  if (opts.fdtAddr !== undefined) { pa = opts.fdtAddr; foundBy = 'argument'; } else if (metaAddr !== undefined) { pa = metaAddr; foundBy = 'image metadata'; }
  if (pa !== undefined) blob = readRootAt(view, pa, foundBy === 'argument' ? '--fdt-addr' : 'image metadata', problems);
  else {
    // Among several candidates, the live root is the one its own tracker preserves.
    const selfPreserved = (c: { pa: bigint; blob: Uint8Array }): boolean => {
      const m = memoryMapOf(c.blob);
      if (!m) return false;
      const quiet = new Problems();
      const v1 = rootCompatible(Fdt.open(c.blob))?.startsWith('kho-v1') ?? false;
      return (v1 ? walkChunks(view, m, quiet) : walkRadix(view, m, quiet)).set.covers(c.pa, PAGE_SIZE);
    };
    const hit = scanForRoot(view, problems, selfPreserved);
    if (hit) { pa = hit.pa; blob = hit.blob; }
  }
  if (!blob || pa === undefined) {
    if (foundBy === 'scan') problems.error('root FDT scan', 'no KHO root FDT in memory (no FDT whose root compatible starts with "kho-v"); give --fdt-addr');
    return;
  }
  const root = decodeRoot(blob, pa, foundBy, problems);
  if (!root) return;
  r.root = root.info;
  r.subtrees = root.subtrees;
  const v1 = root.info.profile === 'kho-v1';
  const mm = root.info.preservedMemoryMap;
  if (mm) {
    const t = v1 ? walkChunks(view, mm, problems) : walkRadix(view, mm, problems);
    r.tracker = t.info;
    ctx.preserved = t.set;
  }
  if (!v1) ctx.checkPreserved(pa, PAGE_SIZE, `root FDT @${hex(pa)}`, 'root FDT page');
  for (const st of root.subtrees) decodeSubtree(r, ctx, st, v1, opts);
  if (!root.subtrees.some((s) => s.name === LUO_SUBTREE_NAME)) problems.info(`root FDT @${hex(pa)}`, 'no LUO subtree: no live update sessions were handed over');
}

function decodeSubtree(r: Report, ctx: Ctx, st: SubtreeInfo, v1: boolean, opts: InspectOptions): void {
  const where = `subtree "${st.name}"`;
  let blob: Uint8Array | undefined;
  let at: bigint | undefined;
  let size: bigint;
  if (v1) {
    if (st.fdt === undefined) return;
    at = st.fdt;
    blob = readFdtAt(ctx, at, where);
    size = BigInt(blob?.length ?? 0);
  } else {
    if (st.preservedData === undefined) return;
    at = st.preservedData;
    size = st.blobSize ?? BigInt(PAGE_SIZE);
    if (size === 0n) { ctx.problems.error(where, 'blob-size is 0'); return; }
    if (size > BigInt(MAX_READ)) { ctx.problems.error(where, `blob-size ${size} is implausibly large (more than ${MAX_READ})`); return; }
    blob = ctx.read(at, Number(size), where, 'preserved-data');
    if (blob) ctx.checkPreserved(at, Number(size), `${where} @${hex(at)}`, 'blob');
  }
  if (!blob) return;
  const bw = `${where} @${hex(at)}`;
  if (st.name === LUO_SUBTREE_NAME) {
    // the FDT era (luo-v1, luo-v2) kept LUO as a sub-FDT; later releases as a raw luo_ser
    const fdtEra = isFdtBlob(blob);
    const ser = fdtEra ? decodeLuoFdt(ctx, blob, at, `LUO FDT @${hex(at)}`) : decodeLuoSer(ctx, blob, at, size, `luo_ser @${hex(at)}`);
    if (!ser) return;
    r.luo = ser;
    if (fdtEra) st.compatible = ser.compatible;
    if (ser.subsystemsNode) r.subsystems = ser.subsystemsNode;
    const memfdOpts = { contents: opts.memfdContents ?? 0 };
    const s = decodeSessions(ctx, ser.sessionsPa, memfdOpts, entryKindsOf(ser.compatible));
    r.sessionBlocks = s.blocks;
    r.sessions = s.sessions;
    r.flbs = decodeFlbs(ctx, ser.flbsPa, fdtEra) ?? null;
    return;
  }
  if (st.name === KEXEC_METADATA_NAME && !isFdtBlob(blob)) {
    r.kexecMetadata = decodeKexecMetadata(ctx, blob, at, size, bw) ?? null;
    return;
  }
  if (st.name === SUBSYSTEMS_SUBTREE) {
    r.subsystems = decodeSubsystems(ctx, blob, bw) ?? null;
    st.compatible = 'subsystems-v1';
    return;
  }
  if (isFdtBlob(blob)) {
    const c = fdtCompatible(ctx, blob, bw);
    if (c !== undefined) st.compatible = c;
    return;
  }
  ctx.problems.info(bw, `raw blob of ${size} byte(s); no decoder for subtree "${st.name}"`);
}
