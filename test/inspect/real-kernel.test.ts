/**
 * `luo inspect` on what a real Linux 7.3.4 wrote: the captured hand-over pages decode to exactly
 * what the capture's own walk (walk.txt) found, with no problems; the root FDT page decodes; the
 * truncated debugfs out/fdt and the stale stage-2 LUO blob are reported for what they are.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inspectPath } from '../../src/inspect/inspect.ts';
import { isFault, type Report } from '../../src/inspect/report.ts';
import { FIX, PAGES_DIR } from './helpers.ts';

const faults = (r: Report) => r.problems.filter(isFault);

/** Python's repr of bytes (b'..') to bytes. */
function pyBytes(s: string): number[] {
  const body = s.slice(2, -1);
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '\\' && body[i + 1] === 'x') { out.push(parseInt(body.slice(i + 2, i + 4), 16)); i += 3; } else out.push(body.charCodeAt(i));
  }
  return out;
}

/** walk.txt as structured expectations. */
function parseWalk() {
  const text = readFileSync(FIX + 'handover-memory/walk.txt', 'utf8');
  const lines = text.split('\n');
  const sessions: { name: string; files: bigint; count: bigint; fileList: { compatible: string; token: bigint; data: bigint; memfd?: Record<string, bigint>; folios: { pfn: bigint; flags: number; index: bigint; first: number[] }[] }[] }[] = [];
  const preserved: { pa: bigint; order: number; key: bigint }[] = [];
  const subnodes: { name: string; pa: bigint; size: bigint }[] = [];
  let luo: RegExpExecArray | null = null;
  let meta: RegExpExecArray | null = null;
  let root: RegExpExecArray | null = null;
  let file: (typeof sessions)[number]['fileList'][number] | undefined;
  let nodes = 0;
  const byName = new Map<string, (typeof sessions)[number]>();
  let cur: (typeof sessions)[number] | undefined;
  for (const l of lines) {
    let m: RegExpExecArray | null;
    if ((m = /^KHO FDT root compatible=(\S+) preserved-memory-map=(0x[0-9a-f]+)/.exec(l))) root = m;
    else if ((m = /^ {2}subnode (\S+): preserved-data=(0x[0-9a-f]+) blob-size=(\d+)/.exec(l))) subnodes.push({ name: m[1]!, pa: BigInt(m[2]!), size: BigInt(m[3]!) });
    else if ((m = /^kexec-metadata: version=(\d+) previous_release='([^']*)' kexec_count=(\d+)/.exec(l))) meta = m;
    else if ((m = /^luo_ser: compatible='([^']*)' liveupdate_num=(\d+) sessions_pa=(0x[0-9a-f]+) flbs_pa=(0x[0-9a-f]+)/.exec(l))) luo = m;
    else if ((m = /^ {2}session '([^']*)': files_pa=(0x[0-9a-f]+) count=(\d+)/.exec(l))) {
      const s = { name: m[1]!, files: BigInt(m[2]!), count: BigInt(m[3]!), fileList: [] };
      sessions.push(s);
      byName.set(s.name, s);
    } else if ((m = /^file-block\[([^\]]*)\]/.exec(l))) cur = byName.get(m[1]!);
    else if ((m = /^ {4}file compatible='([^']*)' token=(0x[0-9a-f]+) data=(0x[0-9a-f]+)/.exec(l))) {
      file = { compatible: m[1]!, token: BigInt(m[2]!), data: BigInt(m[3]!), folios: [] };
      cur!.fileList.push(file);
    } else if ((m = /memfd_luo_ser: pos=(\d+) size=(\d+) seals=(0x[0-9a-f]+) flags=(0x[0-9a-f]+) nr_folios=(\d+) folios.first=(0x[0-9a-f]+) total_pages=(\d+) flags=(0x[0-9a-f]+) order=(\d+)/.exec(l))) {
      file!.memfd = { pos: BigInt(m[1]!), size: BigInt(m[2]!), seals: BigInt(m[3]!), flags: BigInt(m[4]!), nr: BigInt(m[5]!), first: BigInt(m[6]!), total: BigInt(m[7]!), vflags: BigInt(m[8]!), order: BigInt(m[9]!) };
    } else if ((m = /folio\[\d+\] pfn=(0x[0-9a-f]+) flags=(0x[0-9a-f]+) index=(\d+) first_bytes=(b'.*')$/.exec(l))) {
      file!.folios.push({ pfn: BigInt(m[1]!), flags: Number(m[2]!), index: BigInt(m[3]!), first: pyBytes(m[4]!) });
    } else if ((m = /^KHO radix tree: (\d+) nodes, (\d+) preserved/.exec(l))) nodes = Number(m[1]!);
    else if ((m = /^ {2}preserved pa=(0x[0-9a-f]+) order=(\d+) key=(0x[0-9a-f]+)/.exec(l))) preserved.push({ pa: BigInt(m[1]!), order: Number(m[2]!), key: BigInt(m[3]!) });
  }
  return { root: root!, subnodes, meta: meta!, luo: luo!, sessions, preserved, nodes };
}

test('the real 7.3.4 hand-over pages decode to exactly what walk.txt found, with no problems', async () => {
  const w = parseWalk();
  assert.equal(w.preserved.length, 23);
  assert.equal(w.sessions.flatMap((s) => s.fileList).length, 4);
  assert.equal(w.sessions.flatMap((s) => s.fileList).flatMap((f) => f.folios).length, 6);
  const r = await inspectPath(PAGES_DIR, { memfdContents: 8 });
  assert.deepEqual(faults(r), []);
  assert.deepEqual(r.problems, []);
  assert.equal(r.input.kind, 'pages');
  assert.equal(r.root!.pa, 0x1f0000n);
  assert.equal(r.root!.foundBy, 'scan');
  assert.equal(r.root!.compatible, w.root[1]);
  assert.equal(r.root!.preservedMemoryMap, BigInt(w.root[2]!));
  // the strings a real 7.3.4 writes are 7.3.4's (and the seeds' 2-page-block variant's, which kept them)
  assert.deepEqual(r.writtenBy, ['7.3.4', '7.3.5', 'seed-2page-blocks']);
  assert.deepEqual(r.subtrees.map((s) => ({ name: s.name, pa: s.preservedData, size: s.blobSize })), w.subnodes);
  assert.deepEqual(r.kexecMetadata && [r.kexecMetadata.version, r.kexecMetadata.previousRelease, r.kexecMetadata.kexecCount], [Number(w.meta[1]), w.meta[2], Number(w.meta[3])]);
  assert.deepEqual(r.luo && [r.luo.compatible, r.luo.liveupdateNum, r.luo.sessionsPa, r.luo.flbsPa], [w.luo[1], BigInt(w.luo[2]!), BigInt(w.luo[3]!), BigInt(w.luo[4]!)]);
  // The tracker: 7 nodes, the 23 preserved keys in walk order.
  assert.equal(r.tracker!.format, 'radix');
  assert.equal(r.tracker!.nodes, w.nodes);
  assert.equal(r.tracker!.blocks, 23);
  assert.deepEqual(r.tracker!.perOrder, { 0: 23 });
  assert.equal(r.tracker!.totalBytes, 23n * 4096n);
  assert.deepEqual(r.tracker!.list, w.preserved);
  // Sessions, files, memfds, folios.
  assert.equal(r.sessions.length, 3);
  assert.deepEqual(r.sessionBlocks.map((b) => [b.pa, b.next, b.count, b.capacity]), [[0x3f83d000n, 0n, 3n, 51]]);
  for (const [i, ws] of w.sessions.entries()) {
    const s = r.sessions[i]!;
    assert.deepEqual([s.name, s.filesPa, s.count], [ws.name, ws.files, ws.count]);
    assert.equal(s.files.length, ws.fileList.length, ws.name);
    for (const [j, wf] of ws.fileList.entries()) {
      const f = s.files[j]!;
      assert.deepEqual([f.compatible, f.token, f.data], [wf.compatible, wf.token, wf.data]);
      const m = f.memfd!;
      const e = wf.memfd!;
      assert.deepEqual(
        [m.pos, m.size, BigInt(m.seals!), BigInt(m.flags!), m.nrFolios, m.folios.first, BigInt(m.folios.totalPages), BigInt(m.folios.flags), BigInt(m.folios.order)],
        [e.pos, e.size, e.seals, e.flags, e.nr, e.first, e.total, e.vflags, e.order],
        `${ws.name} ${wf.token}`,
      );
      assert.deepEqual(
        m.folioList.map((x) => ({ pfn: x.pfn, flags: x.flags, index: x.index, first: [...Buffer.from(x.firstBytes!, 'hex')] })),
        wf.folios,
      );
    }
  }
  assert.deepEqual(r.flbs, { pa: 0x3ad000n, pgcnt: 1n, count: 0n, records: [] });
});

test('--fdt-addr finds the same root; a wrong address is a problem, not a crash', async () => {
  const r = await inspectPath(PAGES_DIR, { fdtAddr: 0x1f0000n });
  assert.equal(r.root!.foundBy, 'argument');
  assert.deepEqual(faults(r), []);
  const bad = await inspectPath(PAGES_DIR, { fdtAddr: 0x3ac000n });
  assert.equal(bad.root, null);
  assert.match(bad.problems[0]!.message, /no FDT magic at 0x3ac000/);
  assert.equal(bad.problems[0]!.where, 'root FDT @0x3ac000 (--fdt-addr)');
  const outside = await inspectPath(PAGES_DIR, { fdtAddr: 0x9000000n });
  assert.match(outside.problems[0]!.message, /outside the memory view/);
});

test('the root FDT page taken at kexec (kho-fdt-at-kexec.dtb) decodes as a lone kho-v4 root', async () => {
  const r = await inspectPath(FIX + 'handover-memory/kho-fdt-at-kexec.dtb');
  assert.equal(r.input.kind, 'fdt');
  assert.deepEqual(faults(r), []);
  assert.equal(r.root!.compatible, 'kho-v4');
  assert.equal(r.root!.profile, 'kho-v4');
  assert.equal(r.root!.preservedMemoryMap, 0x1ef000n);
  assert.deepEqual(r.subtrees, [
    { name: 'LUO', preservedData: 0x3ac000n, blobSize: 32n },
    { name: 'kexec-metadata', preservedData: 0x1f7000n, blobSize: 73n },
  ]);
  // Stage 2's in/fdt is the same bytes.
  const s2 = await inspectPath(FIX + 'debugfs/s2-boot/in/fdt');
  assert.deepEqual(s2.subtrees, r.subtrees);
});

test('the truncated debugfs out/fdt is reported as truncated, with the offset', async () => {
  const r = await inspectPath(FIX + 'debugfs/s1-boot/out/fdt');
  const f = faults(r);
  assert.equal(f.length, 1);
  assert.equal(f[0]!.severity, 'error');
  assert.equal(f[0]!.where, 'root FDT offset 4');
  assert.equal(f[0]!.message, 'FDT_ERR_TRUNCATED: totalsize 285 > 233 available bytes');
  assert.ok(r.problems.some((p) => /ends at byte 233 of 285/.test(p.message)));
});

test('the stale stage-2 in/sub_fdts/LUO is reported as not luo-v5; the outgoing one decodes', async () => {
  const r = await inspectPath(FIX + 'debugfs/s2-boot/in/sub_fdts/LUO');
  assert.equal(r.luo, null);
  const f = faults(r);
  assert.equal(f.length, 1);
  assert.match(f[0]!.message, /is not "luo-v3" or "luo-v4" or "luo-v5" or "luo-v5;block-v1": not a luo_ser luo decodes/);
  const out = await inspectPath(FIX + 'debugfs/s2-boot/out/sub_fdts/LUO');
  assert.deepEqual(faults(out), []);
  assert.equal(out.luo!.liveupdateNum, 2n);
  assert.equal(out.luo!.sessionsPa, 0n);
  const s1 = await inspectPath(FIX + 'debugfs/s1-after-preserve/out/sub_fdts/LUO');
  assert.deepEqual([s1.luo!.liveupdateNum, s1.luo!.sessionsPa, s1.luo!.flbsPa], [1n, 0n, 0x3ad000n]);
  const md = await inspectPath(FIX + 'debugfs/s2-boot/out/sub_fdts/kexec-metadata');
  assert.deepEqual(md.kexecMetadata, { size: 73n, version: 1, previousRelease: '7.3.4', kexecCount: 2 });
});
