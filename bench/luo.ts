/**
 * LUO at fleet scale: serialize and restore (a) 500 000 empty sessions, (b) one session with
 * 600 000 files of a minimal in-bench handler (so that line measures LUO's own cost), and (c) a
 * realistic host: 200 sessions x 8 memfds totalling 256 GiB of guest memory on a 512 GiB machine.
 *
 * Every case goes through a real live update: create/preserve in the old kernel, the reboot hooks
 * inside kexec (LUO freezes and serializes), the new kernel's boot, LUO's deserialization at the
 * first open of /dev/liveupdate, retrieve, finish. Each phase is timed (after a forced GC,
 * so no phase pays for another's garbage, nor for the old kernel's heap, which a real kexec drops
 * for free); serialize and deserialize are also given as a ratio against a floor measured in the
 * same run: writing the same number of entries (80-byte session entries, 64-byte file entries)
 * into freshly allocated 4 KiB pages with a 16-byte block header, and reading them back as JS must:
 * one decoded string, one object and one Map insert per entry. Cases (a) and (b) run
 * LUO_BENCH_ROUNDS (5) live updates, each followed by a floor run, and report medians. Results are
 * checked (counts, tokens, memfd bytes and holes), so the bench fails loudly when anything is wrong.
 *
 *     node --import tsx bench/luo.ts          # or: npm run bench -- luo
 *
 * LUO_BENCH_SCALE=0.01 runs every case at 1% of its size (for a quick check); LUO_BENCH_ONLY=ab
 * runs only the cases named.
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { pathToFileURL } from 'node:url';
import { Machine } from '../src/kernel/machine.ts';
import type { Kernel } from '../src/kernel/kernel.ts';
import type { FileHandler, KernelFile } from '../src/luo/file-handler.ts';
import type { LuoSession } from '../src/luo/session.ts';
import { MemfdFile, memfdCreate } from '../src/handlers/memfd-file.ts';
import { LuoFileSer, LuoSessionSer } from '../src/abi/luo.ts';
import { PAGE_SIZE } from '../src/abi/kho.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SCALE = Number(process.env.LUO_BENCH_SCALE ?? '1');
if (!(SCALE > 0 && SCALE <= 1)) throw new Error(`LUO_BENCH_SCALE must be in (0, 1], got ${process.env.LUO_BENCH_SCALE}`);
const scaled = (n: number): number => Math.max(1, Math.round(n * SCALE));

// ------------------------------------------------------------------ small helpers

function fail(msg: string): never {
  throw new Error(`bench/luo: CHECK FAILED: ${msg}`);
}
function check(cond: boolean, msg: string): void {
  if (!cond) fail(msg);
}

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

const now = (): number => performance.now();
function ms(t: number): string {
  return t >= 1000 ? `${(t / 1000).toFixed(2)} s` : `${t.toFixed(1)} ms`;
}
function bytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}
const ratio = (t: number, floor: number): string => `${(t / floor).toFixed(1)}x`;

function hostLine(label: string, m?: Machine): string {
  const mu = process.memoryUsage();
  let s = `host memory ${label}: rss ${bytes(mu.rss)}, heapUsed ${bytes(mu.heapUsed)}, peak rss ${bytes(process.resourceUsage().maxRSS * 1024)}`;
  if (m) {
    const st = m.memory.stats();
    s += `; machine.memory.stats(): touchedPages ${st.touchedPages}, hostBytes ${bytes(st.hostBytes)}, zeroRanges ${st.zeroRanges}, poisonedRanges ${st.poisonedRanges}`;
  }
  return s;
}

function out(line: string): void {
  console.log(`luo: ${line}`);
}

// ------------------------------------------------------------------ the floor

const HDR = 16;
/**
 * The floor, honest about what JS has to do per entry: `n` entries of `entrySize` bytes written
 * into 4 KiB pages with a 16-byte {next, count} header — the pages allocated inside the clock, as
 * LUO allocates its blocks — then read back the way a kernel object per entry must be made: the
 * C string decoded, the two u64 fields read, one object built and inserted into a Map keyed by the
 * string (sessions) or the second field (files, by token). One run; milliseconds.
 */
function floor(n: number, entrySize: number, strOf: (i: number) => string, keyBy: 'string' | 'token'): { write: number; read: number } {
  const per = Math.floor((PAGE_SIZE - HDR) / entrySize);
  const strLen = entrySize - 16;
  gc();
  {
    let t0 = now();
    const pages: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const slot = i % per;
      if (slot === 0) pages.push(new Uint8Array(PAGE_SIZE));
      const p = pages[pages.length - 1]!;
      let off = HDR + slot * entrySize;
      const s = strOf(i);
      for (let j = 0; j < strLen; j++) p[off + j] = j < s.length ? s.charCodeAt(j) : 0;
      off += strLen;
      let a = i * 4096;
      let b = i + 1;
      for (let j = 0; j < 8; j++) {
        p[off + j] = a & 0xff;
        p[off + 8 + j] = b & 0xff;
        a = Math.floor(a / 256);
        b = Math.floor(b / 256);
      }
      p[8] = slot + 1;
    }
    const w = now() - t0;
    gc();
    t0 = now();
    const byKey = new Map<string | number, { name: string; a: number; b: number }>();
    for (let i = 0; i < n; i++) {
      const p = pages[(i / per) | 0]!;
      const slot = i % per;
      if (slot >= p[8]!) fail('floor: count');
      let off = HDR + slot * entrySize;
      let end = off;
      while (end < off + strLen && p[end] !== 0) end++;
      const name = String.fromCharCode.apply(null, p.subarray(off, end) as unknown as number[]);
      off += strLen;
      let a = 0;
      let b = 0;
      for (let j = 7; j >= 0; j--) {
        a = a * 256 + p[off + j]!;
        b = b * 256 + p[off + 8 + j]!;
      }
      const o = { name, a, b };
      byKey.set(keyBy === 'string' ? name : b, o);
    }
    const r = now() - t0;
    if (byKey.size === 0) fail('floor: nothing read');
    return { write: w, read: r };
  }
}

const ROUNDS = Number(process.env.LUO_BENCH_ROUNDS ?? '5');
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) throw new Error(`LUO_BENCH_ROUNDS must be a positive integer, got ${process.env.LUO_BENCH_ROUNDS}`);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Each phase's median over the rounds. */
function medianPhases(rounds: readonly Phases[]): Phases {
  const out = {} as Phases;
  for (const k of Object.keys(rounds[0]!) as Array<keyof Phases>) out[k] = median(rounds.map((r) => r[k]));
  return out;
}

/** `ROUNDS` runs of a case and of its floor, interleaved; the medians of both. */
function interleaved<R extends { p: Phases }>(round: () => R, fl: () => { write: number; read: number }): { last: R; p: Phases; floor: { write: number; read: number } } {
  const runs: R[] = [];
  const floors: Array<{ write: number; read: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    runs.push(round());
    floors.push(fl());
  }
  return { last: runs[runs.length - 1]!, p: medianPhases(runs.map((r) => r.p)), floor: { write: median(floors.map((f) => f.write)), read: median(floors.map((f) => f.read)) } };
}

// ------------------------------------------------------------------ live update driver

interface Phases {
  create: number;
  serialize: number;
  handover: number;
  boot: number;
  deserialize: number;
  retrieve: number;
  finish: number;
}

/**
 * kexec with the reboot hooks timed: LUO's hook (registered at boot) runs first, ours right after
 * it, so serialize = start of kexec .. our hook. handover = what kexec does after the hooks besides
 * booting (collecting the preserved ranges, poisoning the rest of RAM).
 */
function timedKexec(m: Machine, onSerialized?: (k: Kernel) => void): { next: Kernel; serialize: number; handover: number; boot: number } {
  const k = m.kernel;
  k.kexecLoad();
  let t1 = 0;
  k.onReboot((kk) => {
    t1 = now();
    onSerialized?.(kk);
  });
  gc();
  const t0 = now();
  const next = m.kexec();
  const t2 = now();
  // onSerialized only reads counters; its time falls into the hand-over line.
  return { next, serialize: t1 - t0, handover: t2 - t1 - next.bootTimeMs, boot: next.bootTimeMs };
}

function printPhases(p: Phases, createLabel: string): void {
  out(`  ${createLabel.padEnd(28)} ${ms(p.create)}`);
  out(`  ${'serialize (reboot hooks)'.padEnd(28)} ${ms(p.serialize)}`);
  out(`  ${'kexec hand-over (ranges, poison)'.padEnd(28)} ${ms(p.handover)}`);
  out(`  ${'new kernel boot'.padEnd(28)} ${ms(p.boot)}`);
  out(`  ${'deserialize (first open)'.padEnd(28)} ${ms(p.deserialize)}`);
  out(`  ${'retrieve'.padEnd(28)} ${ms(p.retrieve)}`);
  out(`  ${'finish'.padEnd(28)} ${ms(p.finish)}`);
}

function metadataLine(parts: Array<[string, number]>): string {
  const total = parts.reduce((a, [, n]) => a + n, 0);
  return `hand-over metadata ${total} pages = ${bytes(total * PAGE_SIZE)} (${parts.map(([w, n]) => `${w} ${n}`).join(', ')})`;
}

function floorLines(p: Phases, fl: { write: number; read: number }, what: string): void {
  out(`  floor (${what}), median of ${ROUNDS}: write ${ms(fl.write)}, read ${ms(fl.read)}`);
  out(`  serialize / floor = ${ratio(p.serialize, fl.write)}, deserialize / floor = ${ratio(p.deserialize, fl.read)}`);
}

// ------------------------------------------------------------------ (a) many sessions

function benchSessions(): void {
  const N = scaled(500_000);
  out(`(a) ${N} empty sessions ("s-<i>"), median of ${ROUNDS} live updates`);
  const r = interleaved(() => sessionsRound(N), () => floor(N, LuoSessionSer.size, (i) => `s-${i}`, 'string'));
  printPhases(r.p, 'create');
  out(`  ${metadataLine([['session blocks', r.last.sessionBlocks], ['luo_ser + FLB header', 2]])}`);
  floorLines(r.p, r.floor, `${N} x ${LuoSessionSer.size}-byte session entries`);
  out(`  restored: ${N} sessions retrieved and finished (checked); unrestored KHO blocks left: ${r.last.unrestored}`);
  out(`  ${hostLine('after (a)', r.last.m)}`);
}

function sessionsRound(N: number): { p: Phases; sessionBlocks: number; unrestored: number; m: Machine } {
  const m = new Machine({ ramSize: 8n * BigInt(GiB) });
  const p = {} as Phases;
  let luo = m.kernel.luo!;
  luo.open();
  gc();
  let t = now();
  for (let i = 0; i < N; i++) luo.createSession(`s-${i}`);
  p.create = now() - t;
  const sessionBlocks = luo.sessions.outgoingBlocks;
  const kx = timedKexec(m);
  Object.assign(p, { serialize: kx.serialize, handover: kx.handover, boot: kx.boot });
  luo = kx.next.luo!;
  gc();
  t = now();
  luo.open();
  p.deserialize = now() - t;
  check(luo.sessions.incoming.length === N, `(a) ${luo.sessions.incoming.length} sessions deserialized, want ${N}`);
  gc();
  t = now();
  const got: LuoSession[] = new Array(N);
  for (let i = 0; i < N; i++) got[i] = luo.retrieveSession(`s-${i}`);
  p.retrieve = now() - t;
  for (let i = 0; i < N; i += Math.max(1, N >> 6)) check(got[i]!.name === `s-${i}` && got[i]!.fileSet.count === 0, `(a) session ${i} restored as "${got[i]!.name}"`);
  gc();
  t = now();
  for (let i = 0; i < N; i++) {
    luo.sessions.finish(got[i]!);
    luo.sessions.release(got[i]!);
  }
  p.finish = now() - t;
  check(luo.sessions.incoming.length === 0, `(a) ${luo.sessions.incoming.length} sessions left after finish`);
  return { p, sessionBlocks, unrestored: kx.next.kho!.unrestoredBlocks, m };
}

// ------------------------------------------------------------------ (b) many files in one session

class BenchFile implements KernelFile {
  readonly kind = 'luo-bench';
  pos = 0;
  luoRefs?: number;
  constructor(readonly token: bigint) {}
}

/** Preserve stores the token as the serialized data: no memory, no KHO calls, only LUO's cost. */
function benchHandler(): FileHandler {
  return {
    compatible: 'luo-bench-v1',
    ops: {
      canPreserve: (_h, f) => f instanceof BenchFile,
      preserve(a) {
        a.serializedData = (a.file as BenchFile).token;
      },
      unpreserve() {},
      retrieve(a) {
        a.file = new BenchFile(a.serializedData);
      },
      finish() {},
    },
  };
}

function benchFiles(): void {
  const N = scaled(600_000);
  out(`(b) one session with ${N} files (in-bench handler: preserve stores the token as the serialized data, allocates nothing: LUO's own cost), median of ${ROUNDS} live updates`);
  const r = interleaved(() => filesRound(N), () => floor(N, LuoFileSer.size, () => 'luo-bench-v1', 'token'));
  printPhases(r.p, 'create + preserve');
  out(`  ${metadataLine([['session blocks', r.last.sessionBlocks], ['file blocks', r.last.fileBlocks], ['luo_ser + FLB header', 2]])}`);
  floorLines(r.p, r.floor, `${N} x ${LuoFileSer.size}-byte file entries`);
  out(`  restored: ${N} files retrieved with their tokens (checked); unrestored KHO blocks left: ${r.last.unrestored}`);
  out(`  ${hostLine('after (b)', r.last.m)}`);
}

function filesRound(N: number): { p: Phases; sessionBlocks: number; fileBlocks: number; unrestored: number; m: Machine } {
  const m = new Machine({ ramSize: 8n * BigInt(GiB) });
  const p = {} as Phases;
  let luo = m.kernel.luo!;
  luo.registerFileHandler(benchHandler());
  luo.open();
  gc();
  let t = now();
  const s = luo.createSession('files');
  for (let i = 0; i < N; i++) luo.sessions.preserveFile(s, BigInt(i) * 7n + 1n, new BenchFile(BigInt(i) * 7n + 1n));
  p.create = now() - t;
  const fileBlocks = s.fileSet.blocks.nblocks;
  const sessionBlocks = luo.sessions.outgoingBlocks;
  // The new kernel registers the same handler in its late init (before userspace opens the device).
  const kx = timedKexec(m);
  Object.assign(p, { serialize: kx.serialize, handover: kx.handover, boot: kx.boot });
  luo = kx.next.luo!;
  luo.registerFileHandler(benchHandler());
  gc();
  t = now();
  luo.open();
  p.deserialize = now() - t;
  gc();
  t = now();
  const inc = luo.retrieveSession('files');
  check(inc.fileSet.count === N, `(b) ${inc.fileSet.count} files deserialized, want ${N}`);
  let sum = 0n;
  for (let i = 0; i < N; i++) {
    const tok = BigInt(i) * 7n + 1n;
    const f = luo.sessions.retrieveFile(inc, tok) as BenchFile;
    if (f.token !== tok) fail(`(b) token ${tok} came back as ${f.token}`);
    sum += f.token;
  }
  p.retrieve = now() - t;
  const want = 7n * (BigInt(N) * BigInt(N - 1) / 2n) + BigInt(N);
  check(sum === want, `(b) token sum ${sum}, want ${want}`);
  gc();
  t = now();
  luo.sessions.finish(inc);
  luo.sessions.release(inc);
  p.finish = now() - t;
  check(luo.sessions.incoming.length === 0, '(b) session left after finish');
  return { p, sessionBlocks, fileBlocks, unrestored: kx.next.kho!.unrestoredBlocks, m };
}

// ------------------------------------------------------------------ (c) a realistic host

const THP = 2 * MiB;

/** Bytes written at a known place of memfd (s, f): a pattern that names both. */
function stamp(s: number, f: number, which: number): Uint8Array {
  const b = new Uint8Array(PAGE_SIZE);
  let x = (s * 8 + f) * 3 + which + 1;
  for (let i = 0; i < b.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function benchHost(): void {
  const S = scaled(200);
  const F = 8;
  const TOTAL_THP = Math.round((256 * GiB * (S / 200)) / THP);
  const nFiles = S * F;
  // 256 GiB = 131072 THPs over 1600 memfds: 1472 of 82 THPs (164 MiB) and 128 of 81 (162 MiB).
  const base = Math.floor(TOTAL_THP / nFiles);
  const extra = TOTAL_THP - base * nFiles;
  const sizeOf = (i: number): number => (base + (i < extra ? 1 : 0)) * THP;
  const total = Array.from({ length: nFiles }, (_, i) => sizeOf(i)).reduce((a, b) => a + b, 0);
  const order = 9;
  out(`(c) realistic host: ${S} sessions x ${F} memfds, ${bytes(total)} of guest memory (memfds of ${bytes(sizeOf(0))}${extra < nFiles ? ` and ${bytes(sizeOf(nFiles - 1))}` : ''}), 512 GiB machine`);
  out(`  folio order ${order} (shmem THP, shmem_enabled=always): ${total / (PAGE_SIZE << order)} folios; order 0 would need ${total / PAGE_SIZE} folio objects (more than a JS Map holds, 2^24, and tens of GiB of host heap)`);
  const m = new Machine({ ramSize: 512n * BigInt(GiB) });
  const p = {} as Phases;
  let k = m.kernel;
  let luo = k.luo!;
  const kho0 = k.kho!.preservedPages;
  const host0 = m.memory.stats().hostBytes;
  const touched0 = m.memory.stats().touchedPages;
  const ctx = { ...k.memfd, shmemHuge: 'always' as const };
  // Written pages: the first, one in the middle, the last of every memfd.
  const offsets = (size: number): number[] => [0, Math.floor(size / 2 / PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE, size - PAGE_SIZE];
  luo.open();
  gc();
  let t = now();
  const sessions: LuoSession[] = [];
  for (let s = 0; s < S; s++) {
    const sess = luo.createSession(`vm-${s}`);
    sessions.push(sess);
    for (let f = 0; f < F; f++) {
      const size = sizeOf(s * F + f);
      const fd = memfdCreate(ctx, `guest-ram-${s}-${f}`, 0);
      fd.ftruncate(size);
      offsets(size).forEach((off, w) => check(fd.pwrite(stamp(s, f, w), off) === PAGE_SIZE, '(c) short write'));
      fd.pos = f * 1000 + s;
      luo.sessions.preserveFile(sess, BigInt(s * 100 + f), fd);
      fd.close(); // LUO keeps its own reference
    }
  }
  p.create = now() - t;
  const dataPages = total / PAGE_SIZE;
  let folioCount = 0;
  for (const sess of sessions) for (const lf of sess.fileSet.files) folioCount += (lf.file as MemfdFile).inode.folios().length;
  check(folioCount === total / (PAGE_SIZE << order), `(c) ${folioCount} folios, want order-${order} folios only`);
  const sessionBlocks = luo.sessions.outgoingBlocks;
  const fileBlocks = sessions.reduce((a, s) => a + s.fileSet.blocks.nblocks, 0);
  const hostPreserved = m.memory.stats().hostBytes - host0;
  const touched = m.memory.stats().touchedPages - touched0;
  let preservedAtReboot = 0;
  let trackerPages = 0;
  const kx = timedKexec(m, (old) => {
    preservedAtReboot = old.kho!.preservedPages;
    trackerPages = old.kho!.trackerPages;
  });
  Object.assign(p, { serialize: kx.serialize, handover: kx.handover, boot: kx.boot });
  k = kx.next;
  luo = k.luo!;
  gc();
  t = now();
  luo.open();
  p.deserialize = now() - t;
  check(luo.sessions.incoming.length === S, `(c) ${luo.sessions.incoming.length} sessions, want ${S}`);
  gc();
  t = now();
  const files: MemfdFile[] = [];
  const inc: LuoSession[] = [];
  for (let s = 0; s < S; s++) {
    const sess = luo.retrieveSession(`vm-${s}`);
    inc.push(sess);
    for (let f = 0; f < F; f++) files.push(luo.sessions.retrieveFile(sess, BigInt(s * 100 + f)) as MemfdFile);
  }
  p.retrieve = now() - t;
  // Verify: sizes, positions, the written pages, and a hole that must read as zeros.
  for (let s = 0; s < S; s++) {
    for (let f = 0; f < F; f++) {
      const fd = files[s * F + f]!;
      const size = sizeOf(s * F + f);
      check(fd.stat().size === size, `(c) memfd ${s}/${f}: size ${fd.stat().size}, want ${size}`);
      check(fd.pos === f * 1000 + s, `(c) memfd ${s}/${f}: pos ${fd.pos}`);
      check(fd.inode.cachedPages === size / PAGE_SIZE, `(c) memfd ${s}/${f}: ${fd.inode.cachedPages} pages cached, want ${size / PAGE_SIZE}`);
      if ((s * F + f) % 37 === 0 || s === S - 1) {
        offsets(size).forEach((off, w) => check(Buffer.from(fd.pread(PAGE_SIZE, off)).equals(Buffer.from(stamp(s, f, w))), `(c) memfd ${s}/${f}: bytes at ${off} differ`));
        check(fd.pread(PAGE_SIZE, 5 * PAGE_SIZE).every((b) => b === 0), `(c) memfd ${s}/${f}: hole does not read as zeros`);
      }
    }
  }
  gc();
  t = now();
  for (const sess of inc) {
    luo.sessions.finish(sess);
    luo.sessions.release(sess);
  }
  p.finish = now() - t;
  const luoMeta = preservedAtReboot - kho0 - dataPages + 2; // + luo_ser and FLB header, preserved at boot (in kho0)
  const memfdMeta = luoMeta - sessionBlocks - fileBlocks - 2;
  printPhases(p, 'create + preserve');
  out(`  retrieve per folio: ${((p.retrieve * 1000) / folioCount).toFixed(2)} us (${folioCount} folios in ${S * F} memfds; the sessions' and files' own retrieve included)`);
  out(`  ${metadataLine([['session blocks', sessionBlocks], ['file blocks', fileBlocks], ['luo_ser + FLB header', 2], ['memfd descriptors + folio arrays', memfdMeta]])}`);
  out(`  (preserved pages that are not data, counted from KHO: ${preservedAtReboot} preserved - ${dataPages} data - ${kho0 - 2} KHO's own at boot; KHO's tracker adds ${trackerPages} pages of its own)`);
  const fss = Array.from({ length: ROUNDS }, () => floor(S, LuoSessionSer.size, (i) => `vm-${i}`, 'string'));
  const ffs = Array.from({ length: ROUNDS }, () => floor(nFiles, LuoFileSer.size, () => 'memfd-v2', 'token'));
  const fs = { write: median(fss.map((f) => f.write)), read: median(fss.map((f) => f.read)) };
  const ff = { write: median(ffs.map((f) => f.write)), read: median(ffs.map((f) => f.read)) };
  floorLines(p, { write: fs.write + ff.write, read: fs.read + ff.read }, `${S} x ${LuoSessionSer.size}-byte session entries + ${nFiles} x ${LuoFileSer.size}-byte file entries`);
  out(`  (serialize here also runs memfd freeze for ${nFiles} files; the folio arrays were written at preserve, and are read at retrieve)`);
  out(`  restored: ${S} sessions, ${nFiles} memfds, sizes/positions/page counts checked, ${Math.ceil(nFiles / 37)}+ memfds' written pages and holes compared`);
  out(`  untouched memory costs nothing: after preserving ${bytes(total)}, the machine's memory holds ${touched} more pages (${3 * nFiles} written data pages + metadata), host bytes +${bytes(hostPreserved)}`);
  check(hostPreserved < 3 * nFiles * (PAGE_SIZE + 1024) + 64 * MiB, `(c) untouched memory cost host memory: ${bytes(hostPreserved)}`);
  out(`  ${hostLine('after (c)', m)}`);
}

// ------------------------------------------------------------------ entry point

export function runLuoBench(): void {
  const t0 = now();
  out(`LUO at scale${SCALE !== 1 ? ` (LUO_BENCH_SCALE=${SCALE})` : ''}: (a) and (b) medians of ${ROUNDS} live updates, each followed by a floor run; (c) one live update, floors median of ${ROUNDS}`);
  const only = (process.env.LUO_BENCH_ONLY ?? 'abc').split('');
  const cases: Array<[string, () => void]> = [['a', benchSessions], ['b', benchFiles], ['c', benchHost]];
  for (const [name, c] of cases) {
    if (!only.includes(name)) continue;
    c();
    gc();
    out(`  ${hostLine('after gc')}`);
  }
  const peak = process.resourceUsage().maxRSS * 1024;
  out(`total ${ms(now() - t0)}; peak rss ${bytes(peak)} (target < 2 GiB: ${peak < 2 * GiB ? 'met' : 'MISSED'})`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runLuoBench();
