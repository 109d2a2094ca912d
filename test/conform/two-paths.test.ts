/**
 * Randomized property: generated uAPI programs (src/conform/program.ts) give the same transcript
 * on luo's in-process kernel and through `luo serve` + the LD_PRELOAD shim with a real C program
 * (native/conformance/lu_script.c), with a kexec of the daemon into a new process between the two
 * stages. The two luo paths must never disagree.
 *
 * Fixed seeds: 6 in npm test, 100 in the stress run; LUO_CONFORM_SEEDS=N runs N, starting at
 * LUO_CONFORM_FROM (default 1); LUO_CONFORM_OPS sets the operations per stage.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate, parseStage, stageText } from '../../src/conform/program.ts';
import { runModel } from '../../src/conform/run-model.ts';
import { buildNative, Daemon, runShimmed } from '../native/harness.ts';
import { scaled } from '../helpers/scale.ts';

const SEEDS = scaled(6, 100, 'LUO_CONFORM_SEEDS');
const OPS = Number(process.env.LUO_CONFORM_OPS ?? 250);
const FROM = Number(process.env.LUO_CONFORM_FROM ?? 1);

/** The first differing line of two transcripts, with context, or undefined. */
function firstDiff(a: readonly string[], b: readonly string[]): string | undefined {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}:\n  in process: ${a[i] ?? '(none)'}\n  shim:       ${b[i] ?? '(none)'}\n  before: ${a.slice(Math.max(0, i - 3), i).join(' | ')}`;
  }
  return undefined;
}

test_generator();

function test_generator(): void {
  describe('generated programs', () => {
    it('are the same for the same seed and different for another; the text form round-trips', () => {
      const a = generate(7, { opsPerStage: 200 });
      assert.deepEqual(generate(7, { opsPerStage: 200 }), a);
      assert.notDeepEqual(generate(8, { opsPerStage: 200 }).stages, a.stages);
      for (const st of a.stages) assert.deepEqual(parseStage(stageText(st)), st);
      assert.equal(a.stages.length, 2);
      assert.equal(a.stages[0]!.length, 200);
    });
    it('cover the whole uAPI and the memfd operations around it', () => {
      const names = new Set(generate(1, { opsPerStage: 2000 }).stages.flat().map((o) => o.name));
      for (const n of ['open', 'create', 'rsession', 'memfd', 'preserve', 'rfd', 'finish', 'getname', 'close', 'dup', 'pwrite', 'write', 'ftruncate', 'fallocate', 'seal', 'getseals', 'fstat', 'lseek', 'read', 'ioctl']) {
        assert.ok(names.has(n as never), n);
      }
    });
    it('bad program text is refused with its line', () => {
      assert.throws(() => parseStage('open 0\nfrobnicate 1\n'), /line 2: unknown operation frobnicate/);
      assert.throws(() => parseStage('close 1 2\n'), /line 1: close takes 1 arguments, not 2/);
    });
    it('the in-process run is deterministic and does real work (not all errors)', () => {
      const t = runModel(generate(3, { opsPerStage: OPS }));
      assert.deepEqual(runModel(generate(3, { opsPerStage: OPS })), t);
      const ok = t.flat().filter((l) => / r=\d+ e=0/.test(l)).length;
      assert.ok(ok > OPS / 3, `${ok} successful operations`);
      assert.ok(t[1]!.some((l) => / rfd r=\d+ e=0/.test(l)), 'stage 2 retrieves files');
    });
  });
}

describe('two paths: in process and through luo serve + the LD_PRELOAD shim', () => {
  let bin = '';
  let work = '';
  before(() => {
    bin = buildNative();
    work = mkdtempSync(join(tmpdir(), 'luo-conform-'));
  });
  after(() => {
    if (bin) rmSync(bin, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (let seed = FROM; seed < FROM + SEEDS; seed++) {
    it(`seed ${seed}: ${OPS} operations per stage, a kexec between`, async () => {
      const prog = generate(seed, { opsPerStage: OPS });
      const want = runModel(prog);
      const daemon = new Daemon();
      const holders: number[] = [];
      try {
        await daemon.start();
        const env = { ...process.env, LUO_SOCKET: daemon.socket, LD_PRELOAD: join(bin, 'libluo-preload.so') };
        const got: string[][] = [];
        for (const [i, ops] of prog.stages.entries()) {
          const file = join(work, `seed${seed}-stage${i + 1}`);
          writeFileSync(file, stageText(ops));
          const last = i === prog.stages.length - 1;
          const r = await runShimmed(join(bin, 'lu_script'), last ? [file] : [file, '--hold'], env);
          assert.equal(r.code, 0, `stage ${i + 1} exited ${r.code}:\n${r.stderr}\n${daemon.log}`);
          const lines = r.stdout.split('\n').filter((l) => l);
          const holder = lines.at(-1)?.match(/^HOLDER (\d+)$/);
          if (holder) {
            holders.push(Number(holder[1]));
            lines.pop();
          }
          got.push(lines);
          if (!last) await daemon.kexec();
        }
        for (const [i, t] of want.entries()) {
          const d = firstDiff(t, got[i]!);
          assert.equal(d, undefined, `seed ${seed} stage ${i + 1} differs at ${d}`);
        }
      } finally {
        for (const pid of holders) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        await daemon.stop();
      }
    });
  }
});
