/** `luo inspect` end to end through bin/luo.mjs: human tree, --json, --kind, exit codes 0/1/2. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIX, PAGES_DIR, realPages, tmp, writeElfCore } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function luo(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/luo.mjs', ...args], { cwd: ROOT, maxBuffer: 1 << 26 });
  return { status: r.status ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test('luo inspect <pages dir>: the whole tree, exit 0', () => {
  const r = luo(['inspect', '--memfd-contents', '--memfd-bytes', '8', PAGES_DIR]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  for (const want of [
    'KHO root FDT @0x1f0000 (285 bytes, found by scan): compatible "kho-v4", profile kho-v4',
    '  preserved-memory-map: 0x1ef000',
    '  subtree "LUO": preserved-data 0x3ac000, blob-size 32',
    '  subtree "kexec-metadata": preserved-data 0x1f7000, blob-size 73',
    'tracker (radix tree @0x1ef000): 7 node(s), 23 preserved block(s), 94208 bytes (92 KiB) preserved',
    '  order 0: 23 block(s)',
    '  preserved pa 0x3f83d000 order 0 key 0x1000000003f83d',
    'kexec-metadata @0x1f7000: version 1, previous_release "7.3.4", kexec_count 1',
    'luo_ser @0x3ac000: compatible "luo-v5", liveupdate_num 1, sessions_pa 0x3f83d000, flbs_pa 0x3ad000',
    '  session block 0 @0x3f83d000: next 0x0, count 3/51',
    '  session 0 "conf-session-a" @0x3f83d010: files 0x3ef000, count 3',
    '    file block 0 @0x3ef000: next 0x0, count 3/63',
    '    file 1 @0x3ef050: compatible "memfd-v2", token 0x2b, data 0x3df000',
    '      memfd-v2: pos 100, size 16384, seals 0x6 (SHRINK|GROW), flags 0x0, nr_folios 4',
    '          folio 2: pfn 0x11cd (pa 0x11cd000), flags 0x3 (DIRTY|UPTODATE), index 2, first bytes "CCCCCCCC"',
    '  session 1 "conf-session-b-empty" @0x3f83d060: files 0x0, count 0',
    'FLB page @0x3ad000: pgcnt 1, count 0',
    'problems: none',
  ]) assert.ok(lines.includes(want), `missing line: ${want}\n${r.stdout}`);
});

test('luo inspect --json: a stable structure, u64 values as hex strings', () => {
  const r = luo(['inspect', '--json', PAGES_DIR]);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(j), ['input', 'root', 'subtrees', 'tracker', 'kexecMetadata', 'luo', 'sessionBlocks', 'sessions', 'flbs', 'subsystems', 'writtenBy', 'problems']);
  assert.equal(j.root.pa, '0x1f0000');
  assert.equal(j.tracker.blocks, 23);
  assert.equal(j.luo.sessionsPa, '0x3f83d000');
  assert.deepEqual(j.sessions.map((s: { name: string }) => s.name), ['conf-session-a', 'conf-session-b-empty', 'conf-session-c-finish-early']);
  assert.equal(j.sessions[0].files[1].memfd.size, '0x4000');
  assert.equal(j.sessions[0].files[1].memfd.folioList[1].pfn, '0x3f828');
  assert.deepEqual(j.problems, []);
});

test('problems: exit 1, everything decodable still printed; ELF detected by magic', () => {
  const stale = luo(['inspect', FIX + 'debugfs/s2-boot/in/sub_fdts/LUO']);
  assert.equal(stale.status, 1);
  assert.match(stale.stdout, /error: LUO blob LUO: compatible .* is not .*"luo-v5"/);
  assert.match(stale.stderr, /1 problem\(s\)/);
  const trunc = luo(['inspect', '--json', FIX + 'debugfs/s1-boot/out/fdt']);
  assert.equal(trunc.status, 1);
  assert.deepEqual(JSON.parse(trunc.stdout).problems[0], { severity: 'error', where: 'root FDT offset 4', message: 'FDT_ERR_TRUNCATED: totalsize 285 > 233 available bytes' });
  const dir = tmp();
  const pages = realPages();
  new DataView(pages.get(0x3f83d000n)!.buffer).setBigUint64(8, 0n, true); // an empty session block
  writeFileSync(join(dir, 'core.elf'), writeElfCore([...pages].map(([pa, bytes]) => ({ pa, bytes })), 'vmcore'));
  const e = luo(['inspect', join(dir, 'core.elf')]);
  assert.equal(e.status, 1);
  assert.match(e.stdout, /^input: .*core\.elf \(elf\): ELF core, vmcore/m);
  assert.match(e.stdout, /error: session block 0 @0x3f83d000: block contains invalid entry count: 0/);
});

test('usage errors exit 2; a missing file is a clear message and exit 1', () => {
  assert.equal(luo(['inspect']).status, 2);
  assert.equal(luo(['inspect', '--kind', 'tarball', PAGES_DIR]).status, 2);
  assert.equal(luo(['inspect', '--fdt-addr', 'zz', PAGES_DIR]).status, 2);
  assert.equal(luo(['inspect', '--memfd-bytes', '0', PAGES_DIR]).status, 2);
  // --memfd-contents takes no value: the file argument after it is still the file
  assert.equal(luo(['inspect', '--memfd-contents', PAGES_DIR]).status, 0);
  const m = luo(['inspect', '/nonexistent/dump.elf']);
  assert.equal(m.status, 1);
  assert.match(m.stdout, /error: input \/nonexistent\/dump\.elf: no such file or directory \(ENOENT\)/);
  const forced = luo(['inspect', '--kind', 'pages', '--fdt-addr', '0x1f0000', PAGES_DIR]);
  assert.equal(forced.status, 0, forced.stdout);
  assert.match(forced.stdout, /found by argument/);
});

test('luo inspect - reads the artefact from stdin', () => {
  const blob = readFileSync(join(FIX, 'debugfs/s2-after-finish/in/fdt'));
  const r = spawnSync(process.execPath, ['bin/luo.mjs', 'inspect', '-'], { cwd: ROOT, input: blob, encoding: 'utf8' });
  assert.match(r.stdout, /^input: - \(/);
  assert.match(r.stdout, /compatible "kho-v4"/);
});

test('luo inspect --extract DIR: each preserved file\'s logical content and a manifest with sha256 (as crit users expect)', () => {
  const dir = tmp();
  const r = luo(['inspect', '--extract', dir, PAGES_DIR]);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { sessions: Array<{ name: string; files: Array<{ token: string; size: number; pos: number; seals: number; sha256: string; path: string }> }> };
  assert.deepEqual(m.sessions.map((s) => [s.name, s.files.map((f) => f.token)]), [['conf-session-a', ['0x1a', '0x2b', '0x3c']], ['conf-session-c-finish-early', ['0x4d']]]);
  const hello = readFileSync(join(dir, 'conf-session-a/0x1a.bin'));
  assert.equal(hello.toString(), 'hello kexec world');
  // 4 pages: 'A', a hole, 'C', a fallocated page; pos 100, seals GROW|SHRINK (as luoprobe preserved it)
  const four = readFileSync(join(dir, 'conf-session-a/0x2b.bin'));
  assert.equal(four.length, 16384);
  assert.ok(four.subarray(0, 4096).every((b) => b === 0x41) && four.subarray(4096, 8192).every((b) => b === 0) && four.subarray(8192, 12288).every((b) => b === 0x43) && four.subarray(12288).every((b) => b === 0));
  const f2b = m.sessions[0]!.files[1]!;
  assert.deepEqual([f2b.size, f2b.pos, f2b.seals], [16384, 100, 6]);
  assert.equal(f2b.sha256, createHash('sha256').update(four).digest('hex'));
  // --json carries the same sha256
  const j = JSON.parse(luo(['inspect', '--json', PAGES_DIR]).stdout) as { sessions: Array<{ files: Array<{ memfd: { sha256: string } }> }> };
  assert.equal(j.sessions[0]!.files[1]!.memfd.sha256, f2b.sha256);
});

test('a captured debugfs directory: every FDT and sub-blob decoded, its known quirks explained, exit 0', () => {
  const r = luo(['inspect', join(FIX, 'debugfs/s2-after-finish')]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /a KHO debugfs capture \(5 file\(s\)\)\. It holds the root FDT and the sub-blobs, not the preserved memory/);
  assert.match(r.stdout, /== in\/fdt\n.*\nKHO root FDT \(285 bytes, found by file\): compatible "kho-v4"/);
  assert.match(r.stdout, /== in\/sub_fdts\/LUO\nstale: the kernel that booted from this hand-over read this luo_ser in early boot/);
  assert.match(r.stdout, /kexec-metadata: version 1, previous_release "7\.3\.4", kexec_count 2/);
  const s1 = luo(['inspect', join(FIX, 'debugfs/s1-boot')]);
  assert.equal(s1.status, 0);
  assert.match(s1.stdout, /info: .*FDT_ERR_TRUNCATED.*debugfs keeps out\/fdt at the size it had when created/);
});

test('a lone page of a pages capture: says so, and to inspect its directory', () => {
  const r = luo(['inspect', join(PAGES_DIR, 'file-block.conf-session-a-0@0x3ef000.bin')]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /one page of a pages capture \(file-block\.conf-session-a-0 at 0x3ef000\).*inspect the directory that holds it/);
  assert.doesNotMatch(r.stdout, /use --kind/);
});
