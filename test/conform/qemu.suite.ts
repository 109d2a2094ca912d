/**
 * `npm run test:conform`: luo conform against a real kernel under QEMU. Builds the kernel with
 * `luo conform kernel` (Debian's linux-source-7.3; reused from ~/.cache/luo/conform when it is
 * there; LUO_CONFORM_KERNEL=bzImage skips the build), then:
 * - `luo conform run` over 10 seeds (3 stages x 300 operations): no divergence outside the known
 *   list, and every stage really ran on the kernel;
 * - the 7.3.4 defect the known list names, reproduced on purpose: 51 sessions, a duplicate create,
 *   and the next kernel panics, where luo restores all 51;
 * - another luo release (6.19: names unchecked, 128 files per session) against the 7.3.4 kernel:
 *   divergences found, grouped, exit 1, each with a rerun command;
 * - `luo conform show`: both transcripts side by side.
 * Nothing here waits on a wall clock: a slow machine only makes it longer.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { compareRuns } from '../../src/conform/compare.ts';
import { parseStage } from '../../src/conform/program.ts';
import { runOnKernel } from '../../src/conform/qemu.ts';
import { runOnLuo } from '../../src/conform/luo-side.ts';
import { buildTools } from '../../src/conform/run.ts';
import { defaultCacheDir } from '../../src/conform/kernel.ts';
import { ROOT } from '../native/harness.ts';

const KNOWN = join(ROOT, 'examples/conform/known-7.3.4.yaml');

function luo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/luo.mjs'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('luo conform against a real kernel under QEMU', () => {
  let kernel = process.env['LUO_CONFORM_KERNEL'] ?? '';

  before(async () => {
    if (kernel) return;
    const r = await luo(['conform', 'kernel', '--json']);
    assert.equal(r.code, 0, `luo conform kernel failed:\n${r.stderr}`);
    kernel = (JSON.parse(r.stdout) as { bzImage: string }).bzImage;
    assert.ok(existsSync(kernel));
  });

  it('10 seeds, cold boot then two kexecs, 300 operations each: no divergence outside the known list', async () => {
    const r = await luo(['conform', 'run', '--kernel', kernel, '--seeds', '1-10', '--known', KNOWN, '-j', '2', '--json']);
    assert.equal(r.code, 0, `${r.stdout.slice(0, 4000)}\n${r.stderr}`);
    const rep = JSON.parse(r.stdout) as { results: Array<{ seed: number; identical: boolean; kernelOutcome: string; key?: string }>; unlisted: number; identical: number; ops: number; stages: number };
    assert.equal(rep.results.length, 10);
    assert.equal(rep.unlisted, 0);
    assert.deepEqual([rep.ops, rep.stages], [300, 3]);
    // the kernel side really ran every stage (a guest that never booted would be "exited")
    for (const s of rep.results) assert.ok(['done', 'panic'].includes(s.kernelOutcome), `seed ${s.seed}: ${s.kernelOutcome}`);
    assert.ok(rep.identical >= 1);
  });

  it('the 7.3.4 empty-block defect: 51 sessions and a duplicate create panic the next kernel; luo restores all 51; the known list names it', async () => {
    const prog = { seed: 0, stages: [parseStage('open 0\nbulk_create 0 51 5\nbulk_create 0 1 5\n'), parseStage('open 0\nbulk_rsession 0 51 5\n')] };
    const tools = buildTools(join(defaultCacheDir(), 'tools'));
    const [k, l] = await Promise.all([runOnKernel(prog, { kernel, tools: tools.guest }), runOnLuo(prog, { tools: tools.host })]);
    assert.deepEqual(k.stages[0]!.lines, ['1 open r=3 e=0', '2 bulk_create r=51 e=0', '3 bulk_create r=0 e=EEXIST']);
    assert.equal(k.outcome, 'panic');
    assert.match(k.panic ?? '', /The incoming tree failed to initialize properly \[-22\]/);
    assert.deepEqual(l.stages[1]!.lines, ['1 open r=3 e=0', '2 bulk_rsession r=51 e=0']);
    const c = compareRuns(0, k, l);
    assert.equal(c.first?.op, 'outcome');
    const { parseKnown, knownFor } = await import('../../src/conform/compare.ts');
    const { readFileSync } = await import('node:fs');
    assert.ok(knownFor(c.first!, parseKnown(readFileSync(KNOWN, 'utf8'), KNOWN)));
  });

  it('luo as 6.19 against the 7.3.4 kernel: its release differences found, grouped by root cause, exit 1, a rerun command each', async () => {
    const r = await luo(['conform', 'run', '--kernel', kernel, '--seeds', '1-3', '--ops', '150', '--release', '6.19', '--known', KNOWN]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /divergent in \d+ group\(s\)/);
    assert.match(r.stdout, /NEW group 1: /);
    assert.match(r.stdout, /rerun: luo conform show \d+ --kernel .* --ops 150 --release 6\.19/);
    // what `luo releases` says of 6.19: session names unchecked (7.3.4 refuses an empty one) and
    // at most 128 files per session (ENOSPC)
    assert.match(r.stdout, /group \d: create: kernel r=-1 e=EINVAL \| luo r=fd e=0/);
    assert.match(r.stdout, /group \d: bulk_preserve: kernel r=200 e=0 \| luo r=128 e=ENOSPC/);
    assert.match(r.stdout, /  0 identical, 3 divergent/);
  });

  it('luo conform show: the program and both transcripts side by side', async () => {
    const r = await luo(['conform', 'show', '4', '--kernel', kernel, '--ops', '40']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /stage 1 \(cold boot\): 40 operations/);
    assert.match(r.stdout, /stage 3 \(after a kexec\): 40 operations/);
    assert.match(r.stdout, /^\s+kernel\s+luo$/m);
    assert.match(r.stdout, /1 open r=3 e=0 +\| 1 open r=3 e=0/);
    assert.match(r.stdout, /^identical$/m);
  });
});
