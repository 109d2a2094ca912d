/**
 * The LUO hand-over of the raw-blob releases (luo-v3, luo-v4, luo-v5 and the granular RFC's
 * luo-v5;block-v1): struct luo_ser, the sessions (an array or a block chain, as the compatible's
 * release keeps them), each session's files (likewise), each file (handler compatible, token, data;
 * memfd descriptors decoded) and the FLB page, validated as luo_session/luo_file/luo_flb
 * deserialization would, plus duplicate and count checks. The FDT era's roots are in luo-v1.ts.
 */
import { PAGE_SIZE } from '../abi/kho.ts';
import {
  LUO_ABI_COMPATIBLE, LUO_FLB_MAX, LUO_SESSION_NAME_LENGTH, LuoFileSer, LuoFlbHeaderSer, LuoFlbSer, LuoSessionSer, luoSerLayout,
  MEMFD_LUO_COMPATIBLE, MEMFD_LUO_COMPATIBLE_V1,
} from '../abi/luo.ts';
import { RELEASES } from '../abi/releases.ts';
import { readCString } from '../bytes/cursor.ts';
import type { Ctx } from './context.ts';
import { walkChain } from './chain.ts';
import { fileArray, sessionArray } from './luo-v1.ts';
import { type MemfdOptions, decodeMemfd } from './memfd.ts';
import { type BlockInfo, type FileInfo, type FlbInfo, type LuoSerInfo, type SessionInfo, hex } from './report.ts';

const FDT_MAGIC = Uint8Array.of(0xd0, 0x0d, 0xfe, 0xed);

/** A fixed char[] field as text, and whether it was NUL-terminated inside the field. */
function cstr(b: Uint8Array, size: number): { s: string; terminated: boolean } {
  return { s: readCString(b, 0, size), terminated: b.subarray(0, size).includes(0) };
}

/** A short printable rendering of bytes that are not the expected string. */
export function showBytes(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += c >= 0x20 && c < 0x7f && c !== 0x5c && c !== 0x22 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  return s;
}

/** Where a release keeps sessions and files. */
export interface EntryKinds { readonly sessions: 'array' | 'blocks'; readonly files: 'array' | 'blocks' }

/** Raw luo_ser compatibles of the catalogue and how their releases keep entries (the first release wins). */
const RAW_LUO = new Map<string, EntryKinds>();
for (const r of RELEASES) {
  const l = r.abi.luo;
  if (l.format === 'raw' && !RAW_LUO.has(l.compatible)) RAW_LUO.set(l.compatible, { sessions: l.sessions, files: l.files });
}
/** The FDT era's releases (luo-v1, luo-v2) keep both in fixed arrays. */
export const ARRAYS: EntryKinds = { sessions: 'array', files: 'array' };

/** How the release that writes `compatible` keeps its entries (blocks for anything unknown). */
export const entryKindsOf = (compatible: string): EntryKinds => RAW_LUO.get(compatible) ?? (compatible === 'luo-v1' || compatible === 'luo-v2' ? ARRAYS : { sessions: 'blocks', files: 'blocks' });

/**
 * Decodes the luo_ser blob `bytes` found at `pa` (blob-size `size`): "luo-v5" (32 bytes) or the
 * granular RFC's "luo-v5;block-v1" (40). Returns undefined when it is not one (reported), so nothing
 * it points to is followed.
 */
export function decodeLuoSer(ctx: Ctx, bytes: Uint8Array, pa: bigint | undefined, size: bigint, where: string): LuoSerInfo | undefined {
  if (bytes.length >= 4 && FDT_MAGIC.every((x, i) => bytes[i] === x)) {
    ctx.problems.error(where, `the LUO blob is an FDT (the luo-v1 era format), not a ${LUO_ABI_COMPATIBLE} luo_ser; not decoded further`);
    return undefined;
  }
  const named = cstr(bytes, Math.min(bytes.length, 32)).s;
  const LuoSer = luoSerLayout(RAW_LUO.has(named) ? named : LUO_ABI_COMPATIBLE);
  const clen = LuoSer.size - 24;
  if (bytes.length < LuoSer.size) {
    ctx.problems.error(where, `blob of ${bytes.length} byte(s) is too small for struct luo_ser (${LuoSer.size})`);
    return undefined;
  }
  if (size !== BigInt(LuoSer.size)) ctx.problems.warn(where, `blob-size ${size} is not sizeof(struct luo_ser) = ${LuoSer.size}`);
  const s = LuoSer.decode(bytes);
  const c = cstr(bytes, clen);
  if (!RAW_LUO.has(c.s) || !c.terminated) {
    ctx.problems.error(where, `compatible "${showBytes(bytes.subarray(0, clen))}" is not ${[...RAW_LUO.keys()].map((x) => `"${x}"`).join(' or ')}: not a luo_ser luo decodes (a kernel of another LUO version panics on it); not decoded further`);
    return undefined;
  }
  return { ...(pa !== undefined ? { pa } : {}), size, compatible: s.compatible, liveupdateNum: s.liveupdate_num, sessionsPa: s.sessions_pa, flbsPa: s.flbs_pa };
}

/** Sessions and their files from `sessionsPa`: a block chain, or the session array. */
export function decodeSessions(ctx: Ctx, sessionsPa: bigint, opts: MemfdOptions, layout: EntryKinds = { sessions: 'blocks', files: 'blocks' }): { blocks: BlockInfo[]; sessions: SessionInfo[] } {
  if (sessionsPa === 0n) return { blocks: [], sessions: [] };
  const chain = layout.sessions === 'array' ? sessionArray(ctx, sessionsPa) : walkChain(ctx, sessionsPa, LuoSessionSer.size, 'session block', true);
  const sessions: SessionInfo[] = [];
  const names = new Map<string, number>();
  chain.entries.forEach((e, i) => {
    const v = LuoSessionSer.decode(e.bytes);
    const n = cstr(e.bytes, LUO_SESSION_NAME_LENGTH);
    const where = `session ${i} "${n.s}" @${hex(e.pa)}`;
    if (!n.terminated) ctx.problems.error(where, `name is not NUL-terminated within ${LUO_SESSION_NAME_LENGTH} bytes`);
    if (n.s === '') ctx.problems.error(where, 'empty session name');
    const dup = names.get(n.s);
    if (dup !== undefined) ctx.problems.error(where, `name repeats session ${dup}'s`);
    else names.set(n.s, i);
    const s: SessionInfo = { index: i, slotPa: e.pa, name: n.s, filesPa: v.files, count: v.count, fileBlocks: [], files: [] };
    decodeFiles(ctx, s, where, opts, layout);
    sessions.push(s);
  });
  return { blocks: chain.blocks, sessions };
}

function decodeFiles(ctx: Ctx, s: SessionInfo, where: string, opts: MemfdOptions, layout: EntryKinds): void {
  if (s.filesPa === 0n) {
    if (s.count !== 0n) ctx.problems.error(where, `file count mismatch: count is ${s.count} but there are no file blocks (files 0)`);
    return;
  }
  const chain = layout.files === 'array' ? fileArray(ctx, s.filesPa, s.count, s.name) : walkChain(ctx, s.filesPa, LuoFileSer.size, `session "${s.name}" file block`, false);
  s.fileBlocks = chain.blocks;
  if (layout.files === 'blocks' && BigInt(chain.entries.length) !== s.count) {
    ctx.problems.error(where, `file count mismatch: the session says ${s.count}, its file blocks hold ${chain.entries.length} (EINVAL)`);
  }
  const tokens = new Map<bigint, number>();
  chain.entries.forEach((e, i) => {
    const v = LuoFileSer.decode(e.bytes);
    const c = cstr(e.bytes, 48);
    const fw = `session "${s.name}" file ${i} (token ${hex(v.token)}) @${hex(e.pa)}`;
    if (!c.terminated) ctx.problems.error(fw, 'handler compatible is not NUL-terminated within 48 bytes');
    const dup = tokens.get(v.token);
    if (dup !== undefined) ctx.problems.error(fw, `token ${hex(v.token)} repeats file ${dup}'s`);
    else tokens.set(v.token, i);
    const f: FileInfo = { index: i, slotPa: e.pa, compatible: c.s, token: v.token, data: v.data };
    const base = c.s.split(';')[0]!;
    if (base === MEMFD_LUO_COMPATIBLE || base === MEMFD_LUO_COMPATIBLE_V1) {
      const m = decodeMemfd(ctx, v.data, base, fw, opts);
      if (m) f.memfd = m;
    } else {
      ctx.problems.error(fw, `unknown handler compatible "${showBytes(e.bytes.subarray(0, Math.max(1, c.s.length)))}": no file handler claims it, so the session cannot be restored`);
    }
    s.files.push(f);
  });
}

/** The FLB header page at `pa` (luo_flb_header_ser then luo_flb_ser records). */
export function decodeFlbs(ctx: Ctx, pa: bigint, fdtEra = false): FlbInfo | undefined {
  if (pa === 0n) {
    if (!fdtEra) ctx.problems.info('luo_ser', 'flbs_pa is 0: no FLB page');
    return undefined;
  }
  const where = `FLB page @${hex(pa)}`;
  if (pa % BigInt(PAGE_SIZE) !== 0n) ctx.problems.error(where, 'flbs_pa is not page aligned');
  const page = ctx.read(pa, PAGE_SIZE, where, 'flbs_pa');
  if (!page) return undefined;
  ctx.checkPreserved(pa, PAGE_SIZE, where, 'FLB page');
  const h = LuoFlbHeaderSer.decode(page);
  const info: FlbInfo = { pa, pgcnt: h.pgcnt, count: h.count, records: [] };
  if (h.pgcnt !== 1n) ctx.problems.error(where, `pgcnt ${h.pgcnt}, luo-v5 writes 1`);
  const n = Number(h.count > BigInt(LUO_FLB_MAX) ? BigInt(LUO_FLB_MAX) : h.count);
  if (h.count > BigInt(LUO_FLB_MAX)) ctx.problems.error(where, `count ${h.count} is more than the ${LUO_FLB_MAX} records a page holds`);
  const names = new Set<string>();
  for (let i = 0; i < n; i++) {
    const off = LuoFlbHeaderSer.size + i * LuoFlbSer.size;
    const r = LuoFlbSer.decode(page, off);
    const rw = `${where} record ${i} "${r.name}"`;
    if (r.name === '') ctx.problems.error(rw, 'empty FLB name');
    if (names.has(r.name)) ctx.problems.error(rw, 'name repeats an earlier record');
    names.add(r.name);
    if (r.count === 0n) ctx.problems.warn(rw, 'count 0: no file depends on it');
    info.records.push({ name: r.name, data: r.data, count: r.count });
  }
  return info;
}
