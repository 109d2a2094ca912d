/**
 * Runs the same FDT operation scripts through libfdt (the C driver beside this file, compiled with
 * gcc against Debian's libfdt-dev) and through luo's FdtSw/FdtRw/wip, so tests can compare every
 * return value and every byte. The reference tools are required: a missing one fails loudly.
 */
import { spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdtError } from '../../../src/fdt/format.ts';
import { FdtSw } from '../../../src/fdt/sw.ts';
import { FdtRw } from '../../../src/fdt/rw.ts';
import { FdtView } from '../../../src/fdt/walk.ts';
import { nopNode, nopProperty, setPropInplace } from '../../../src/fdt/wip.ts';

const here = dirname(fileURLToPath(import.meta.url));
const TOOLS_HINT = 'install them with: sudo apt-get install gcc libfdt-dev device-tree-compiler (or run `npm test`, whose pretest does it)';

/** A node selector: "#k" = the k-th node in fdt_next_node order (0 = root), or a raw offset. */
export type Sel = `#${number}` | number;

export type Op =
  | readonly ['arena', number, number]
  | readonly ['load', number, Uint8Array]
  | readonly ['use', number]
  | readonly ['create', number, number, number?]
  | readonly ['resize', number, number]
  | readonly ['rsv', bigint, bigint]
  | readonly ['finishrsv']
  | readonly ['begin', string]
  | readonly ['prop', string, Uint8Array]
  | readonly ['end']
  | readonly ['finish']
  | readonly ['openinto', number, number, number]
  | readonly ['addnode', Sel, string]
  | readonly ['setprop' | 'appendprop' | 'setpropinplace', Sel, string, Uint8Array]
  | readonly ['delprop' | 'nopprop' | 'subnode' | 'getprop' | 'setname', Sel, string]
  | readonly ['delnode' | 'nopnode' | 'node', Sel]
  | readonly ['pack']
  | readonly ['addmemrsv', bigint, bigint]
  | readonly ['delmemrsv', number]
  | readonly ['path', string]
  | readonly ['nodebyprop', Sel, string, Uint8Array]
  | readonly ['sum' | 'dump', number, number];

const hex = (b: Uint8Array): string => (b.length === 0 ? '-' : Buffer.from(b).toString('hex'));
const strHex = (s: string): string => hex(Buffer.from(s, 'latin1'));

function opLine(op: Op): string {
  const parts = op.map((x) => {
    if (x instanceof Uint8Array) return hex(x);
    if (typeof x === 'bigint') return x.toString(16);
    return String(x);
  });
  // names and paths travel as hex
  switch (op[0]) {
    case 'begin': case 'path': parts[1] = strHex(op[1]); break;
    case 'prop': parts[1] = strHex(op[1]); break;
    case 'addnode': case 'setprop': case 'appendprop': case 'setpropinplace': case 'delprop':
    case 'nopprop': case 'subnode': case 'getprop': case 'setname': case 'nodebyprop':
      parts[2] = strHex(op[2]); break;
    default: break;
  }
  return parts.join(' ');
}

let driverPath: string | undefined;

/** Compiles the C driver once per source version (cached in the OS temp dir). */
export function libfdtDriver(): string {
  if (driverPath) return driverPath;
  const src = join(here, 'libfdt_driver.c');
  const code = readFileSync(src);
  const tag = createHash('sha256').update(code).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'luo-fdt-driver');
  const bin = join(dir, `libfdt_driver-${tag}`);
  if (!existsSync(bin)) {
    if (!existsSync('/usr/include/libfdt.h')) throw new Error(`libfdt-dev is missing (/usr/include/libfdt.h); ${TOOLS_HINT}`);
    mkdirSync(dir, { recursive: true });
    const tmp = `${bin}.${process.pid}`;
    try {
      execFileSync('gcc', ['-O2', '-Wall', '-o', tmp, src, '-lfdt'], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { code?: string; stderr?: Buffer };
      if (err.code === 'ENOENT') throw new Error(`gcc is missing; ${TOOLS_HINT}`);
      throw new Error(`compiling the libfdt driver failed: ${err.stderr?.toString() ?? String(e)}; ${TOOLS_HINT}`);
    }
    renameSync(tmp, bin);
  }
  driverPath = bin;
  return bin;
}

/** Runs scripts through libfdt; one output line per op, per script. */
export function runLibfdt(scripts: readonly (readonly Op[])[]): string[][] {
  const bin = libfdtDriver();
  const input = scripts.map((s) => [...s.map(opLine), 'sync'].join('\n')).join('\n') + '\n';
  const res = spawnSync(bin, [], { input, maxBuffer: 1 << 30 });
  if (res.status !== 0) throw new Error(`libfdt driver failed (${res.status}): ${res.stderr.toString()}`);
  const lines = res.stdout.toString().split('\n');
  const out: string[][] = [];
  let cur: string[] = [];
  for (const l of lines) {
    if (l === 'ok') { out.push(cur); cur = []; } else if (l !== '') cur.push(l);
  }
  return out;
}

/** Runs one script through luo, with the same output lines the driver prints. */
export function runLuo(script: readonly Op[]): string[] {
  let arena = new Uint8Array(65536);
  let cur = 0;
  let sw: FdtSw | undefined;
  const out: string[] = [];
  const tree = (): Uint8Array => arena.subarray(cur);
  const node = (s: Sel): number => {
    if (typeof s === 'number') return s;
    const k = Number(s.slice(1));
    const v = new FdtView(tree());
    let off = 0;
    for (let i = 0; i < k; i++) {
      off = v.nextNode(off, false);
      if (off < 0) return off;
    }
    return off;
  };
  const rw = (): FdtRw => new FdtRw(tree());
  for (const op of script) {
    let r = 0;
    try {
      switch (op[0]) {
        case 'arena': arena = new Uint8Array(op[1]).fill(op[2]); cur = 0; sw = undefined; continue;
        case 'load': arena.set(op[2], op[1]); continue;
        case 'use': cur = op[1]; continue;
        case 'create': cur = op[1]; sw = undefined; sw = new FdtSw(arena.subarray(op[1], op[1] + Math.max(op[2], 0)), op[3] ?? 0); break;
        case 'resize': swOf(sw).resize(arena.subarray(op[1], op[1] + op[2])); cur = op[1]; break;
        case 'rsv': swOf(sw).addReservemapEntry(op[1], op[2]); break;
        case 'finishrsv': swOf(sw).finishReservemap(); break;
        case 'begin': swOf(sw).beginNode(op[1]); break;
        case 'prop': swOf(sw).property(op[1], op[2]); break;
        case 'end': swOf(sw).endNode(); break;
        case 'finish': swOf(sw).finish(); break;
        case 'openinto': {
          FdtRw.openInto(arena.subarray(op[1]), arena.subarray(op[2]), op[3]);
          cur = op[2];
          break;
        }
        case 'addnode': r = rw().addSubnode(node(op[1]), op[2]); break;
        case 'setprop': rw().setProp(node(op[1]), op[2], op[3]); break;
        case 'appendprop': rw().appendProp(node(op[1]), op[2], op[3]); break;
        case 'setpropinplace': setPropInplace(tree(), node(op[1]), op[2], op[3]); break;
        case 'delprop': rw().delProp(node(op[1]), op[2]); break;
        case 'nopprop': nopProperty(tree(), node(op[1]), op[2]); break;
        case 'delnode': rw().delNode(node(op[1])); break;
        case 'nopnode': nopNode(tree(), node(op[1])); break;
        case 'setname': rw().setName(node(op[1]), op[2]); break;
        case 'pack': rw().pack(); break;
        case 'addmemrsv': rw().addMemRsv(op[1], op[2]); break;
        case 'delmemrsv': rw().delMemRsv(op[1]); break;
        case 'subnode': r = rw().subnodeOffset(node(op[1]), op[2]); break;
        case 'path': r = rw().pathOffset(op[1]); break;
        case 'node': r = node(op[1]); break;
        case 'nodebyprop': r = rw().nodeOffsetByProp(op[2], op[3], node(op[1])); break;
        case 'getprop': {
          const v = rw().getProp(node(op[1]), op[2]);
          out.push(v ? `r ${v.length} ${hex(v)}` : 'r -1');
          continue;
        }
        case 'sum': out.push(`s ${fnv(arena.subarray(op[1], op[1] + op[2]))}`); continue;
        case 'dump': out.push(hex(arena.subarray(op[1], op[1] + op[2]))); continue;
      }
    } catch (e) {
      if (!(e instanceof FdtError)) throw e;
      r = e.libfdtValue;
    }
    out.push(`r ${r}`);
  }
  return out;
}

function swOf(sw: FdtSw | undefined): FdtSw {
  if (!sw) throw new FdtError('BADMAGIC', 0, 'no sequential-write tree');
  return sw;
}

function fnv(b: Uint8Array): string {
  let h = 2166136261;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** Describes the first difference between two outputs, with the op that produced it. */
export function firstDifference(script: readonly Op[], want: string[], got: string[]): string | undefined {
  const lines = script.filter((op) => !['arena', 'load', 'use'].includes(op[0]));
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i] !== got[i]) {
      const op = lines[i];
      const w = want[i] ?? '<none>';
      const g = got[i] ?? '<none>';
      let at = '';
      if (w.length > 40 && g.length > 40) {
        let j = 0;
        while (j < w.length && w[j] === g[j]) j++;
        at = ` (first differing byte at ${j >> 1}: libfdt ${w.slice(j & ~1, (j & ~1) + 32)} luo ${g.slice(j & ~1, (j & ~1) + 32)})`;
      }
      return `step ${i} ${op ? opLine(op) : '?'}: libfdt ${w.slice(0, 120)} / luo ${g.slice(0, 120)}${at}`;
    }
  }
  return undefined;
}

/** Runs dtc/fdtget; a missing tool is a clear failure, never a skip. */
export function runTool(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'latin1', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { code?: string; stderr?: string };
    if (err.code === 'ENOENT') throw new Error(`${cmd} is missing: install device-tree-compiler (sudo apt-get install device-tree-compiler, or run npm test)`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr ?? String(e)}`);
  }
}
