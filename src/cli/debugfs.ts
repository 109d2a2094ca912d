/**
 * `luo debugfs [PATH]`: /sys/kernel/debug/kho of a running daemon's kernel (the DEBUGFS request,
 * docs/protocol.md 4.9). Without PATH the files are listed; a device tree (out/fdt, in/fdt,
 * sub_fdts/*) is printed as DTS like `dtc -I dtb -O dts`, text files as they are.
 */
import { bold, dim } from './style.ts';
import { connectDaemon } from './daemon-client.ts';
import { LuoClient } from '../client/index.ts';
import { errnoError } from '../client/connection.ts';
import { decodePrefix, MSG } from '../daemon/wire.ts';
import { toDts } from '../fdt/dts.ts';
import { isLuoError } from '../errno.ts';

export interface DebugfsFile {
  path: string;
  size: number;
  data: string;
}

export interface DebugfsReply {
  profile: string;
  release: string;
  liveupdateNum: number;
  files: DebugfsFile[];
  /** The whole root FDT from memory (base64). */
  rootFdt?: string;
}

export async function fetchDebugfs(c: LuoClient): Promise<DebugfsReply> {
  const r = decodePrefix(await c.control.request(MSG.DEBUGFS, new Uint8Array(0)));
  if (r.ret < 0) throw errnoError(r.errno, `DEBUGFS: ${new TextDecoder().decode(r.rest) || 'failed'}`);
  return JSON.parse(new TextDecoder().decode(r.rest)) as DebugfsReply;
}

const FDT_MAGIC = 0xd00dfeed;
const isFdt = (b: Uint8Array): boolean => b.length >= 40 && new DataView(b.buffer, b.byteOffset).getUint32(0, false) === FDT_MAGIC;

/** "/sys/kernel/debug/kho/out/fdt", "kho/out/fdt", "/out/fdt/" -> "out/fdt". */
export function normalizeDebugfsPath(p: string): string {
  let s = p.trim().replace(/\/+/g, '/');
  s = s.replace(/^\/?sys\/kernel\/debug\//, '').replace(/^\/?kho\//, '').replace(/^\/+/, '').replace(/\/+$/, '');
  return s === 'kho' ? '' : s;
}


export interface DebugfsOptions {
  socket?: string;
  json?: boolean;
  raw?: boolean;
}

export async function runDebugfs(path: string | undefined, opts: DebugfsOptions): Promise<number> {
  const fail = (msg: string, code = 1): number => {
    process.stderr.write(`luo debugfs: ${msg}\n`);
    return code;
  };
  const c = await connectDaemon('debugfs', opts.socket);
  if (!c) return 1;
  let d: DebugfsReply;
  try {
    d = await fetchDebugfs(c);
  } catch (e) {
    return fail(isLuoError(e) && e.errno === 'ENOENT' ? `${e.message.replace(/^[A-Z]+: DEBUGFS: /, '')}` : `the daemon did not answer DEBUGFS: ${(e as Error).message} (a daemon older than this luo?)`);
  } finally {
    await c.close();
  }
  const want = normalizeDebugfsPath(path ?? '');
  const file = d.files.find((f) => f.path === want);
  if (!file) {
    const under = d.files.filter((f) => want === '' || f.path.startsWith(`${want}/`));
    if (under.length === 0) {
      return fail(`no such file or directory: ${want} (under /sys/kernel/debug/kho: ${d.files.map((f) => f.path).join(', ')})`);
    }
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ profile: d.profile, release: d.release, liveupdateNum: d.liveupdateNum, files: under.map((f) => ({ path: f.path, size: f.size })) }, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`${dim(`/sys/kernel/debug/kho (${d.profile}, ${d.release}, liveupdate_num ${d.liveupdateNum})`)}\n`);
    const w = Math.max(...under.map((f) => f.path.length));
    for (const f of under) process.stdout.write(`${bold(f.path.padEnd(w))}  ${dim(`${f.size} bytes`)}\n`);
    return 0;
  }
  const bytes = Buffer.from(file.data, 'base64');
  if (opts.raw) {
    process.stdout.write(bytes);
    return 0;
  }
  let text: string;
  let kind: 'dts' | 'text' | 'binary';
  if (isFdt(bytes)) {
    try {
      text = toDts(bytes);
      kind = 'dts';
    } catch (e) {
      const total = bytes.length >= 8 ? bytes.readUInt32BE(4) : 0;
      if (want === 'out/fdt' && total > bytes.length && d.rootFdt) {
        // As on the kernel: out/fdt keeps the size the root had when debugfs created the file.
        process.stderr.write(`luo debugfs: out/fdt is truncated (${bytes.length} bytes, the tree is ${total}) as the kernel's debugfs file is; printing the root FDT from memory\n`);
        text = toDts(Buffer.from(d.rootFdt, 'base64'));
        kind = 'dts';
      } else {
        return fail(`${want} is not a valid device tree: ${(e as Error).message} (use --raw for the bytes)`);
      }
    }
  } else if (bytes.every((b) => b === 0x0a || b === 0x09 || (b >= 0x20 && b < 0x7f))) {
    text = bytes.toString('latin1');
    kind = 'text';
  } else {
    text = `${bytes.length} bytes of binary data (use --raw)\n`;
    kind = 'binary';
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ path: want, size: file.size, kind, text: kind === 'binary' ? null : text, base64: file.data }, null, 2)}\n`);
  else process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  return 0;
}
