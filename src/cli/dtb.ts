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
import { headerProblems } from '../fdt/ro.ts';

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

/** How far a truncated blob is zero-filled to show what its first bytes hold. */
const MAX_FILL = 1 << 20;

/**
 * A blob whose only fault is that the buffer ends before totalsize, zero-filled up to totalsize so
 * the part that is there can be shown; undefined when the header has any other fault.
 */
function zeroFilled(blob: Uint8Array): Uint8Array | undefined {
  const hp = headerProblems(blob);
  if (hp.length !== 1 || hp[0]!.code !== 'TRUNCATED' || hp[0]!.offset !== 4 || !/available bytes/.test(hp[0]!.message)) return undefined;
  const total = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(4);
  if (total - blob.length > MAX_FILL) return undefined;
  const out = new Uint8Array(total);
  out.set(blob);
  return out;
}

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

  let source = blob;
  let note = '';
  const filled = problems.length ? zeroFilled(blob) : undefined;
  if (filled) {
    source = filled;
    note = `blob ends at byte ${blob.length} of ${filled.length}; the missing bytes are shown as zeros`;
    io.stderr(`luo dtb: ${name}: ${note}\n`);
  }
  try {
    if (opts.json) {
      const out = { problems, ...(note ? { note } : {}), ...toJson(source) };
      io.stdout(Buffer.from(JSON.stringify(out, null, 2) + '\n'));
    } else {
      io.stdout(Buffer.from((note ? `// luo: ${note}\n` : '') + toDts(source), 'latin1'));
    }
  } catch (e) {
    if (!(e instanceof FdtError)) throw e;
    if (!problems.length) io.stderr(`luo dtb: ${name}: ${e.message}\n`);
    if (opts.json) io.stdout(Buffer.from(JSON.stringify({ problems }, null, 2) + '\n'));
    return 1;
  }
  return problems.length ? 1 : 0;
}
