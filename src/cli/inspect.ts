/**
 * `luo inspect FILE`: decode a hand-over artefact (root KHO FDT, sub-blob, luo memory image, ELF
 * core dump, directory of captured pages) and print the whole tree, or --json. Exit 0 when there is
 * no problem, 1 when there are problems (everything decodable is still printed), 2 for usage errors.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectPath } from '../inspect/inspect.ts';
import { toHuman, toJson } from '../inspect/format.ts';
import { isFault, type InputKind } from '../inspect/report.ts';
import { INPUT_KINDS } from '../inspect/sources.ts';

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
async function stdinToFile(): Promise<{ path: string; done: () => void }> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  const dir = mkdtempSync(join(tmpdir(), 'luo-inspect-'));
  const path = join(dir, 'stdin');
  writeFileSync(path, Buffer.concat(parts));
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
  const manifest = new Map<string, ManifestFile[]>();
  if (opts.extract !== undefined) {
    try {
      mkdirSync(opts.extract, { recursive: true });
    } catch (e) {
      io.stderr(`luo inspect: cannot create ${opts.extract}: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const stdin = file === '-' ? await stdinToFile() : undefined;
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
