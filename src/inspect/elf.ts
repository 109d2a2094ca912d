/**
 * ELF64 core dumps as physical memory: QEMU's dump-guest-memory (p_paddr = physical address) and
 * the kernel's /proc/vmcore (direct-map p_vaddr, plus a kernel-text PT_LOAD aliasing RAM). Every
 * header, offset and size is checked against the file; PT_NOTE and other segments are ignored.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { Problems, hex } from './report.ts';
import { type Segment, SegmentView } from './phys.ts';

export const ELF_MAGIC = Uint8Array.of(0x7f, 0x45, 0x4c, 0x46);
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const PT_LOAD = 1;
const PT_NOTE = 4;
const ET_CORE = 4;
const PN_XNUM = 0xffff;
/** More program headers than this is not a core dump anyone wrote (bounds the header walk). */
const MAX_PHNUM = 1 << 20;
/** x86_64 __START_KERNEL_map: a vmcore's kernel-text PT_LOAD lives here and aliases RAM. */
const KERNEL_TEXT_MAP = 0xffffffff80000000n;

export interface ElfLoad {
  index: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
}

export interface ElfCore {
  view: SegmentView;
  layout: string;
  loads: ElfLoad[];
  close(): void;
}

/** Bytes of the file at `off` (fewer when the file ends first). */
type Reader = (off: number, len: number) => Uint8Array;

/**
 * Parses the core dump at `path` (or given as bytes). Never throws for bad content: problems go
 * to `problems` and the view holds whatever PT_LOAD data is usable (possibly nothing).
 */
export function openElfCore(src: string | Uint8Array, problems: Problems): ElfCore {
  let fd: number | undefined;
  let size: number;
  let read: Reader;
  if (typeof src === 'string') {
    fd = openSync(src, 'r');
    const f = fd;
    size = fstatSync(f).size;
    read = (off, len) => {
      const n = Math.max(0, Math.min(len, size - off));
      const b = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        const r = readSync(f, b, got, n - got, off + got);
        if (r === 0) break;
        got += r;
      }
      return got === n ? b : b.subarray(0, got);
    };
  } else {
    const bytes = src;
    size = bytes.length;
    read = (off, len) => bytes.subarray(off, Math.min(size, off + len));
  }
  const close = (): void => { if (fd !== undefined) { closeSync(fd); fd = undefined; } };
  const empty = (why: string): ElfCore => ({ view: new SegmentView([], `ELF core (unusable: ${why})`), layout: 'unknown', loads: [], close });
  const E = (where: string, msg: string): void => problems.error(where, msg);

  const eh = read(0, EHDR_SIZE);
  for (let i = 0; i < 4; i++) {
    if (eh[i] !== ELF_MAGIC[i]) { E(`ELF header @offset ${hex(i)}`, eh.length <= i ? `file ends after ${eh.length} byte(s), before the ELF magic` : 'bad ELF magic (expected 7f 45 4c 46)'); return empty('bad magic'); }
  }
  if (eh.length < EHDR_SIZE) { E('ELF header @offset 0x0', `truncated: the file is ${size} bytes, an ELF64 header needs ${EHDR_SIZE}`); return empty('truncated header'); }
  if (eh[4] !== 2) { E('ELF header @offset 0x4 (EI_CLASS)', eh[4] === 1 ? 'ELF32 core dumps are not supported (need ELFCLASS64)' : `invalid EI_CLASS ${eh[4]}`); return empty('not ELF64'); }
  if (eh[5] !== 1 && eh[5] !== 2) { E('ELF header @offset 0x5 (EI_DATA)', `invalid EI_DATA ${eh[5]}`); return empty('bad byte order'); }
  const le = eh[5] === 1;
  if (!le) problems.warn('ELF header @offset 0x5 (EI_DATA)', 'big-endian core dump: KHO/LUO structures are decoded as little-endian');
  const dv = new DataView(eh.buffer, eh.byteOffset, EHDR_SIZE);
  const u16 = (o: number): number => dv.getUint16(o, le);
  if (eh[6] !== 1) problems.warn('ELF header @offset 0x6 (EI_VERSION)', `EI_VERSION ${eh[6]}, expected 1`);
  const eType = u16(16);
  if (eType !== ET_CORE) problems.warn('ELF header @offset 0x10 (e_type)', `e_type ${eType} is not ET_CORE (4)`);
  const phoff = dv.getBigUint64(32, le);
  const shoff = dv.getBigUint64(40, le);
  const phentsize = u16(54);
  let phnum = u16(56);
  if (phentsize !== PHDR_SIZE) { E('ELF header @offset 0x36 (e_phentsize)', `e_phentsize ${phentsize}, expected ${PHDR_SIZE}`); return empty('bad e_phentsize'); }
  if (phnum === PN_XNUM) {
    // More than 65534 headers: the real count is section header 0's sh_info (vmcores of big hosts).
    if (shoff === 0n || shoff + BigInt(SHDR_SIZE) > BigInt(size)) { E('ELF header @offset 0x28 (e_shoff)', `e_phnum is PN_XNUM but section header 0 at ${hex(shoff)} is not inside the ${size}-byte file`); return empty('bad PN_XNUM'); }
    const sh = read(Number(shoff), SHDR_SIZE);
    phnum = new DataView(sh.buffer, sh.byteOffset, SHDR_SIZE).getUint32(44, le);
  }
  if (phnum === 0) { E('ELF header @offset 0x38 (e_phnum)', 'no program headers: the dump holds no memory'); return empty('no program headers'); }
  if (phnum > MAX_PHNUM) { E('ELF header @offset 0x38 (e_phnum)', `${phnum} program headers is more than ${MAX_PHNUM}`); return empty('too many program headers'); }
  const phEnd = phoff + BigInt(phnum) * BigInt(PHDR_SIZE);
  if (phoff < BigInt(EHDR_SIZE) || phEnd > BigInt(size)) {
    E('ELF header @offset 0x20 (e_phoff)', `program header table [${hex(phoff)}, ${hex(phEnd)}) (${phnum} x ${PHDR_SIZE} bytes) is not inside the ${size}-byte file`);
    return empty('program headers outside the file');
  }
  const ph = read(Number(phoff), phnum * PHDR_SIZE);
  const pv = new DataView(ph.buffer, ph.byteOffset, ph.length);
  const loads: ElfLoad[] = [];
  let notes = 0;
  for (let i = 0; i < phnum; i++) {
    const o = i * PHDR_SIZE;
    const type = pv.getUint32(o, le);
    if (type === PT_NOTE) notes++;
    if (type !== PT_LOAD) continue;
    loads.push({
      index: i,
      offset: pv.getBigUint64(o + 8, le),
      vaddr: pv.getBigUint64(o + 16, le),
      paddr: pv.getBigUint64(o + 24, le),
      filesz: pv.getBigUint64(o + 32, le),
      memsz: pv.getBigUint64(o + 40, le),
    });
  }
  const where = (l: ElfLoad): string => `ELF program header ${l.index} @offset ${hex(phoff + BigInt(l.index * PHDR_SIZE))}`;
  if (!loads.length) { E('ELF program headers', `none of the ${phnum} program headers is PT_LOAD: the dump holds no memory`); return empty('no PT_LOAD'); }
  const vmcore = loads.some((l) => l.vaddr >= 0xffff800000000000n);
  const layout = vmcore ? 'vmcore (p_paddr physical, p_vaddr kernel virtual)' : 'dump-guest-memory (p_paddr physical)';
  if (loads.length > 1 && loads.every((l) => l.paddr === 0n)) {
    E('ELF program headers', `all ${loads.length} PT_LOAD segments have p_paddr 0: the dump does not say where its memory is physically`);
    return empty('no physical addresses');
  }
  // Kernel-text aliases go last so the RAM segment that holds the same bytes wins.
  const order = [...loads].sort((a, b) => Number(a.vaddr >= KERNEL_TEXT_MAP && vmcore) - Number(b.vaddr >= KERNEL_TEXT_MAP && vmcore) || a.index - b.index);
  const kept: Segment[] = [];
  const overlaps = (s: number, e: number): Segment | undefined => kept.find((k) => s < k.end && k.start < e);
  const MAX = BigInt(Number.MAX_SAFE_INTEGER);
  for (const l of order) {
    if (l.memsz === 0n) continue;
    if (l.filesz > l.memsz) problems.warn(where(l), `p_filesz ${hex(l.filesz)} > p_memsz ${hex(l.memsz)}; using p_filesz`);
    const span = l.filesz > l.memsz ? l.filesz : l.memsz;
    if (l.paddr + span > MAX || l.offset > MAX || l.filesz > MAX) { E(where(l), `segment p_paddr ${hex(l.paddr)} + ${hex(span)} or p_offset ${hex(l.offset)} is beyond 2^53`); continue; }
    let filesz = Number(l.filesz);
    const off = Number(l.offset);
    if (off + filesz > size) {
      const avail = Math.max(0, size - off);
      E(where(l), `segment truncated: p_offset ${hex(off)} + p_filesz ${hex(filesz)} = ${hex(off + filesz)} > file size ${hex(size)} (${avail} of ${filesz} bytes present; physical ${hex(l.paddr + BigInt(avail))}.. missing)`);
      filesz = avail;
    }
    const start = Number(l.paddr);
    const end = start + Number(span);
    const clash = overlaps(start, end);
    if (clash) {
      problems.info(where(l), `PT_LOAD [${hex(start)}, ${hex(end)}) (p_vaddr ${hex(l.vaddr)}) overlaps ${clash.label}; that one is used`);
      continue;
    }
    if (filesz > 0) kept.push({ start, end: start + filesz, readAt: (o, n) => read(off + o, n), scan: true, label: `PT_LOAD ${l.index}` });
    const fileEnd = Number(l.filesz);
    if (Number(span) > fileEnd && fileEnd === filesz) {
      // p_memsz beyond p_filesz reads as zeros, as the loader would fill it.
      kept.push({ start: start + fileEnd, end, readAt: (_o, n) => new Uint8Array(n), scan: false, label: `PT_LOAD ${l.index} (zero fill)` });
    }
  }
  const bytes = kept.reduce((n, s) => n + (s.end - s.start), 0);
  const view = new SegmentView(kept, `ELF core, ${layout}: ${loads.length} PT_LOAD, ${notes} PT_NOTE, ${hex(bytes)} bytes of memory`);
  return { view, layout, loads, close };
}
