/**
 * `luo inspect FILE`: decode a hand-over artefact (root KHO FDT, sub-blob, luo memory image, ELF
 * core dump, directory of captured pages) and print the whole tree, or --json. Exit 0 when there is
 * no problem, 1 when there are problems (everything decodable is still printed), 2 for usage errors.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectPath } from '../inspect/inspect.ts';
import { toHuman, toJson } from '../inspect/format.ts';
import { isFault, type InputKind } from '../inspect/report.ts';
import { debugfsFiles, INPUT_KINDS, PAGE_FILE } from '../inspect/sources.ts';

export interface InspectCliOptions {
  json?: boolean;
  kind?: string;
  fdtAddr?: string;
  /** Show the first bytes of each memfd folio. */
  memfdContents?: boolean;
  /** How many (default 16). */
  memfdBytes?: string;
  /** Write each preserved file's content and a manifest into this directory. */
  extract?: string;
}

interface ManifestFile { token: string; size: number; pos: number; seals: number | null; sha256: string; path: string }

/** A session name as a directory name: anything but [A-Za-z0-9._-] percent-encoded; never "." or "..". */
const dirName = (name: string): string => {
  const s = name.replace(/[^A-Za-z0-9._-]/g, (c) => [...new TextEncoder().encode(c)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''));
  return s === '' || s === '.' || s === '..' ? `%${s.length ? '2e'.repeat(s.length) : 'empty'}` : s;
};

/** Standard input as a file (artefacts are read by path: ELF cores and images are mapped in parts). */
function stdinToFile(): { path: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'luo-inspect-'));
  const path = join(dir, 'stdin');
  writeFileSync(path, readFileSync(0));
  return { path, done: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface InspectIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const processIo: InspectIo = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };

export async function runInspect(file: string, opts: InspectCliOptions, io: InspectIo = processIo): Promise<number> {
  if (opts.kind !== undefined && !INPUT_KINDS.includes(opts.kind as InputKind)) {
    io.stderr(`luo inspect: --kind must be one of ${INPUT_KINDS.join(', ')} (got ${JSON.stringify(opts.kind)})\n`);
    return 2;
  }
  let fdtAddr: bigint | undefined;
  if (opts.fdtAddr !== undefined) {
    if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(opts.fdtAddr)) { io.stderr(`luo inspect: --fdt-addr ${JSON.stringify(opts.fdtAddr)} is not a number (0x... or decimal)\n`); return 2; }
    fdtAddr = BigInt(opts.fdtAddr);
  }
  let contents = 0;
  if (opts.memfdContents || opts.memfdBytes !== undefined) {
    contents = opts.memfdBytes === undefined ? 16 : Number(opts.memfdBytes);
    if (!Number.isInteger(contents) || contents < 1 || contents > 4096) { io.stderr('luo inspect: --memfd-bytes takes a byte count from 1 to 4096\n'); return 2; }
  }
  // A KHO debugfs capture holds the FDTs and sub-blobs, not the preserved memory: each is decoded
  // as the blob it is, and the answer says what a full decode needs.
  if (file !== '-' && !opts.kind && existsSync(file) && statSync(file).isDirectory() && !readdirSync(file).some((f) => PAGE_FILE.test(f))) {
    const parts = debugfsFiles(file);
    if (parts.length) return inspectDebugfs(file, parts, opts, io);
  }
  const manifest = new Map<string, ManifestFile[]>();
  if (opts.extract !== undefined) {
    try {
      mkdirSync(opts.extract, { recursive: true });
    } catch (e) {
      io.stderr(`luo inspect: cannot create ${opts.extract}: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const stdin = file === '-' ? stdinToFile() : undefined;
  let report;
  try {
    report = await inspectPath(stdin?.path ?? file, {
      ...(opts.kind ? { kind: opts.kind as InputKind } : {}),
      ...(fdtAddr !== undefined ? { fdtAddr } : {}),
      memfdContents: contents,
      ...(opts.extract !== undefined
        ? {
          onFileData: (s, f, data) => {
            const m = f.memfd!;
            const rel = join(dirName(s.name), `0x${f.token.toString(16)}.bin`);
            mkdirSync(join(opts.extract!, dirName(s.name)), { recursive: true });
            writeFileSync(join(opts.extract!, rel), data);
            const list = manifest.get(s.name) ?? [];
            list.push({ token: `0x${f.token.toString(16)}`, size: Number(m.size), pos: Number(m.pos), seals: m.seals ?? null, sha256: m.sha256!, path: rel });
            manifest.set(s.name, list);
          },
        }
        : {}),
    });
  } finally {
    stdin?.done();
  }
  if (opts.extract !== undefined) {
    const sessions = [...manifest].map(([name, files]) => ({ name, files }));
    writeFileSync(join(opts.extract, 'manifest.json'), `${JSON.stringify({ source: file, sessions }, null, 2)}\n`);
  }
  if (stdin) report.input.path = '-';
  io.stdout(opts.json ? toJson(report) : toHuman(report));
  const faults = report.problems.filter(isFault);
  if (faults.length && !opts.json) io.stderr(`luo inspect: ${file}: ${faults.length} problem(s)\n`);
  return faults.length ? 1 : 0;
}

/** `luo inspect DIR` on a captured /sys/kernel/debug/kho: every FDT and sub-blob, one by one. */
async function inspectDebugfs(dir: string, parts: string[], opts: InspectCliOptions, io: InspectIo): Promise<number> {
  const reports = [];
  const consumed: string[] = [];
  for (const p of parts) {
    // the incoming luo_ser: early boot reads it and frees its page (kho_restore_free), so a capture
    // taken after boot shows whatever reused that memory: stale, not a fault
    if (p === join('in', 'sub_fdts', 'LUO') && !Buffer.from(readFileSync(join(dir, p))).subarray(0, 7).equals(Buffer.from('luo-v5\0'))) {
      consumed.push(p);
      continue;
    }
    const report = await inspectPath(join(dir, p), {});
    if (p === join('out', 'fdt')) {
      // debugfs fixes out/fdt's size when the file is created; the FDT grows afterwards
      report.problems = report.problems.map((x) => (x.message.includes('FDT_ERR_TRUNCATED')
        ? { ...x, severity: 'info' as const, message: `${x.message} (debugfs keeps out/fdt at the size it had when created, and the FDT grew since: the bytes shown are the real first ones)` }
        : x));
    }
    reports.push({ file: p, report });
  }
  const note = 'stale: the kernel that booted from this hand-over read this luo_ser in early boot and freed its page (kho_restore_free), so the capture shows whatever reused the memory; the real one is in a memory capture';
  const faults = reports.reduce((n, r) => n + r.report.problems.filter(isFault).length, 0);
  if (opts.json) {
    io.stdout(toJson({ debugfs: dir, files: reports, consumed: consumed.map((file) => ({ file, note })) } as never));
  } else {
    io.stdout(`${dir}: a KHO debugfs capture (${parts.length} file(s)). It holds the root FDT and the sub-blobs, not the preserved memory: sessions, files and the tracker need a memory capture (a pages directory, an ELF core, a raw dump)\n`);
    for (const r of reports) io.stdout(`\n== ${r.file}\n${toHuman(r.report)}`);
    for (const c of consumed) io.stdout(`\n== ${c}\n${note}\n`);
  }
  if (faults && !opts.json) io.stderr(`luo inspect: ${dir}: ${faults} problem(s)\n`);
  return faults ? 1 : 0;
}
