/**
 * Full validation of an untrusted flattened device tree: everything libfdt's fdt_check_full checks,
 * each problem named with its byte offset, plus the tree rules dtc refuses a blob for (checks.c).
 * Mirrors libfdt's fdt_check.c and the ERROR-level checks of dtc's checks.c.
 */
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_MAX_DEPTH,
  FDT_NOP,
  FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE,
  FdtError,
  type FdtErrCode,
} from './format.ts';
import { HDR, headerProblems, latin1, type FdtNode } from './ro.ts';

/** One problem: the libfdt error code, the byte offset in the blob it concerns, and what it is. */
export interface FdtProblem {
  code: FdtErrCode;
  offset: number;
  message: string;
}

const be32 = (b: Uint8Array, p: number): number =>
  ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;

const FATAL_HEADER: ReadonlySet<FdtErrCode> = new Set(['TRUNCATED', 'BADMAGIC', 'BADVERSION']);

const charSet = (extra: string): Uint8Array => {
  const t = new Uint8Array(256);
  const all = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789' + extra;
  for (let i = 0; i < all.length; i++) t[all.charCodeAt(i)] = 1;
  return t;
};
/** dtc's NODECHARS and PROPCHARS (checks.c), the characters it accepts in names. */
const NODE_CHARS = charSet(',._+-@');
const PROP_CHARS = charSet(',._+*#?-');

function firstBadChar(name: string, set: Uint8Array): number {
  for (let i = 0; i < name.length; i++) if (!set[name.charCodeAt(i)]) return i;
  return -1;
}

const describe = (c: string): string => {
  const n = c.charCodeAt(0);
  return n >= 0x20 && n < 0x7f ? `'${c}'` : `0x${n.toString(16).padStart(2, '0')}`;
};

/** A string property value that is exactly one NUL-terminated string (dtc's data_is_one_string). */
function isOneString(v: Uint8Array): boolean {
  return v.length > 0 && v.indexOf(0) === v.length - 1;
}

/**
 * The ERROR-level checks dtc runs on a tree it read from a blob, in its check-table order:
 * duplicate node names, duplicate property names, node name characters, node name format, property
 * name characters, the "name" property, explicit phandles. `sBase` turns structure offsets into
 * blob offsets. Each group is reported fully; `firstFailing` says which group failed first (dtc
 * stops running checks after the first failing one, which decides whether it deletes redundant
 * "name" properties when forced to print).
 */
export function dtcRuleProblems(root: FdtNode, sBase: number): { problems: FdtProblem[]; firstFailing: string | undefined } {
  const problems: FdtProblem[] = [];
  let firstFailing: string | undefined;
  const nodes: Array<{ node: FdtNode; path: string }> = [];
  const collect = (n: FdtNode, path: string): void => {
    nodes.push({ node: n, path });
    for (const c of n.children) collect(c, (path === '/' ? '' : path) + '/' + c.name);
  };
  collect(root, '/');
  const group = (name: string, fn: (n: FdtNode, path: string, fail: (code: FdtErrCode, off: number, msg: string) => void) => void): void => {
    const before = problems.length;
    for (const { node, path } of nodes) {
      fn(node, path, (code, off, msg) => problems.push({ code, offset: sBase + off, message: `${path}: ${msg}` }));
    }
    if (problems.length > before && firstFailing === undefined) firstFailing = name;
  };
  group('duplicate_node_names', (n, _p, fail) => {
    const seen = new Set<string>();
    for (const c of n.children) {
      if (seen.has(c.name)) fail('BADSTRUCTURE', c.offset, `duplicate node name "${c.name}"`);
      seen.add(c.name);
    }
  });
  group('duplicate_property_names', (n, _p, fail) => {
    const seen = new Set<string>();
    for (const pr of n.properties) {
      if (seen.has(pr.name)) fail('BADSTRUCTURE', pr.offset, `duplicate property name "${pr.name}"`);
      seen.add(pr.name);
    }
  });
  group('node_name_chars', (n, _p, fail) => {
    const i = firstBadChar(n.name, NODE_CHARS);
    if (i >= 0) fail('BADSTRUCTURE', n.offset + 4 + i, `bad character ${describe(n.name[i]!)} in node name "${n.name}"`);
  });
  group('node_name_format', (n, _p, fail) => {
    const at = n.name.indexOf('@');
    if (at >= 0 && n.name.indexOf('@', at + 1) >= 0) fail('BADSTRUCTURE', n.offset + 4, `multiple '@' characters in node name "${n.name}"`);
  });
  group('property_name_chars', (n, _p, fail) => {
    for (const pr of n.properties) {
      const i = firstBadChar(pr.name, PROP_CHARS);
      if (i >= 0) fail('BADSTRUCTURE', pr.offset, `bad character ${describe(pr.name[i]!)} in property name "${pr.name}"`);
    }
  });
  group('name_is_string', (n, _p, fail) => {
    const pr = n.properties.find((x) => x.name === 'name');
    if (pr && !isOneString(pr.value)) fail('BADVALUE', pr.offset, '"name" property is not a string');
  });
  group('name_properties', (n, _p, fail) => {
    const pr = n.properties.find((x) => x.name === 'name');
    if (pr && !nameMatchesNode(pr.value, n.name)) fail('BADVALUE', pr.offset, `"name" property "${latin1(pr.value, 0, Math.max(0, pr.value.indexOf(0)))}" differs from the node's base name`);
  });
  const byPhandle = new Map<number, string>();
  group('explicit_phandles', (n, path, fail) => {
    const cell = (prop: string): number => {
      const pr = n.properties.find((x) => x.name === prop);
      if (!pr) return 0;
      if (pr.value.length !== 4) { fail('BADVALUE', pr.offset, `bad length (${pr.value.length}) ${prop} property`); return 0; }
      const v = be32(pr.value, 0);
      if (v === 0 || v === 0xffffffff) { fail('BADVALUE', pr.offset, `bad value (0x${v.toString(16)}) in ${prop} property`); return 0; }
      return v;
    };
    let ph = cell('phandle');
    const lph = cell('linux,phandle');
    if (!ph && !lph) return;
    if (ph && lph && ph !== lph) fail('BADVALUE', n.offset, "mismatching 'phandle' and 'linux,phandle' properties");
    if (!ph) ph = lph;
    const other = byPhandle.get(ph);
    if (other !== undefined && other !== path) { fail('BADVALUE', n.offset, `duplicated phandle 0x${ph.toString(16)} (seen before at ${other})`); return; }
    byPhandle.set(ph, path);
  });
  return { problems, firstFailing };
}

/** dtc's test for a redundant "name" property: the node's base name (before '@') plus one byte. */
export function nameMatchesNode(value: Uint8Array, nodeName: string): boolean {
  const at = nodeName.indexOf('@');
  const base = at < 0 ? nodeName : nodeName.slice(0, at);
  if (value.length !== base.length + 1) return false;
  for (let i = 0; i < base.length; i++) if (value[i] !== base.charCodeAt(i)) return false;
  return true;
}

/**
 * Every problem in `blob`, in the order they are met (empty = valid): header, reservation map,
 * structure tokens, names and strings, then dtc's tree rules. Never throws; never allocates in
 * proportion to a size field, only to the bytes actually present.
 */
export function checkFdt(blob: Uint8Array): FdtProblem[] {
  const out: FdtProblem[] = headerProblems(blob).map(toProblem);
  if (out.some((p) => FATAL_HEADER.has(p.code))) return out;

  const total = be32(blob, HDR.totalsize);
  const version = be32(blob, HDR.version);
  const rsv = be32(blob, HDR.off_mem_rsvmap);
  const sBase = be32(blob, HDR.off_dt_struct);
  const sLim = version >= 17 ? be32(blob, HDR.size_dt_struct) : total - sBase;
  const strBase = be32(blob, HDR.off_dt_strings);
  const strSize = be32(blob, HDR.size_dt_strings);
  const add = (code: FdtErrCode, offset: number, message: string): void => { out.push({ code, offset, message }); };

  // Reservation map: entries up to the size-0 terminator, inside totalsize, clear of the other blocks.
  let rsvEnd = -1;
  for (let p = rsv; ; p += FDT_RESERVE_ENTRY_SIZE) {
    if (p + FDT_RESERVE_ENTRY_SIZE > total) {
      add('TRUNCATED', p, `reservation map has no terminating entry before totalsize ${total}`);
      break;
    }
    if (be32(blob, p + 8) === 0 && be32(blob, p + 12) === 0) { rsvEnd = p + FDT_RESERVE_ENTRY_SIZE; break; }
  }
  if (rsvEnd >= 0) {
    if (rsv < sBase + sLim && sBase < rsvEnd) add('BADLAYOUT', rsv, `reservation map [${rsv}, ${rsvEnd}) overlaps the structure block [${sBase}, ${sBase + sLim})`);
    if (rsv < strBase + strSize && strBase < rsvEnd) add('BADLAYOUT', rsv, `reservation map [${rsv}, ${rsvEnd}) overlaps the strings block [${strBase}, ${strBase + strSize})`);
  }

  const root = scanStructure(blob, sBase, sLim, strBase, strSize, add);
  if (root && !out.length) out.push(...dtcRuleProblems(root, sBase).problems);
  return out;
}

/** Throws the first problem checkFdt finds as an FdtError. */
export function assertValidFdt(blob: Uint8Array): void {
  const [first] = checkFdt(blob);
  if (first) throw new FdtError(first.code, first.offset, first.message);
}

function toProblem(e: FdtError): FdtProblem {
  return { code: e.code, offset: e.offset, message: e.message.replace(/^FDT_ERR_\w+ at offset \d+: /, '') };
}

/**
 * One pass over the structure block's tokens. Reports every token-level problem; returns the tree
 * (names decoded, values as views) when the token stream is well formed, undefined otherwise.
 */
function scanStructure(
  b: Uint8Array, sBase: number, sLim: number, strBase: number, strSize: number,
  add: (code: FdtErrCode, offset: number, message: string) => void,
): FdtNode | undefined {
  const stack: FdtNode[] = [];
  let root: FdtNode | undefined;
  let ok = true;
  let p = 0;
  for (;;) {
    const at = sBase + p;
    if (p + 4 > sLim) {
      add('TRUNCATED', at, `structure block ends at struct offset ${sLim} without FDT_END`);
      return undefined;
    }
    const t = be32(b, at);
    if (p === 0 && t !== FDT_BEGIN_NODE) {
      add('BADSTRUCTURE', at, `structure block starts with token 0x${t.toString(16)}, not FDT_BEGIN_NODE`);
      return undefined;
    }
    let next = p + 4;
    switch (t) {
      case FDT_BEGIN_NODE: {
        const nul = b.indexOf(0, at + 4);
        if (nul < 0 || nul >= sBase + sLim) {
          add('BADSTRUCTURE', at + 4, `node name is not NUL-terminated inside the structure block (struct offset ${p})`);
          return undefined;
        }
        if (root && stack.length === 0) {
          add('BADSTRUCTURE', at, `a second top-level node follows the root (struct offset ${p})`);
          return undefined;
        }
        if (stack.length > FDT_MAX_DEPTH) {
          add('BADSTRUCTURE', at, `nodes nest deeper than ${FDT_MAX_DEPTH} (struct offset ${p})`);
          return undefined;
        }
        const node: FdtNode = { name: latin1(b, at + 4, nul), offset: p, properties: [], children: [] };
        if (stack.length && node.name === '') { add('BADSTRUCTURE', at + 4, `non-root node with an empty name (struct offset ${p})`); ok = false; }
        if (stack.length) stack[stack.length - 1]!.children.push(node);
        else root = node;
        stack.push(node);
        next = nul - sBase + 1;
        break;
      }
      case FDT_PROP: {
        if (p + 12 > sLim) {
          add('BADSTRUCTURE', at, `property header runs past the structure block (struct offset ${p})`);
          return undefined;
        }
        const len = be32(b, at + 4);
        const nameoff = be32(b, at + 8);
        if (p + 12 + len > sLim) {
          add('BADSTRUCTURE', at + 4, `property length ${len} runs past the structure block (struct offset ${p}, ${sLim - p - 12} byte(s) left)`);
          return undefined;
        }
        next = p + 12 + len;
        if (!stack.length) { add('BADSTRUCTURE', at, `property outside any node (struct offset ${p})`); ok = false; break; }
        let name: string | undefined;
        if (nameoff >= strSize) {
          add('BADOFFSET', at + 8, `property name offset ${nameoff} is outside the ${strSize}-byte strings block (struct offset ${p})`);
          ok = false;
        } else {
          const nul = b.indexOf(0, strBase + nameoff);
          if (nul < 0 || nul >= strBase + strSize) {
            add('TRUNCATED', strBase + nameoff, `property name at strings offset ${nameoff} is not NUL-terminated inside the strings block (struct offset ${p})`);
            ok = false;
          } else {
            name = latin1(b, strBase + nameoff, nul);
          }
        }
        if (name !== undefined) stack[stack.length - 1]!.properties.push({ name, value: b.subarray(at + 12, at + 12 + len), offset: p });
        break;
      }
      case FDT_END_NODE:
        if (!stack.length) {
          add('BADSTRUCTURE', at, `FDT_END_NODE above the root (struct offset ${p})`);
          return undefined;
        }
        stack.pop();
        break;
      case FDT_NOP:
        if (!stack.length) { add('BADSTRUCTURE', at, `FDT_NOP outside the root node (struct offset ${p}); dtc refuses it`); ok = false; }
        break;
      case FDT_END:
        if (stack.length) {
          add('BADSTRUCTURE', at, `FDT_END inside node "${stack[stack.length - 1]!.name}" (${stack.length} node(s) left open)`);
          return undefined;
        }
        if (p + 4 !== sLim) { add('BADSTRUCTURE', at + 4, `${sLim - p - 4} byte(s) follow FDT_END in the structure block`); ok = false; }
        return ok ? root : undefined;
      default:
        add('BADSTRUCTURE', at, `invalid token 0x${t.toString(16)} (struct offset ${p})`);
        return undefined;
    }
    p = (next + 3) & ~3;
  }
}
