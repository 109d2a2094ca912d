/**
 * `luo conform`'s pure parts: the three-stage generator, the console parser, the newc initramfs,
 * the normalization, diff, grouping and known-divergences file, the seed list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareRuns, groupDivergences, knownFor, normalizeLine, parseKnown } from '../../src/conform/compare.ts';
import { newcArchive } from '../../src/conform/cpio.ts';
import { initScript } from '../../src/conform/guest.ts';
import { generate, parseStage, stageText } from '../../src/conform/program.ts';
import { ConsoleParser, type KernelRun } from '../../src/conform/qemu.ts';
import { parseSeeds } from '../../src/conform/run.ts';
import { FileSchemaError } from '../../src/schema/yaml-file.ts';

const run = (stages: string[][], outcome: KernelRun['outcome'] = 'done', panic?: string): KernelRun => ({ stages: stages.map((lines) => ({ lines, rc: 0 })), outcome, ...(panic ? { panic } : {}), tail: [] });

test('conform programs: three stages by default for luo conform, deterministic, bulk and foreign-file operations present', () => {
  const a = generate(11, { opsPerStage: 400, stages: 3 });
  assert.deepEqual(generate(11, { opsPerStage: 400, stages: 3 }), a);
  assert.equal(a.stages.length, 3);
  assert.ok(a.stages.every((s) => s.length === 400));
  for (const st of a.stages) assert.deepEqual(parseStage(stageText(st)), st);
  const names = new Set(Array.from({ length: 6 }, (_, i) => generate(i + 1, { opsPerStage: 1500, stages: 3 }).stages.flat().map((o) => o.name)).flat());
  for (const n of ['other', 'bulk_create', 'bulk_rsession', 'bulk_preserve', 'bulk_rfd']) assert.ok(names.has(n as never), n);
});

test('normalization: fd numbers are not compared, everything else is', () => {
  assert.equal(normalizeLine('3 open r=7 e=0'), '3 open r=fd e=0');
  assert.equal(normalizeLine('9 rfd r=12 e=0'), '9 rfd r=fd e=0');
  assert.equal(normalizeLine('9 rfd r=-1 e=ENOENT'), '9 rfd r=-1 e=ENOENT');
  assert.equal(normalizeLine('4 read r=5 e=0 fnv=01020304'), '4 read r=5 e=0 fnv=01020304');
  assert.equal(normalizeLine('5 bulk_create r=51 e=0'), '5 bulk_create r=51 e=0');
});

test('comparison: identical runs, the first divergent line and the cascade after it, a different outcome', () => {
  const k = run([['1 open r=3 e=0', '2 create r=4 e=0'], ['1 open r=3 e=0', '2 read r=-1 e=ESPIPE', '3 close r=0 e=0']]);
  assert.equal(compareRuns(1, k, run([['1 open r=5 e=0', '2 create r=6 e=0'], ['1 open r=3 e=0', '2 read r=-1 e=ESPIPE', '3 close r=0 e=0']])).identical, true);
  const d = compareRuns(2, k, run([['1 open r=3 e=0', '2 create r=4 e=0'], ['1 open r=3 e=0', '2 read r=-1 e=EINVAL', '3 close r=-1 e=EBADF']]));
  assert.equal(d.identical, false);
  assert.deepEqual(d.first, { stage: 2, index: 2, op: 'read', kernel: '2 read r=-1 e=ESPIPE', luo: '2 read r=-1 e=EINVAL' });
  assert.equal(d.cascade, 1);
  assert.equal(d.key, 'read: kernel r=-1 e=ESPIPE | luo r=-1 e=EINVAL');
  // the kernel panicked at the second boot: luo has a stage the kernel never ran
  // the kernel panicked at the second boot: luo has a stage the kernel never ran; the panic is the cause
  const p = compareRuns(3, run([['1 open r=3 e=0']], 'panic', 'Kernel panic - not syncing: luo: bad block'), run([['1 open r=3 e=0'], ['1 open r=3 e=0', '2 close r=0 e=0']]));
  assert.deepEqual([p.first?.op, p.first?.stage, p.first?.index, p.cascade], ['outcome', 2, 1, 2]);
  assert.equal(p.key, 'outcome: kernel panic (Kernel panic - not syncing: luo: bad block) | luo done');
  const o = compareRuns(4, run([['1 open r=3 e=0']], 'panic', 'Kernel panic - not syncing: x'), run([['1 open r=3 e=0']]));
  assert.equal(o.key, 'outcome: kernel panic (Kernel panic - not syncing: x) | luo done');
  assert.equal(o.cascade, 0);
});

test('grouping by root cause, known divergences matched by operation and text, biggest group first', () => {
  const k = (e: string) => run([['1 open r=3 e=0', `2 read r=-1 e=${e}`]]);
  const results = [
    compareRuns(1, k('ESPIPE'), k('EINVAL')),
    compareRuns(2, k('ESPIPE'), k('ESPIPE')),
    compareRuns(3, k('ESPIPE'), k('EINVAL')),
    compareRuns(4, k('EBADF'), k('EINVAL')),
  ];
  const known = parseKnown('divergences:\n  - op: read\n    kernel: e=EBADF\n    why: a test entry\n', 'known.yaml');
  const groups = groupDivergences(results, known);
  assert.deepEqual(groups.map((g) => [g.key, g.seeds, g.known?.why]), [
    ['read: kernel r=-1 e=ESPIPE | luo r=-1 e=EINVAL', [1, 3], undefined],
    ['read: kernel r=-1 e=EBADF | luo r=-1 e=EINVAL', [4], 'a test entry'],
  ]);
  assert.equal(knownFor({ stage: 1, index: 2, op: 'read', kernel: '2 read r=-1 e=EBADF', luo: 'x' }, [{ op: 'read', luo: 'nope', why: 'w' }]), undefined);
});

test('a known-divergences file that is not one: every problem with its line', () => {
  assert.throws(() => parseKnown('divergences:\n  - op: read\n  - kernel: x\n    why: y\n', 'k.yaml'), (e: unknown) => {
    assert.ok(e instanceof FileSchemaError);
    assert.match(e.message, /k\.yaml:2:\d+: divergences\[0\]: missing required field "why"/);
    assert.match(e.message, /k\.yaml:3:\d+: divergences\[1\]: missing required field "op"/);
    return true;
  });
  assert.throws(() => parseKnown('- op: read\n', 'k.yaml'), FileSchemaError);
  assert.throws(() => parseKnown('divergences: []\nextra: 1\n', 'k.yaml'), /unknown field "extra"/);
});

test('the console parser: transcripts between markers, kernel messages and holder lines left out, a panic noted', () => {
  const p = new ConsoleParser();
  for (const l of [
    '[    0.000000] Linux version 7.3.4',
    '=== CONFORM STAGE 1 BEGIN',
    '1 open r=3 e=0',
    '[    1.2] luo: something the kernel said',
    '2 create r=4 e=0\r',
    'HOLDER 77',
    '=== CONFORM STAGE 1 END rc=0',
    'UAPI kexec_file_load = 0',
    '=== CONFORM STAGE 2 BEGIN',
    '1 open r=3 e=0',
    '[    3.1] Kernel panic - not syncing: luo: bad block',
  ]) p.push(l);
  assert.deepEqual(p.stages.map((s) => [s.lines, s.rc]), [[['1 open r=3 e=0', '2 create r=4 e=0'], 0], [['1 open r=3 e=0'], undefined]]);
  assert.equal(p.panic, 'Kernel panic - not syncing: luo: bad block');
  assert.equal(p.done, false);
});

test('the initramfs: a newc archive busybox cpio lists, with /dev/console as a character device and the init first-class', () => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-cpio-'));
  try {
    const a = newcArchive([
      { kind: 'dir', path: 'dev' },
      { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
      { kind: 'file', path: 'init', data: new TextEncoder().encode(initScript()), mode: 0o755 },
      { kind: 'symlink', path: 'sh', target: 'busybox' },
    ]);
    assert.equal(a.length % 4, 0);
    writeFileSync(join(dir, 'a.cpio'), a);
    const tool = ['/bin/busybox', '/usr/bin/busybox'].find((p) => spawnSync(p, ['true']).status === 0);
    assert.ok(tool, 'busybox (the guest needs busybox-static)');
    const r = spawnSync(tool, ['cpio', '-tv', '-F', join(dir, 'a.cpio')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^d.* dev$/m);
    assert.match(r.stdout, /^c.* dev\/console$/m);
    assert.match(r.stdout, /^-rwxr-xr-x.* init$/m);
    assert.match(r.stdout, /^l.* sh -> busybox$/m);
    assert.throws(() => newcArchive([{ kind: 'dir', path: '../etc' }]), /not a clean relative path/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('seed lists: single seeds, ranges and lists, each once; a bad one named', () => {
  assert.deepEqual(parseSeeds('1-5'), [1, 2, 3, 4, 5]);
  assert.deepEqual(parseSeeds('7, 3-4,7'), [7, 3, 4]);
  for (const bad of ['', '5-1', 'a', '1-2-3', '1-99999999']) assert.throws(() => parseSeeds(bad), /is not a seed or a range/, bad);
});
