/**
 * `luo dtb FILE|-`: decompile a flattened device tree blob (a KHO FDT from debugfs, say) to DTS, as
 * `dtc -I dtb -O dts` prints it, or to JSON with --json. Problems found by the full check go to
 * stderr with their byte offsets and make the exit code 1; whatever can still be read is printed.
 */
import { readFile } from 'node:fs/promises';
import { checkFdt, type FdtProblem } from '../fdt/check.ts';
import { toDts } from '../fdt/dts.ts';
import { toJson } from '../fdt/json.ts';
import { FdtError } from '../fdt/format.ts';

export interface DtbIo {
  stdout: (b: Uint8Array) => void;
  stderr: (s: string) => void;
  stdin: () => Promise<Uint8Array>;
}

const processIo: DtbIo = {
  stdout: (b) => process.stdout.write(b),
  stderr: (s) => process.stderr.write(s),
  stdin: async () => {
    const parts: Buffer[] = [];
    for await (const c of process.stdin) parts.push(c as Buffer);
    return Buffer.concat(parts);
  },
};

export async function runDtb(file: string, opts: { json?: boolean }, io: DtbIo = processIo): Promise<number> {
  let blob: Uint8Array;
  try {
    blob = file === '-' ? await io.stdin() : await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file (ENOENT)' : code === 'EISDIR' ? 'it is a directory (EISDIR)' : e instanceof Error ? e.message : String(e);
    io.stderr(`luo dtb: cannot read ${file}: ${why}\n`);
    return 1;
  }
  const name = file === '-' ? '<stdin>' : file;
  const problems: FdtProblem[] = checkFdt(blob);
  for (const p of problems) io.stderr(`luo dtb: ${name}: FDT_ERR_${p.code} at offset ${p.offset}: ${p.message}\n`);

  // A blob that ends before its totalsize is refused as dtc refuses it ("EOF before reading N
  // bytes"): nothing printed from a partial tree. `luo inspect` decodes what is there.
  const total = blob.length >= 8 ? new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(4) : 0;
  if (problems.some((p) => p.code === 'TRUNCATED') && total > blob.length) {
    io.stderr(`luo dtb: ${name}: truncated: the blob ends at byte ${blob.length} of its totalsize ${total}; nothing printed (\`luo inspect ${name === '<stdin>' ? 'FILE' : name}\` decodes what is there)\n`);
    if (opts.json) io.stdout(Buffer.from(JSON.stringify({ problems }, null, 2) + '\n'));
    return 1;
  }
  const source = blob;
  try {
    if (opts.json) {
      const out = { problems, ...toJson(source) };
      io.stdout(Buffer.from(JSON.stringify(out, null, 2) + '\n'));
    } else {
      io.stdout(Buffer.from(toDts(source), 'latin1'));
    }
  } catch (e) {
    if (!(e instanceof FdtError)) throw e;
    if (!problems.length) io.stderr(`luo dtb: ${name}: ${e.message}\n`);
    if (opts.json) io.stdout(Buffer.from(JSON.stringify({ problems }, null, 2) + '\n'));
    return 1;
  }
  return problems.length ? 1 : 0;
}
