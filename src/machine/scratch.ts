/**
 * KHO scratch areas (kernel/liveupdate/kexec_handover.c: kho_parse_scratch_size,
 * scratch_size_update, scratch_size_node, kho_reserve_scratch): the `kho_scratch=` option, the
 * sizing rule, the top-down placement in memblock, the `struct kho_scratch` array and its debugfs text.
 *
 * How the sizing relates to the real capture (test/fixtures/real-kernel, a 1 GiB QEMU guest, Linux
 * 7.3.4, no NUMA, default scale 200%): debugfs shows lowmem 0x39800000+0x4800000 (72 MiB), global
 * 0x3f400000+0x0 and node 0 0x2c000000+0xd800000 (216 MiB). With K = memblock_reserved_kern_size()
 * at the time of the call (all RAM is below 4 GiB, so the lowmem and total K are equal):
 *   - lowmem = round_up(2K, 2 MiB) = 72 MiB, so 35 MiB < K <= 36 MiB;
 *   - global = round_up(2K - 72 MiB, 2 MiB) computed in u64: 2K - 72 MiB is "negative", wraps to
 *     just below 2^64 and round_up wraps it to 0: the 0-byte global area is this wrap, not a choice.
 *     memblock still places it (at the top free 2 MiB boundary) and reserves nothing;
 *   - the node size is computed *after* the array (48 bytes) and the lowmem area were allocated as
 *     MEMBLOCK_RSRV_KERN, so it counts them: round_up(2(K + 72 MiB + 48), 2 MiB) = 216 MiB, which
 *     brackets K to (35 MiB, 36 MiB - 48 B].
 * The "Memory: 716604K/1048056K available ... 330684K reserved" line is printed later, counts
 * reservations of every kind (initrd 11376K, the scratch areas themselves...) and so cannot give K;
 * the test rebuilds the guest's memblock (e820 RAM 1048056K, K = 35.5 MiB) and gets all three
 * areas at the kernel's addresses.
 */
import { LuoError } from '../errno.ts';
import { KhoScratch, PAGE_SIZE } from '../abi/kho.ts';
import { ARCH_LOW_ADDRESS_LIMIT, type Memblock } from './memblock.ts';
import { hex } from './ranges.ts';

/** x86_64: CMA_MIN_ALIGNMENT_BYTES = PAGE_SIZE << pageblock_order (9) = 2 MiB. */
export const CMA_MIN_ALIGNMENT_BYTES = 2n << 20n;
export const KHO_SCRATCH_DEFAULT_SCALE = 200;
/** MEMBLOCK_ALLOC_ANYWHERE: ~(phys_addr_t)0. */
const ALLOC_ANYWHERE = (1n << 64n) - 1n;

/** One entry of the scratch array (struct kho_scratch). */
export interface KhoScratchArea {
  addr: bigint;
  size: bigint;
}

/** What `kho_scratch=` set: a scale in percent, or explicit sizes (scale 0). */
export type ScratchConfig =
  | { readonly kind: 'scale'; readonly scale: number }
  | { readonly kind: 'sizes'; readonly lowmem: bigint; readonly global: bigint; readonly pernode: bigint };

export const DEFAULT_SCRATCH_CONFIG: ScratchConfig = { kind: 'scale', scale: KHO_SCRATCH_DEFAULT_SCALE };

const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** round_up() for a power-of-two step, in u64 arithmetic (so round_up(0) = 0 and values near 2^64 wrap). */
export function roundUpU64(x: bigint, step: bigint): bigint {
  return u64((u64(x - 1n) | (step - 1n)) + 1n);
}

function digitValue(c: string): number {
  const code = c.toLowerCase().charCodeAt(0);
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  return 99;
}

/** _parse_integer_fixup_radix: base 0 picks 16 for "0x<hexdigit>", 8 for a leading 0, else 10. */
function fixupRadix(s: string, at: number, base: number): { at: number; base: number } {
  if (base === 0) {
    if (s[at] === '0') base = s[at + 1]?.toLowerCase() === 'x' && digitValue(s[at + 2] ?? '') < 16 ? 16 : 8;
    else base = 10;
  }
  if (base === 16 && s[at] === '0' && s[at + 1]?.toLowerCase() === 'x') at += 2;
  return { at, base };
}

/** _parse_integer: digits of `base` from `at`, value mod 2^64 and whether it overflowed. */
function parseDigits(s: string, at: number, base: number): { value: bigint; end: number; overflow: boolean } {
  let v = 0n;
  let overflow = false;
  let i = at;
  const b = BigInt(base);
  for (; i < s.length; i++) {
    const d = digitValue(s[i]!);
    if (d >= base) break;
    const next = v * b + BigInt(d);
    if (next > ALLOC_ANYWHERE) overflow = true;
    v = u64(next);
  }
  return { value: v, end: i, overflow };
}

/** memparse(): a number (base auto-detected as simple_strtoull does) with an optional K/M/G/T/P/E suffix. */
export function memparse(s: string, at = 0): { value: bigint; end: number } {
  const r = fixupRadix(s, at, 0);
  const { value, end } = parseDigits(s, r.at, r.base);
  // simple_strtoull: with no digit after the prefix, the end is where the digits would start.
  let v = value;
  let e = end;
  const shifts: Record<string, bigint> = { e: 60n, p: 50n, t: 40n, g: 30n, m: 20n, k: 10n };
  const sh = s[e] === undefined ? undefined : shifts[s[e]!.toLowerCase()];
  if (sh !== undefined) {
    v = u64(v << sh);
    e++;
  }
  return { value: v, end: e };
}

/** kstrtouint(s, 10): optional '+', decimal digits, optional trailing newline, nothing else. */
function kstrtouint(s: string): number {
  let at = s[0] === '+' ? 1 : 0;
  const { value, end, overflow } = parseDigits(s, at, 10);
  if (overflow) throw new LuoError('EINVAL', `kho_scratch: scale "${s}" overflows (kernel: -ERANGE)`);
  if (end === at) throw new LuoError('EINVAL', `kho_scratch: scale "${s}" has no digits`);
  at = end;
  if (s[at] === '\n') at++;
  if (at !== s.length) throw new LuoError('EINVAL', `kho_scratch: unexpected "${s.slice(at)}" after the scale at position ${at}`);
  if (value > 0xffffffffn) throw new LuoError('EINVAL', `kho_scratch: scale ${value} does not fit an unsigned int (kernel: -ERANGE)`);
  return Number(value);
}

/**
 * kho_parse_scratch_size: `N%` (a scale in percent) or `<lowmem>,<global>,<pernode>` with memparse
 * suffixes. Malformed input gives EINVAL (overflowing scales, -ERANGE in the kernel, too).
 */
export function parseKhoScratch(arg: string): ScratchConfig {
  if (arg.length === 0) throw new LuoError('EINVAL', 'kho_scratch: empty value');
  if (arg.endsWith('%')) {
    // s_scale[11]: at most 10 characters before the '%'.
    if (arg.length > 11) throw new LuoError('EINVAL', `kho_scratch: "${arg}" is longer than 11 characters`);
    return { kind: 'scale', scale: kstrtouint(arg.slice(0, -1)) };
  }
  const sizes: bigint[] = [];
  let at = 0;
  let total = 0n;
  for (let i = 0; i < 3; i++) {
    if (i > 0) {
      if (arg[at] !== ',') throw new LuoError('EINVAL', `kho_scratch: expected ',' at position ${at} of "${arg}"`);
      at++;
    }
    const { value, end } = memparse(arg, at);
    if (end === at) throw new LuoError('EINVAL', `kho_scratch: expected a size at position ${at} of "${arg}"`);
    sizes.push(value);
    total = u64(total + value);
    at = end;
  }
  if (total === 0n) throw new LuoError('EINVAL', `kho_scratch: "${arg}" asks for no scratch at all`);
  if (at !== arg.length) throw new LuoError('EINVAL', `kho_scratch: unexpected "${arg.slice(at)}" at position ${at}`);
  return { kind: 'sizes', lowmem: sizes[0]!, global: sizes[1]!, pernode: sizes[2]! };
}

/**
 * scratch_size_update: the lowmem and global sizes from the kernel-reserved bytes below
 * ARCH_LOW_ADDRESS_LIMIT (`reservedLow`) and in total (`reservedTotal`). Explicit sizes are used as
 * given (the kernel does not round them here).
 */
export function scratchSizes(cfg: ScratchConfig, reservedLow: bigint, reservedTotal: bigint): { lowmem: bigint; global: bigint } {
  if (cfg.kind === 'sizes') return { lowmem: cfg.lowmem, global: cfg.global };
  if (cfg.scale === 0) return { lowmem: 0n, global: 0n };
  const scale = BigInt(cfg.scale);
  const lowmem = roundUpU64(u64(reservedLow * scale) / 100n, CMA_MIN_ALIGNMENT_BYTES);
  const global = roundUpU64(u64(u64(reservedTotal * scale) / 100n - lowmem), CMA_MIN_ALIGNMENT_BYTES);
  return { lowmem, global };
}

/** scratch_size_node: from the kernel-reserved bytes on the node, or the explicit per-node size; always rounded up. */
export function scratchSizeNode(cfg: ScratchConfig, reservedNode: bigint): bigint {
  const size = cfg.kind === 'scale' && cfg.scale !== 0 ? u64(reservedNode * BigInt(cfg.scale)) / 100n : cfg.kind === 'sizes' ? cfg.pernode : 0n;
  return roundUpU64(size, CMA_MIN_ALIGNMENT_BYTES);
}

export interface ReservedScratch {
  /** nodes + 2 entries: [0] lowmem, [1] global, then one per node. */
  areas: KhoScratchArea[];
  /** Where memblock put the kho_scratch array itself (nodes + 2 entries of 16 bytes). */
  arrayAddr: bigint;
}

/**
 * kho_reserve_scratch: sizes and reserves the scratch areas top-down in memblock, in the kernel's
 * order (array, lowmem, global, each node). On failure everything is released and ENOMEM names the
 * area, as the kernel logs it before disabling KHO.
 */
export function reserveScratch(mb: Memblock, cfg: ScratchConfig = DEFAULT_SCRATCH_CONFIG, opts: { nodes?: readonly number[] } = {}): ReservedScratch {
  const nodes = opts.nodes ?? [0];
  const { lowmem, global } = scratchSizes(cfg, mb.reservedKernSize(ARCH_LOW_ADDRESS_LIMIT), mb.reservedKernSize(ALLOC_ANYWHERE));
  const arraySize = BigInt((nodes.length + 2) * KhoScratch.size);
  const arrayAddr = mb.alloc(arraySize, BigInt(PAGE_SIZE));
  const areas: KhoScratchArea[] = [];
  const fail = (what: string, cause: unknown): never => {
    for (const a of areas.reverse()) mb.free(a.addr, a.size);
    mb.free(arrayAddr, arraySize);
    throw new LuoError('ENOMEM', `KHO: failed to reserve ${what} scratch buffer`, { cause });
  };
  const place = (what: string, size: bigint, o: Parameters<Memblock['alloc']>[2]): void => {
    try {
      areas.push({ addr: mb.alloc(size, CMA_MIN_ALIGNMENT_BYTES, o), size });
    } catch (e) {
      fail(what, e);
    }
  };
  place('lowmem', lowmem, { low: true });
  place('global', global, {});
  for (const nid of nodes) place(`nid ${nid}`, scratchSizeNode(cfg, mb.reservedKernSize(ALLOC_ANYWHERE, nid)), { nid, exactNid: true });
  return { areas, arrayAddr };
}

/** kho_scratch_overlap: does [pa, pa+size) touch any scratch area? */
export function scratchOverlap(areas: readonly KhoScratchArea[], pa: bigint, size: bigint): boolean {
  for (const a of areas) if (pa < a.addr + a.size && a.addr < pa + size) return true;
  return false;
}

/** The scratch array as the kexec segment carries it: 16 bytes per entry. */
export function encodeScratchArray(areas: readonly KhoScratchArea[]): Uint8Array {
  const out = new Uint8Array(areas.length * KhoScratch.size);
  areas.forEach((a, i) => KhoScratch.encode({ addr: a.addr, size: a.size }, out, i * KhoScratch.size));
  return out;
}

export function decodeScratchArray(bytes: Uint8Array): KhoScratchArea[] {
  if (bytes.length % KhoScratch.size !== 0) {
    throw new LuoError('EINVAL', `kho_scratch array: ${bytes.length} bytes is not a multiple of ${KhoScratch.size}`);
  }
  const out: KhoScratchArea[] = [];
  for (let off = 0; off < bytes.length; off += KhoScratch.size) {
    const e = KhoScratch.decode(bytes, off);
    if (e.addr + e.size > (1n << 64n) - 1n) throw new LuoError('EINVAL', `kho_scratch array: entry at offset ${off} (${hex(e.addr)}+${hex(e.size)}) wraps past 2^64`);
    out.push({ addr: e.addr, size: e.size });
  }
  return out;
}

/** The debugfs files out/scratch_phys and out/scratch_len: one "0x<hex>\n" line per area. */
export function formatScratchDebugfs(areas: readonly KhoScratchArea[]): { scratch_phys: string; scratch_len: string } {
  return {
    scratch_phys: areas.map((a) => `${hex(a.addr)}\n`).join(''),
    scratch_len: areas.map((a) => `${hex(a.size)}\n`).join(''),
  };
}

function parseHexLines(text: string, file: string): bigint[] {
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new LuoError('EINVAL', `${file}: missing final newline`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      if (!/^0x[0-9a-f]+$/.test(line)) throw new LuoError('EINVAL', `${file}: line ${i + 1} "${line}" is not 0x<hex>`);
      return BigInt(line);
    });
}

export function parseScratchDebugfs(scratchPhys: string, scratchLen: string): KhoScratchArea[] {
  const addrs = parseHexLines(scratchPhys, 'scratch_phys');
  const sizes = parseHexLines(scratchLen, 'scratch_len');
  if (addrs.length !== sizes.length) {
    throw new LuoError('EINVAL', `scratch_phys has ${addrs.length} line(s), scratch_len has ${sizes.length}`);
  }
  return addrs.map((addr, i) => ({ addr, size: sizes[i]! }));
}
