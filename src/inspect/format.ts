/**
 * Printing a Report: an indented human tree with hex addresses (root, subtrees, tracker, metadata,
 * luo_ser, session blocks, sessions with their file blocks, files, memfds, FLBs, problems), and
 * stable JSON in which every u64 (bigint) is a "0x..." string.
 */
import { folioFlagNames, sealNames } from './memfd.ts';
import { entryKindsOf } from './luo.ts';
import { type BlockInfo, type MemfdInfo, type Report, hex } from './report.ts';

/** Blocks of the tracker listed in the human output before "... N more". */
const HUMAN_BLOCKS = 64;

export function toJson(r: Report): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v), 2) + '\n';
}

const q = (s: string): string => JSON.stringify(s);

/** Bytes (hex) as a quoted C-ish string: printable ASCII kept, others as \xNN. */
function shown(hexBytes: string): string {
  let s = '';
  for (let i = 0; i < hexBytes.length; i += 2) {
    const c = parseInt(hexBytes.slice(i, i + 2), 16);
    s += c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `"${s}"`;
}

const bytesHuman = (n: bigint): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) { v /= 1024; u++; }
  return `${v} ${units[u]}`;
};

const block = (label: string, b: BlockInfo): string => `${label} ${b.index} @${hex(b.pa)}: next ${hex(b.next)}, count ${b.count}/${b.capacity}`;

function memfdLines(m: MemfdInfo, ind: string): string[] {
  const out = [`${ind}${m.version}: pos ${m.pos}, size ${m.size}${m.seals !== undefined ? `, seals ${hex(m.seals)} (${sealNames(m.seals)})` : ''}${m.flags !== undefined ? `, flags ${hex(m.flags)}` : ''}, nr_folios ${m.nrFolios}`];
  if (m.nrFolios === 0n && m.folios.first === 0n) return out;
  const f = m.folios;
  out.push(`${ind}  folios: kho_vmalloc first ${hex(f.first)}, total_pages ${f.totalPages}, flags ${hex(f.flags)}, order ${f.order}`);
  m.chunks.forEach((c, i) => out.push(`${ind}    vmalloc chunk ${i} @${hex(c.pa)}: next ${hex(c.next)}, pages ${c.runs.map(hex).join(' ') || '(none)'}`));
  m.folioList.forEach((x, i) => out.push(`${ind}    folio ${i}: pfn ${hex(x.pfn)} (pa ${hex(x.pfn << 12n)}), flags ${hex(x.flags)} (${folioFlagNames(x.flags)}), index ${x.index}${x.firstBytes !== undefined ? `, first bytes ${shown(x.firstBytes)}` : ''}`));
  return out;
}

export function toHuman(r: Report): string {
  const L: string[] = [];
  L.push(`input: ${r.input.path} (${r.input.kind}): ${r.input.description}`);
  if (r.root) {
    const x = r.root;
    L.push(`KHO root FDT${x.pa !== undefined ? ` @${hex(x.pa)}` : ''} (${x.size} bytes, found by ${x.foundBy}): compatible ${q(x.compatible)}${x.profile ? `, profile ${x.profile}` : ''}`);
    if (x.preservedMemoryMap !== undefined) L.push(`  preserved-memory-map: ${hex(x.preservedMemoryMap)}`);
    for (const s of r.subtrees) {
      const parts = [
        s.preservedData !== undefined ? `preserved-data ${hex(s.preservedData)}` : '',
        s.blobSize !== undefined ? `blob-size ${s.blobSize}` : '',
        s.fdt !== undefined ? `fdt ${hex(s.fdt)}` : '',
        s.compatible !== undefined ? `compatible ${q(s.compatible)}` : '',
      ].filter(Boolean);
      L.push(`  subtree ${q(s.name)}: ${parts.join(', ') || '(no properties)'}`);
    }
  } else if (r.subtrees.length) {
    for (const s of r.subtrees) L.push(`FDT ${q(s.name)}: compatible ${q(s.compatible ?? '')}`);
  }
  if (r.writtenBy) L.push(`written by: ${r.writtenBy.length ? `release ${r.writtenBy.join(', release ')} (luo releases)` : 'no release luo knows (luo releases): its ABI strings do not go together'}`);
  if (r.tracker) {
    const t = r.tracker;
    L.push(`tracker (${t.format === 'radix' ? 'radix tree' : 'kho-v1 bitmap chunks'} @${hex(t.rootPa)}): ${t.nodes} ${t.format === 'radix' ? 'node' : 'chunk/bitmap page'}(s), ${t.blocks} preserved block(s), ${t.totalBytes} bytes (${bytesHuman(t.totalBytes)}) preserved`);
    for (const [o, n] of Object.entries(t.perOrder).sort((a, b) => Number(a[0]) - Number(b[0]))) L.push(`  order ${o}: ${n} block(s)`);
    for (const b of t.list.slice(0, HUMAN_BLOCKS)) L.push(`  preserved pa ${hex(b.pa)} order ${b.order} key ${hex(b.key)}`);
    if (t.blocks > HUMAN_BLOCKS) L.push(`  ... ${t.blocks - HUMAN_BLOCKS} more (see --json)`);
  }
  if (r.kexecMetadata) {
    const m = r.kexecMetadata;
    L.push(`kexec-metadata${m.pa !== undefined ? ` @${hex(m.pa)}` : ''}: version ${m.version}, previous_release ${q(m.previousRelease)}, kexec_count ${m.kexecCount}`);
  }
  if (r.luo) {
    const l = r.luo;
    // the FDT era (luo-v1, luo-v2) kept a sub-FDT, and it and luo-v3 fixed arrays, where later releases keep luo_ser and blocks
    const kinds = entryKindsOf(l.compatible);
    const at = l.pa !== undefined ? ` @${hex(l.pa)}` : '';
    if (l.compatible === 'luo-v1') L.push(`LUO FDT${at}: compatible ${q(l.compatible)}, liveupdate-number ${l.liveupdateNum}, luo-session-header ${hex(l.sessionsPa)}${l.flbsPa ? `, luo-flb-header ${hex(l.flbsPa)}` : ''}`);
    else if (l.header !== undefined) L.push(`LUO FDT${at}: compatible ${q(l.compatible)}, luo-abi-header ${hex(l.header)} -> luo_ser: liveupdate_num ${l.liveupdateNum}, sessions_pa ${hex(l.sessionsPa)}, flbs_pa ${hex(l.flbsPa)}`);
    else L.push(`luo_ser${at}: compatible ${q(l.compatible)}, liveupdate_num ${l.liveupdateNum}, sessions_pa ${hex(l.sessionsPa)}, flbs_pa ${hex(l.flbsPa)}`);
    for (const b of r.sessionBlocks) L.push(`  ${block(kinds.sessions === 'array' ? 'session array' : 'session block', b)}`);
    if (!r.sessions.length) L.push('  (no sessions)');
    for (const s of r.sessions) {
      L.push(`  session ${s.index} ${q(s.name)} @${hex(s.slotPa)}: files ${hex(s.filesPa)}, count ${s.count}`);
      for (const b of s.fileBlocks) L.push(`    ${block(kinds.files === 'array' ? 'file array' : 'file block', b)}`);
      for (const f of s.files) {
        L.push(`    file ${f.index} @${hex(f.slotPa)}: compatible ${q(f.compatible)}, token ${hex(f.token)}, data ${hex(f.data)}`);
        if (f.memfd) L.push(...memfdLines(f.memfd, '      '));
      }
    }
  }
  if (r.flbs) {
    const f = r.flbs;
    L.push(`FLB page @${hex(f.pa)}: pgcnt ${f.pgcnt}, count ${f.count}`);
    f.records.forEach((x, i) => L.push(`  flb ${i} ${q(x.name)}: data ${hex(x.data)}, count ${x.count}`));
  }
  if (r.subsystems) {
    L.push('subsystems:');
    for (const [n, v] of Object.entries(r.subsystems)) L.push(`  ${q(n)}: ${hex(v)}`);
  }
  const faults = r.problems.filter((p) => p.severity !== 'info');
  L.push(faults.length ? `problems: ${faults.length}` : 'problems: none');
  for (const p of r.problems) L.push(`  ${p.severity}: ${p.where}: ${p.message}`);
  return L.join('\n') + '\n';
}
