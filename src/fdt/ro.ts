/**
 * Read-only access to a flattened device tree (DTB v16/v17) in place, without copying the blob:
 * header validation, node and property lookup, the reservation map and bounded walks.
 * Mirrors libfdt's fdt.c (fdt_check_header, fdt_next_tag, fdt_next_node) and fdt_ro.c.
 */
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_ERR,
  FDT_LAST_SUPPORTED_VERSION,
  FDT_FIRST_READABLE_VERSION,
  FDT_MAGIC,
  FDT_MAX_DEPTH,
  FDT_NOP,
  FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE,
  FDT_V16_HEADER_SIZE,
  FDT_V17_HEADER_SIZE,
  FDT_V1_HEADER_SIZE,
  FdtError,
  type FdtErrCode,
} from './format.ts';

/** The decoded header (all ten v17 words; size_dt_struct is 0 for a v16 blob). */
export interface FdtHeaderFields {
  magic: number;
  totalsize: number;
  off_dt_struct: number;
  off_dt_strings: number;
  off_mem_rsvmap: number;
  version: number;
  last_comp_version: number;
  boot_cpuid_phys: number;
  size_dt_strings: number;
  size_dt_struct: number;
}

/** One property: its name, its value (a view into the blob) and its structure-block offset. */
export interface FdtProperty {
  name: string;
  value: Uint8Array;
  offset: number;
}

/** One node met by a depth-first walk: structure offset, depth (root = 0), name and full path. */
export interface FdtNodeVisit {
  offset: number;
  depth: number;
  name: string;
  path: string;
}

/** A node read whole: properties in blob order, then children in blob order (dtc's live tree). */
export interface FdtNode {
  name: string;
  offset: number;
  properties: FdtProperty[];
  children: FdtNode[];
}

export interface FdtReserveEntry {
  address: bigint;
  size: bigint;
}

/** Byte offsets of the header words. */
export const HDR = {
  magic: 0,
  totalsize: 4,
  off_dt_struct: 8,
  off_dt_strings: 12,
  off_mem_rsvmap: 16,
  version: 20,
  last_comp_version: 24,
  boot_cpuid_phys: 28,
  size_dt_strings: 32,
  size_dt_struct: 36,
} as const;

const INT_MAX = 0x7fffffff;

function be32(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
}

/** Bytes [start, end) as a string, one code unit per byte (true ISO-8859-1, as C sees a char). */
export function latin1(b: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= 0) return '';
  if (n <= 24) {
    let s = '';
    for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  let s = '';
  for (let i = start; i < end; i += 8192) {
    s += String.fromCharCode.apply(null, b.subarray(i, Math.min(end, i + 8192)) as unknown as number[]);
  }
  return s;
}

const queryCache = new Map<string, Uint8Array | undefined>();

/**
 * A looked-up name's bytes as a C string holds them (code units 0..255; wider ones cannot match),
 * remembered for the names a caller asks for again and again ("compatible", "reg", ...).
 */
function nameBytes(s: string): Uint8Array | undefined {
  let out = queryCache.get(s);
  if (out !== undefined || queryCache.has(s)) return out;
  out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) { out = undefined; break; }
    out[i] = c;
  }
  if (queryCache.size >= 1024) queryCache.clear();
  queryCache.set(s, out);
  return out;
}

/**
 * Every header problem, in the order libfdt's fdt_check_header and fdt_check_full meet them, plus
 * luo's stricter rules (version >= 16, aligned and non-overlapping blocks). Empty = usable header.
 * Each problem carries the offset of the header word at fault.
 */
export function headerProblems(blob: Uint8Array): FdtError[] {
  const out: FdtError[] = [];
  const len = blob.length;
  if (len < 4) return [new FdtError('TRUNCATED', 0, `${len} byte(s) cannot hold the FDT magic`)];
  const magic = be32(blob, 0);
  if (magic !== FDT_MAGIC) {
    return [new FdtError('BADMAGIC', 0, `magic 0x${magic.toString(16).padStart(8, '0')} is not 0xd00dfeed`)];
  }
  if (len < FDT_V1_HEADER_SIZE) {
    return [new FdtError('TRUNCATED', 0, `${len} byte(s) cannot hold the ${FDT_V1_HEADER_SIZE}-byte v1 header`)];
  }
  const version = be32(blob, HDR.version);
  const lastComp = be32(blob, HDR.last_comp_version);
  if (version < FDT_FIRST_READABLE_VERSION) {
    out.push(new FdtError('BADVERSION', HDR.version, `version ${version} is older than ${FDT_FIRST_READABLE_VERSION}`));
  }
  if (lastComp > FDT_LAST_SUPPORTED_VERSION) {
    out.push(new FdtError('BADVERSION', HDR.last_comp_version, `last_comp_version ${lastComp} is newer than ${FDT_LAST_SUPPORTED_VERSION}`));
  } else if (version < lastComp) {
    out.push(new FdtError('BADVERSION', HDR.version, `version ${version} is older than its last_comp_version ${lastComp}`));
  }
  if (out.length) return out;
  const hdrsize = version >= 17 ? FDT_V17_HEADER_SIZE : FDT_V16_HEADER_SIZE;
  if (len < hdrsize) {
    return [new FdtError('TRUNCATED', 0, `${len} byte(s) cannot hold the ${hdrsize}-byte v${version} header`)];
  }
  const total = be32(blob, HDR.totalsize);
  if (total < hdrsize || total > INT_MAX) {
    return [new FdtError('TRUNCATED', HDR.totalsize, `totalsize ${total} is outside [${hdrsize}, ${INT_MAX}]`)];
  }
  const offOk = (off: number): boolean => off >= hdrsize && off <= total;
  const rsv = be32(blob, HDR.off_mem_rsvmap);
  const st = be32(blob, HDR.off_dt_struct);
  const stSize = version >= 17 ? be32(blob, HDR.size_dt_struct) : total - Math.min(st, total);
  const str = be32(blob, HDR.off_dt_strings);
  const strSize = be32(blob, HDR.size_dt_strings);
  if (!offOk(rsv)) out.push(new FdtError('TRUNCATED', HDR.off_mem_rsvmap, `reservation map offset ${rsv} is outside [${hdrsize}, ${total}]`));
  if (!offOk(st)) out.push(new FdtError('TRUNCATED', HDR.off_dt_struct, `structure block offset ${st} is outside [${hdrsize}, ${total}]`));
  else if (st + stSize > total) out.push(new FdtError('TRUNCATED', HDR.size_dt_struct, `structure block [${st}, ${st + stSize}) ends past totalsize ${total}`));
  if (!offOk(str)) out.push(new FdtError('TRUNCATED', HDR.off_dt_strings, `strings block offset ${str} is outside [${hdrsize}, ${total}]`));
  else if (str + strSize > total) out.push(new FdtError('TRUNCATED', HDR.size_dt_strings, `strings block [${str}, ${str + strSize}) ends past totalsize ${total}`));
  if (out.length) return out;
  if (rsv % 8 !== 0) out.push(new FdtError('ALIGNMENT', HDR.off_mem_rsvmap, `reservation map offset ${rsv} is not 8-byte aligned`));
  if (st % 4 !== 0) out.push(new FdtError('ALIGNMENT', HDR.off_dt_struct, `structure block offset ${st} is not 4-byte aligned`));
  if (version >= 17 && stSize % 4 !== 0) out.push(new FdtError('ALIGNMENT', HDR.size_dt_struct, `structure block size ${stSize} is not a multiple of 4`));
  if (version >= 17 && st < str + strSize && str < st + stSize) {
    out.push(new FdtError('BADLAYOUT', HDR.off_dt_strings, `strings block [${str}, ${str + strSize}) overlaps structure block [${st}, ${st + stSize})`));
  }
  if (len < total) out.push(new FdtError('TRUNCATED', HDR.totalsize, `totalsize ${total} > ${len} available bytes`));
  return out;
}

/** A flattened device tree read in place. Node offsets are structure-block offsets (root = 0). */
export class Fdt {
  readonly blob: Uint8Array;
  readonly header: Readonly<FdtHeaderFields>;
  /** Absolute offsets and limits of the blocks. */
  private readonly sBase: number;
  private readonly sLim: number;
  private readonly strBase: number;
  private readonly strSize: number;
  private readonly names = new Map<number, string>();
  /** fdt_next_tag's out-parameter: the next offset, or a negative libfdt error. */
  private nx = 0;

  private constructor(blob: Uint8Array, header: FdtHeaderFields) {
    this.blob = blob;
    this.header = Object.freeze(header);
    this.sBase = header.off_dt_struct;
    this.sLim = header.version >= 17 ? header.size_dt_struct : header.totalsize - header.off_dt_struct;
    this.strBase = header.off_dt_strings;
    this.strSize = header.size_dt_strings;
  }

  /** Validates the header (see headerProblems) and returns a reader; throws the first FdtError. */
  static open(blob: Uint8Array): Fdt {
    const problems = headerProblems(blob);
    if (problems.length) throw problems[0]!;
    const w = (o: number): number => be32(blob, o);
    const version = w(HDR.version);
    return new Fdt(blob, {
      magic: w(HDR.magic),
      totalsize: w(HDR.totalsize),
      off_dt_struct: w(HDR.off_dt_struct),
      off_dt_strings: w(HDR.off_dt_strings),
      off_mem_rsvmap: w(HDR.off_mem_rsvmap),
      version,
      last_comp_version: w(HDR.last_comp_version),
      boot_cpuid_phys: w(HDR.boot_cpuid_phys),
      size_dt_strings: w(HDR.size_dt_strings),
      size_dt_struct: version >= 17 ? w(HDR.size_dt_struct) : 0,
    });
  }

  get totalSize(): number {
    return this.header.totalsize;
  }

  /** Size of the structure block that node and property offsets index into. */
  get structSize(): number {
    return this.sLim;
  }

  // ---- tokens (fdt_next_tag) ----

  /**
   * The tag at structure offset `off`; sets `nx` to the aligned offset after it, or to a negative
   * error (-TRUNCATED when the tag itself is out of the block, -BADSTRUCTURE for a cut or bad token),
   * in which case FDT_END is returned, exactly as libfdt's fdt_next_tag does.
   */
  private tag(off: number): number {
    const b = this.blob;
    const lim = this.sLim;
    if (off < 0 || off + 4 > lim) {
      this.nx = -FDT_ERR.TRUNCATED;
      return FDT_END;
    }
    const base = this.sBase;
    const t = be32(b, base + off);
    let end = off + 4;
    this.nx = -FDT_ERR.BADSTRUCTURE;
    switch (t) {
      case FDT_BEGIN_NODE: {
        let q = base + end;
        const stop = base + lim;
        while (q < stop && b[q] !== 0) q++;
        if (q >= stop) return FDT_END;
        end = q - base + 1;
        break;
      }
      case FDT_PROP:
        if (end + 8 > lim) return FDT_END;
        end += 8 + be32(b, base + end);
        if (end > lim) return FDT_END;
        break;
      case FDT_END:
      case FDT_END_NODE:
      case FDT_NOP:
        break;
      default:
        return FDT_END;
    }
    this.nx = (end + 3) & ~3;
    return t;
  }

  /** Throws the error fdt_next_tag left in `nx` for the token at `off`. */
  private tagError(off: number): FdtError {
    const code: FdtErrCode = this.nx === -FDT_ERR.TRUNCATED ? 'TRUNCATED' : 'BADSTRUCTURE';
    const at = this.sBase + off;
    if (code === 'TRUNCATED') return new FdtError(code, at, `structure block ends before a token at struct offset ${off}`);
    const t = off + 4 <= this.sLim ? be32(this.blob, at) : -1;
    const what = t === FDT_BEGIN_NODE ? 'node name runs past the structure block'
      : t === FDT_PROP ? 'property runs past the structure block'
        : `invalid token 0x${(t >>> 0).toString(16)}`;
    return new FdtError(code, at, `${what} (struct offset ${off})`);
  }

  /** Where the name of the node last checked by afterBeginNode ends (its NUL). */
  private nameEnd = 0;

  /** fdt_check_node_offset_: the offset after the BEGIN_NODE token at `off`, or BADOFFSET. */
  private afterBeginNode(off: number): number {
    const b = this.blob;
    const base = this.sBase;
    const lim = this.sLim;
    if (Number.isInteger(off) && off >= 0 && (off & 3) === 0 && off + 4 <= lim && be32(b, base + off) === FDT_BEGIN_NODE) {
      const stop = base + lim;
      let q = base + off + 4;
      while (q < stop && b[q] !== 0) q++;
      if (q < stop) {
        this.nameEnd = q;
        return (q - base + 4) & ~3;
      }
    }
    throw new FdtError('BADOFFSET', off >= 0 && off < lim ? base + off : -1, `struct offset ${off} is not a node`);
  }

  /**
   * fdt_next_node with a depth counter: the next BEGIN_NODE after node `off` and the depth change
   * in `this.depth`; -1 when the walk leaves the starting level (END_NODE below depth 0) or the
   * tree ends. Throws on a malformed structure.
   */
  private depth = 0;
  private nextNode(off: number): number {
    const b = this.blob;
    const base = this.sBase;
    const lim = this.sLim;
    let p = this.afterBeginNode(off);
    for (;;) {
      const t = p + 4 <= lim ? be32(b, base + p) : -1;
      if (t === FDT_PROP) {
        if (p + 12 > lim) break;
        const end = p + 12 + be32(b, base + p + 4);
        if (end > lim) break;
        p = (end + 3) & ~3;
      } else if (t === FDT_NOP) {
        p += 4;
      } else if (t === FDT_BEGIN_NODE) {
        const stop = base + lim;
        let q = base + p + 4;
        while (q < stop && b[q] !== 0) q++;
        if (q >= stop) break;
        if (++this.depth > FDT_MAX_DEPTH) {
          throw new FdtError('BADSTRUCTURE', base + p, `nodes nest deeper than ${FDT_MAX_DEPTH}`);
        }
        return p;
      } else if (t === FDT_END_NODE) {
        if (--this.depth < 0) return -1;
        p += 4;
      } else if (t === FDT_END) {
        return -1;
      } else {
        break;
      }
    }
    // a cut or invalid token: name it exactly as fdt_next_tag would
    this.tag(p);
    throw this.tagError(p);
  }

  // ---- nodes ----

  /** fdt_first_subnode: the first child of node `off`, or -1. */
  firstSubnode(off: number): number {
    this.depth = 0;
    const n = this.nextNode(off);
    return n >= 0 && this.depth === 1 ? n : -1;
  }

  /** fdt_next_subnode: the next sibling of node `off`, or -1. */
  nextSubnode(off: number): number {
    this.depth = 1;
    let n = off;
    do {
      n = this.nextNode(n);
      if (n < 0 || this.depth < 1) return -1;
    } while (this.depth > 1);
    return n;
  }

  /** The children of node `off`, in blob order (an array: the fast variant of subnodes()). */
  subnodeList(off: number): number[] {
    const out: number[] = [];
    for (let n = this.firstSubnode(off); n >= 0; n = this.nextSubnode(n)) out.push(n);
    return out;
  }

  *subnodes(off: number): Iterable<number> {
    for (let n = this.firstSubnode(off); n >= 0; n = this.nextSubnode(n)) yield n;
  }

  /** fdt_get_name: the node's name as stored (unit address included; "" for the root). */
  getName(off: number): string {
    this.afterBeginNode(off);
    return latin1(this.blob, this.sBase + off + 4, this.nameEnd);
  }

  /** Depth of node `off` (root = 0), found by walking from the root as fdt_node_depth does. */
  nodeDepth(off: number): number {
    return this.ancestry(off).length - 1;
  }

  /** fdt_parent_offset: the parent of node `off`, or -1 for the root. */
  parentOffset(off: number): number {
    const chain = this.ancestry(off);
    return chain.length >= 2 ? chain[chain.length - 2]! : -1;
  }

  /** fdt_get_path: the full path of node `off` ("/" for the root). */
  getPath(off: number): string {
    const chain = this.ancestry(off);
    if (chain.length === 1) return '/';
    let p = '';
    for (let i = 1; i < chain.length; i++) p += '/' + this.getName(chain[i]!);
    return p;
  }

  /** Node offsets from the root down to `off` (fdt_supernode_atdepth_offset's walk). */
  private ancestry(off: number): number[] {
    this.afterBeginNode(off);
    const stack: number[] = [];
    let n = 0;
    this.depth = 0;
    while (n >= 0 && n <= off) {
      stack.length = this.depth;
      stack.push(n);
      if (n === off) return stack;
      n = this.nextNode(n);
    }
    throw new FdtError('BADOFFSET', this.sBase + off, `struct offset ${off} is not a node of the tree`);
  }

  /**
   * fdt_subnode_offset: the child of `parent` called `name`, or -1. As in libfdt, a name without
   * '@' also matches a child whose name continues with "@unit-address".
   */
  subnodeOffset(parent: number, name: string): number {
    const want = nameBytes(name);
    if (!want) return -1;
    return this.subnodeOffsetBytes(parent, want, name.includes('@'));
  }

  private subnodeOffsetBytes(parent: number, want: Uint8Array, hasAt: boolean): number {
    const b = this.blob;
    const n = want.length;
    for (let c = this.firstSubnode(parent); c >= 0; c = this.nextSubnode(c)) {
      const p = this.sBase + c + 4;
      if (p + n >= this.sBase + this.sLim) continue;
      let i = 0;
      while (i < n && b[p + i] === want[i]) i++;
      if (i < n) continue;
      const t = b[p + n];
      if (t === 0 || (!hasAt && t === 0x40)) return c;
    }
    return -1;
  }

  /**
   * fdt_path_offset: the node at an absolute path ("/a/b", repeated slashes allowed), or one that
   * starts with an alias from /aliases. Throws BADPATH (no such alias, not absolute) or NOTFOUND.
   */
  pathOffset(path: string): number {
    let rest = path;
    let off = 0;
    if (!path.startsWith('/')) {
      const slash = path.indexOf('/');
      const alias = slash < 0 ? path : path.slice(0, slash);
      const aliases = this.subnodeOffset(0, 'aliases');
      const target = aliases >= 0 ? this.getProp(aliases, alias) : undefined;
      const nul = target ? target.indexOf(0) : -1;
      if (!target || nul < 1 || target[0] !== 0x2f) throw new FdtError('BADPATH', -1, `"${alias}" is neither an absolute path nor an alias`);
      off = this.pathOffset(latin1(target, 0, nul));
      rest = slash < 0 ? '' : path.slice(slash);
    }
    for (const part of rest.split('/')) {
      if (part === '') continue;
      const next = this.subnodeOffset(off, part);
      if (next < 0) throw new FdtError('NOTFOUND', this.sBase + off, `no node "${part}" under ${this.getPath(off)} (path ${path})`);
      off = next;
    }
    return off;
  }

  // ---- properties ----

  /** The offset of the first PROP token at or after `off` within the node, or -1 (nextprop_). */
  private propFrom(off: number): number {
    for (;;) {
      const t = this.tag(off);
      if (t === FDT_PROP) return off;
      if (t === FDT_NOP) { off = this.nx; continue; }
      if (t === FDT_END) {
        if (this.nx < 0) throw this.tagError(off);
        throw new FdtError('BADSTRUCTURE', this.sBase + off, `FDT_END inside a node (struct offset ${off})`);
      }
      return -1;
    }
  }

  /** fdt_get_string: the name at `nameoff` in the strings block (cached per offset). */
  stringAt(nameoff: number): string {
    const cached = this.names.get(nameoff);
    if (cached !== undefined) return cached;
    const at = this.strBase + nameoff;
    if (nameoff >= this.strSize) {
      throw new FdtError('BADOFFSET', at, `name offset ${nameoff} is outside the ${this.strSize}-byte strings block`);
    }
    const end = this.blob.indexOf(0, at);
    if (end < 0 || end >= this.strBase + this.strSize) {
      throw new FdtError('TRUNCATED', at, `name at strings offset ${nameoff} is not NUL-terminated inside the strings block`);
    }
    const s = latin1(this.blob, at, end);
    this.names.set(nameoff, s);
    return s;
  }

  /** True when the strings-block name at `nameoff` is exactly `want` (fdt_string_eq_). */
  private nameIs(nameoff: number, want: Uint8Array): boolean {
    const n = want.length;
    if (nameoff + n >= this.strSize) return false;
    const b = this.blob;
    const p = this.strBase + nameoff;
    for (let i = 0; i < n; i++) if (b[p + i] !== want[i]) return false;
    return b[p + n] === 0;
  }

  /** Calls `fn` for each property of node `off` in blob order (the allocation-light variant). */
  forEachProperty(off: number, fn: (name: string, value: Uint8Array, offset: number) => void): void {
    const b = this.blob;
    const base = this.sBase;
    for (let p = this.propFrom(this.afterBeginNode(off)); p >= 0; p = this.propFrom(this.nx)) {
      const len = be32(b, base + p + 4);
      const name = this.stringAt(be32(b, base + p + 8));
      const next = this.nx;
      fn(name, b.subarray(base + p + 12, base + p + 12 + len), p);
      this.nx = next;
    }
  }

  /** The properties of node `off`, in blob order. */
  propertyList(off: number): FdtProperty[] {
    const out: FdtProperty[] = [];
    this.forEachProperty(off, (name, value, offset) => out.push({ name, value, offset }));
    return out;
  }

  properties(off: number): Iterable<FdtProperty> {
    return this.propertyList(off);
  }

  /** fdt_getprop: the value of property `name` of node `off` (a view into the blob), or undefined. */
  getProp(off: number, name: string): Uint8Array | undefined {
    const want = nameBytes(name);
    if (!want) return undefined;
    const b = this.blob;
    const base = this.sBase;
    const lim = this.sLim;
    const n = want.length;
    const strBase = this.strBase;
    const strSize = this.strSize;
    let p = this.afterBeginNode(off);
    for (;;) {
      const t = p + 4 <= lim ? be32(b, base + p) : FDT_END;
      if (t === FDT_PROP) {
        if (p + 12 > lim) break;
        const len = be32(b, base + p + 4);
        const end = p + 12 + len;
        if (end > lim) break;
        const nameoff = be32(b, base + p + 8);
        if (nameoff + n < strSize) {
          const q = strBase + nameoff;
          let i = 0;
          while (i < n && b[q + i] === want[i]) i++;
          if (i === n && b[q + n] === 0) return b.subarray(base + p + 12, base + end);
        }
        p = (end + 3) & ~3;
      } else if (t === FDT_NOP) {
        p += 4;
      } else if (t === FDT_BEGIN_NODE || t === FDT_END_NODE) {
        return undefined;
      } else {
        break;
      }
    }
    // a cut or invalid token: let propFrom name it exactly as fdt_next_tag would
    this.propFrom(p);
    throw new FdtError('INTERNAL', base + p, 'unreachable');
  }

  private mustGet(off: number, name: string): Uint8Array {
    const v = this.getProp(off, name);
    if (v === undefined) throw new FdtError('NOTFOUND', this.sBase + off, `node ${this.getPath(off)} has no property "${name}"`);
    return v;
  }

  private badValue(off: number, name: string, what: string): FdtError {
    return new FdtError('BADVALUE', this.sBase + off, `property "${name}" of ${this.getPath(off)}: ${what}`);
  }

  /** The strings of a NUL-separated string list (throws NOTFOUND, or BADVALUE if unterminated). */
  getPropStrings(off: number, name: string): string[] {
    const v = this.mustGet(off, name);
    if (v.length === 0 || v[v.length - 1] !== 0) throw this.badValue(off, name, 'value is not a NUL-terminated string list');
    const out: string[] = [];
    for (let s = 0; s < v.length;) {
      const e = v.indexOf(0, s);
      out.push(latin1(v, s, e));
      s = e + 1;
    }
    return out;
  }

  /** The value as one C string: its bytes up to the first NUL, which must exist. */
  getPropString(off: number, name: string): string {
    const v = this.mustGet(off, name);
    const e = v.indexOf(0);
    if (e < 0) throw this.badValue(off, name, 'value is not NUL-terminated');
    return latin1(v, 0, e);
  }

  /** A 4-byte property as a u32 (big-endian FDT cell by default). */
  getPropU32(off: number, name: string, endian: 'le' | 'be' = 'be'): number {
    const v = this.mustGet(off, name);
    if (v.length !== 4) throw this.badValue(off, name, `length ${v.length} is not 4`);
    return new DataView(v.buffer, v.byteOffset, 4).getUint32(0, endian === 'le');
  }

  /** An 8-byte property as a u64: KHO stores native little-endian, classic DT cells are big-endian. */
  getPropU64(off: number, name: string, endian: 'le' | 'be'): bigint {
    const v = this.mustGet(off, name);
    if (v.length !== 8) throw this.badValue(off, name, `length ${v.length} is not 8`);
    return new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, endian === 'le');
  }

  /** fdt_node_check_compatible: does the node's "compatible" string list contain `compat`? */
  nodeCheckCompatible(off: number, compat: string): boolean {
    const v = this.getProp(off, 'compatible');
    const want = nameBytes(compat);
    if (!v || !want) return false;
    const n = want.length;
    for (let s = 0; s < v.length;) {
      const e = v.indexOf(0, s);
      if (e < 0) return false;
      if (e - s === n) {
        let i = 0;
        while (i < n && v[s + i] === want[i]) i++;
        if (i === n) return true;
      }
      s = e + 1;
    }
    return false;
  }

  // ---- reservation map ----

  /** The memory reservation entries up to the size-0 terminator (fdt_num_mem_rsv/fdt_get_mem_rsv). */
  reserveMap(): FdtReserveEntry[] {
    const out: FdtReserveEntry[] = [];
    const dv = new DataView(this.blob.buffer, this.blob.byteOffset, this.blob.byteLength);
    for (let p = this.header.off_mem_rsvmap; ; p += FDT_RESERVE_ENTRY_SIZE) {
      if (p + FDT_RESERVE_ENTRY_SIZE > this.header.totalsize) {
        throw new FdtError('TRUNCATED', p, `reservation map runs past totalsize ${this.header.totalsize} without a terminator`);
      }
      const size = dv.getBigUint64(p + 8, false);
      if (size === 0n) return out;
      out.push({ address: dv.getBigUint64(p, false), size });
    }
  }

  // ---- walks ----

  /**
   * Depth-first over every node in blob order; `fn` gets offset, depth, name and full path and
   * may return false to stop. Bounded: offsets only grow and nesting is capped at FDT_MAX_DEPTH.
   */
  walkNodes(fn: (offset: number, depth: number, name: string, path: string) => void | boolean): void {
    const b = this.blob;
    const base = this.sBase;
    const lim = this.sLim;
    const paths: string[] = [];
    this.afterBeginNode(0);
    let depth = -1;
    let p = 0;
    for (;;) {
      const t = p + 4 <= lim ? be32(b, base + p) : -1;
      if (t === FDT_BEGIN_NODE) {
        const s = base + p + 4;
        const stop = base + lim;
        let q = s;
        while (q < stop && b[q] !== 0) q++;
        if (q >= stop) break;
        if (++depth > FDT_MAX_DEPTH) throw new FdtError('BADSTRUCTURE', base + p, `nodes nest deeper than ${FDT_MAX_DEPTH}`);
        const name = latin1(b, s, q);
        const path = depth === 0 ? '/' : depth === 1 ? '/' + name : paths[depth - 1] + '/' + name;
        paths[depth] = path;
        if (fn(p, depth, name, path) === false) return;
        p = (q - base + 4) & ~3;
      } else if (t === FDT_PROP) {
        if (p + 12 > lim) break;
        const end = p + 12 + be32(b, base + p + 4);
        if (end > lim) break;
        p = (end + 3) & ~3;
      } else if (t === FDT_END_NODE) {
        if (--depth < 0) return;
        p += 4;
      } else if (t === FDT_NOP) {
        p += 4;
      } else if (t === FDT_END) {
        return;
      } else {
        break;
      }
    }
    this.tag(p);
    throw this.tagError(p);
  }

  /** Every node offset in depth-first blob order. */
  nodeOffsets(): number[] {
    const out: number[] = [];
    this.walkNodes((o) => { out.push(o); });
    return out;
  }

  walk(): Iterable<FdtNodeVisit> {
    const out: FdtNodeVisit[] = [];
    this.walkNodes((offset, depth, name, path) => { out.push({ offset, depth, name, path }); });
    return out;
  }

  /**
   * The whole tree below node `off` (the root by default) read in one pass over the tokens, as
   * dtc's unflatten_tree builds it: NOPs skipped, each node's properties before its children.
   */
  tree(off = 0): FdtNode {
    const b = this.blob;
    const base = this.sBase;
    const start = this.afterBeginNode(off);
    const root: FdtNode = { name: this.getName(off), offset: off, properties: [], children: [] };
    const stack: FdtNode[] = [root];
    for (let p = start; ;) {
      const t = this.tag(p);
      const next = this.nx;
      const node = stack[stack.length - 1]!;
      switch (t) {
        case FDT_PROP: {
          const len = be32(b, base + p + 4);
          node.properties.push({ name: this.stringAt(be32(b, base + p + 8)), value: b.subarray(base + p + 12, base + p + 12 + len), offset: p });
          break;
        }
        case FDT_BEGIN_NODE: {
          if (stack.length > FDT_MAX_DEPTH) throw new FdtError('BADSTRUCTURE', base + p, `nodes nest deeper than ${FDT_MAX_DEPTH}`);
          const s = base + p + 4;
          const child: FdtNode = { name: latin1(b, s, b.indexOf(0, s)), offset: p, properties: [], children: [] };
          node.children.push(child);
          stack.push(child);
          break;
        }
        case FDT_END_NODE:
          stack.pop();
          if (stack.length === 0) return root;
          break;
        case FDT_NOP:
          break;
        default:
          if (next < 0) throw this.tagError(p);
          throw new FdtError('BADSTRUCTURE', base + p, `FDT_END inside node ${node.name || '/'} (struct offset ${p})`);
      }
      p = next;
    }
  }

}
