/**
 * A flattened device tree as plain JSON (for `luo dtb --json`): header, reservation map, and the
 * node tree with every property as hex plus the decodings that make sense for its length and bytes
 * (string or string list as dtc would guess, big-endian u32, little-endian u64 as KHO stores them).
 */
import { guessValueType } from './dts.ts';
import { Fdt, latin1, type FdtHeaderFields, type FdtNode } from './ro.ts';

export interface FdtJsonProperty {
  name: string;
  /** Structure-block offset of the FDT_PROP token. */
  offset: number;
  length: number;
  hex: string;
  /** Set when dtc would print the value as a string (one string). */
  string?: string;
  /** Set when dtc would print the value as a string and it holds several NUL-separated strings. */
  strings?: string[];
  /** Set for 4-byte values: the big-endian FDT cell. */
  u32?: number;
  /** Set for 8-byte values: the native little-endian u64 (KHO's encoding), as 0x-hex. */
  u64le?: string;
}

export interface FdtJsonNode {
  name: string;
  path: string;
  offset: number;
  properties: FdtJsonProperty[];
  children: FdtJsonNode[];
}

export interface FdtJson {
  header: FdtHeaderFields;
  reserveMap: Array<{ address: string; size: string }>;
  root: FdtJsonNode;
}

function property(name: string, offset: number, v: Uint8Array): FdtJsonProperty {
  const p: FdtJsonProperty = { name, offset, length: v.length, hex: Buffer.from(v.buffer, v.byteOffset, v.length).toString('hex') };
  if (guessValueType(v) === 'string') {
    const parts: string[] = [];
    for (let s = 0; s < v.length;) {
      const e = v.indexOf(0, s);
      parts.push(latin1(v, s, e));
      s = e + 1;
    }
    if (parts.length === 1) p.string = parts[0]!;
    else p.strings = parts;
  }
  const dv = new DataView(v.buffer, v.byteOffset, v.length);
  if (v.length === 4) p.u32 = dv.getUint32(0, false);
  if (v.length === 8) p.u64le = '0x' + dv.getBigUint64(0, true).toString(16);
  return p;
}

function node(n: FdtNode, path: string): FdtJsonNode {
  return {
    name: n.name,
    path,
    offset: n.offset,
    properties: n.properties.map((p) => property(p.name, p.offset, p.value)),
    children: n.children.map((c) => node(c, (path === '/' ? '' : path) + '/' + c.name)),
  };
}

/** The tree of a blob with a usable header as a JSON-ready object; throws FdtError otherwise. */
export function toJson(blob: Uint8Array | Fdt): FdtJson {
  const fdt = blob instanceof Fdt ? blob : Fdt.open(blob);
  return {
    header: { ...fdt.header },
    reserveMap: fdt.reserveMap().map((r) => ({ address: '0x' + r.address.toString(16), size: '0x' + r.size.toString(16) })),
    root: node(fdt.tree(), '/'),
  };
}
