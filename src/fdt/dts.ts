/**
 * Device tree source text from a blob, byte for byte what Debian's `dtc -I dtb -O dts` (1.6.1)
 * prints, including its guess of each value's type. Mirrors dtc's flattree.c (reading: properties
 * before subnodes, NOPs dropped) and treesource.c (printing), plus the one tree edit its checks make.
 */
import { dtcRuleProblems, nameMatchesNode } from './check.ts';
import { Fdt, type FdtNode } from './ro.ts';

/** dtc's isstring(): printable ASCII, NUL, or one of the C escapes \a \b \t \n \v \f \r. */
const STRING_CHAR = (() => {
  const t = new Uint8Array(256);
  for (let c = 0x20; c < 0x7f; c++) t[c] = 1;
  for (const c of [0, 7, 8, 9, 10, 11, 12, 13]) t[c] = 1;
  return t;
})();

const ESCAPES: Record<number, string> = {
  0: '\\0', 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 0x22: '\\"', 0x5c: '\\\\',
};

export type DtsValueType = 'empty' | 'string' | 'cells' | 'bytes';

/**
 * dtc's guess_value_type for a value without type markers: a string when it ends in NUL, every byte
 * is a string character and NULs are at most half the bytes; else 32-bit cells when the length is a
 * multiple of 4; else bytes.
 */
export function guessValueType(v: Uint8Array): DtsValueType {
  const len = v.length;
  if (len === 0) return 'empty';
  let nul = 0;
  let notString = 0;
  for (let i = 0; i < len; i++) {
    const c = v[i]!;
    if (c === 0) nul++;
    else if (!STRING_CHAR[c]) notString++;
  }
  if (v[len - 1] === 0 && notString === 0 && nul <= len - nul) return 'string';
  return len % 4 === 0 ? 'cells' : 'bytes';
}

const hex2 = (n: number): string => (n < 16 ? '0' : '') + n.toString(16);

/** A value as dtc writes it after " = " (without the trailing ';'). */
export function formatValue(v: Uint8Array): string {
  switch (guessValueType(v)) {
    case 'empty':
      return '';
    case 'string': {
      let s = '"';
      for (let i = 0; i < v.length - 1; i++) {
        const c = v[i]!;
        s += ESCAPES[c] ?? String.fromCharCode(c);
      }
      return s + '"';
    }
    case 'cells': {
      const parts: string[] = [];
      for (let i = 0; i < v.length; i += 4) {
        const w = ((v[i]! << 24) | (v[i + 1]! << 16) | (v[i + 2]! << 8) | v[i + 3]!) >>> 0;
        parts.push('0x' + (w < 16 ? '0' : '') + w.toString(16));
      }
      return `<${parts.join(' ')}>`;
    }
    case 'bytes': {
      const parts: string[] = [];
      for (let i = 0; i < v.length; i++) parts.push(hex2(v[i]!));
      return `[${parts.join(' ')}]`;
    }
  }
}

const u64hex = (n: bigint): string => '0x' + n.toString(16).padStart(16, '0');

/**
 * The DTS text of a blob whose header is usable, as `dtc -I dtb -O dts -f` prints it: when the
 * tree passes the dtc checks that run first, a "name" property equal to the node's base name is
 * dropped, as dtc does. Throws FdtError when the structure cannot be read at all. The text uses one
 * code unit per blob byte; write it out as Latin-1 to get dtc's exact bytes.
 */
export function toDts(blob: Uint8Array | Fdt): string {
  const fdt = blob instanceof Fdt ? blob : Fdt.open(blob);
  const root = fdt.tree();
  const rules = dtcRuleProblems(root, fdt.header.off_dt_struct);
  const dropNames = rules.firstFailing === undefined || rules.firstFailing === 'name_properties' || rules.firstFailing === 'explicit_phandles';
  const lines: string[] = ['/dts-v1/;', ''];
  for (const r of fdt.reserveMap()) lines.push(`/memreserve/\t${u64hex(r.address)} ${u64hex(r.size)};`);
  writeNode(lines, root, 0, dropNames);
  return lines.join('\n') + '\n';
}

function writeNode(lines: string[], node: FdtNode, level: number, dropNames: boolean): void {
  const tab = '\t'.repeat(level);
  lines.push(`${tab}${node.name === '' ? '/' : node.name} {`);
  const nameProp = node.properties.find((p) => p.name === 'name');
  const drop = dropNames && nameProp !== undefined && nameMatchesNode(nameProp.value, node.name) ? nameProp : undefined;
  for (const p of node.properties) {
    if (p === drop) continue;
    lines.push(p.value.length === 0 ? `${tab}\t${p.name};` : `${tab}\t${p.name} = ${formatValue(p.value)};`);
  }
  for (const c of node.children) {
    lines.push('');
    writeNode(lines, c, level + 1, dropNames);
  }
  lines.push(`${tab}};`);
}
