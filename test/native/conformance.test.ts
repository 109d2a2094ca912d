/**
 * The C conformance suite through the LD_PRELOAD shim against a `luo serve` daemon:
 * - lu_device: the 15 single-stage cases of the kernel's liveupdate selftest (spec §7.3);
 * - lu_uapi: the dispatcher's checks and order, name edge cases, fd semantics, PRESERVE_FD's
 *   errors, what a preserved memfd allows;
 * - luoprobe (the real program captured on Linux 7.3.4): its `uapi`, `stage1` and `stage2` lines
 *   must equal the real kernel's serial log;
 * - lu_kexec: the two-stage kexec scenarios (spec §7.4, §7.6): every stage 1 runs, a holder keeps
 *   its sessions, the daemon kexecs into a new process, every stage 2 runs in a new process.
 * Needs gcc (never skipped: a missing compiler fails with a message).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTap, ROOT, type RunResult, useShimDaemon } from './harness.ts';
import { until } from '../daemon/helpers.ts';

const REAL_LOG = readFileSync(join(ROOT, 'test/fixtures/real-kernel/logs/fixtures-serial.log'), 'latin1')
  .split('\n')
  .map((l) => l.replace(/\r$/, ''));

/** The real run's UAPI/FILE lines between two markers of luoprobe's output. */
function realLines(from: string, to: string | null): string[] {
  const i = REAL_LOG.findIndex((l) => l.startsWith(from));
  assert.ok(i >= 0, `marker ${from} in the real log`);
  const j = to === null ? REAL_LOG.length : REAL_LOG.findIndex((l, k) => k > i && l.startsWith(to));
  return REAL_LOG.slice(i, j < 0 ? REAL_LOG.length : j).filter((l) => /^(UAPI|FILE) /.test(l));
}

const probeLines = (r: RunResult): string[] => r.stdout.split('\n').filter((l) => /^(UAPI|FILE) /.test(l));

/**
 * Cases of lu_uapi that the shim cannot make behave as the kernel does; each is documented in
 * native/preload/README.md ("Gaps"). Anything else failing is a bug.
 */
const KNOWN_GAPS = new Map<string, string>([
  ['preserved_memfd_ops_sealable', 'the shim freezes a sealable memfd with real F_SEAL_GROW|F_SEAL_SHRINK; seals cannot be removed, so the memfd stays frozen after its session is closed (the kernel unfreezes)'],
]);

const MAY_SKIP = new Set(['preserve_hugetlb_memfd', 'preserve_tmpfile_on_shmem']);

const SCENARIOS = ['simple', 'multi', 'stress_sessions', 'stress_files', 'memfd', 'rules', 'freeze_pos', 'errno'] as const;
const BANNER: Record<(typeof SCENARIOS)[number], string> = {
  simple: '--- SIMPLE KEXEC TEST PASSED ---',
  multi: '--- MULTI-SESSION KEXEC TEST PASSED ---',
  stress_sessions: '--- STRESS SESSIONS KEXEC TEST PASSED ---',
  stress_files: '--- STRESS FILES KEXEC TEST PASSED ---',
  memfd: '--- MEMFD KEXEC TEST PASSED ---',
  rules: '--- SESSION RULES KEXEC TEST PASSED ---',
  freeze_pos: '--- FREEZE POSITION KEXEC TEST PASSED ---',
  errno: '--- ERRNO KEXEC TEST PASSED ---',
};

describe('native: C programs through the LD_PRELOAD shim', () => {
  const suite = useShimDaemon();
  const { holders, run } = suite;

  function checkTap(r: RunResult, expected: number, gaps = new Map<string, string>()): void {
    assert.equal(r.timedOut, false, `timed out:\n${r.stdout}\n${r.stderr}`);
    const { plan, cases } = parseTap(r.stdout);
    assert.equal(plan, expected, `plan:\n${r.stdout}`);
    assert.equal(cases.length, expected, `every case reported:\n${r.stdout}\n${r.stderr}`);
    // only cases that need something this machine may lack (hugetlbfs, a tmpfs /dev/shm) may skip
    const skipped = cases.filter((c) => c.skip && !MAY_SKIP.has(c.name)).map((c) => c.name);
    assert.deepEqual(skipped, [], `no case may skip (is the daemon serving /dev/liveupdate?):\n${r.stdout}`);
    const failed = cases.filter((c) => !c.ok && !gaps.has(c.name));
    assert.deepEqual(
      failed.map((c) => `${c.name}\n${c.diag.join('\n')}`),
      [],
      `failing cases:\n${r.stdout}\n${r.stderr}`,
    );
    for (const [name, why] of gaps) {
      const c = cases.find((x) => x.name === name);
      assert.ok(c, `known gap ${name} is still a case`);
      if (c.skip) continue;
      // a gap that started passing must be taken off the list (and out of the README)
      assert.equal(c.ok, false, `${name} passes now; remove it from KNOWN_GAPS (${why})`);
    }
  }

  it('lu_device: the 15 cases of the kernel selftest liveupdate.c', async () => {
    const r = await run('lu_device');
    checkTap(r, 15);
    assert.equal(r.code, 0);
  });

  it('lu_uapi: dispatcher order, names, fd semantics, PRESERVE_FD errors, frozen memfds', async () => {
    const r = await run('lu_uapi');
    checkTap(r, 37, KNOWN_GAPS);
  });

  it('lu_uapi: which files are preserved is decided by filesystem and link count, as memfd_luo decides', async (t) => {
    // MFD_HUGETLB memfds (hugetlbfs) are refused with ENOENT; an O_TMPFILE on a tmpfs /dev/shm is
    // preserved. Both need something the machine may lack: say so when a case skipped.
    const r = await run('lu_uapi', ['preserve_hugetlb_memfd', 'preserve_tmpfile_on_shmem']);
    const { cases } = parseTap(r.stdout);
    assert.equal(cases.length, 2, r.stdout + r.stderr);
    for (const c of cases) {
      assert.ok(c.ok, `${c.name}:\n${r.stdout}`);
      if (c.skip) t.diagnostic(`${c.name} skipped on this machine: ${c.diag.join(' ')}`);
    }
  });

  it('luoprobe uapi: every line equals the real 7.3.4 run', async () => {
    const r = await run('luoprobe', ['uapi']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(probeLines(r), realLines('UAPI second open', 'UAPI PRESERVE_FD early'));
  });

  it('stage 1 of luoprobe and of every two-stage scenario; a holder keeps the sessions', async () => {
    const r = await run('luoprobe', ['stage1']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const holder = /STAGE1 holder pid=(\d+)/.exec(r.stdout);
    assert.ok(holder, r.stdout);
    holders.push(Number(holder[1]));
    assert.deepEqual(probeLines(r), realLines('UAPI PRESERVE_FD early', 'UAPI kexec_file_load'));
    for (const sc of SCENARIOS) {
      const s = await run('lu_kexec', [sc, '--stage', '1']);
      const m = /STAGE1 HOLDER (\d+)/.exec(s.stdout);
      if (m) holders.push(Number(m[1]));
      assert.equal(s.code, 0, `${sc} stage 1:\n${s.stdout}${s.stderr}`);
      assert.ok(m, s.stdout);
    }
  });

  it('kexec: the daemon hands over to a new process and ends every stage-1 holder (forked after connecting)', async () => {
    const k = await suite.daemon.kexec();
    assert.ok(k.newPid > 0);
    assert.ok(holders.length > 1);
    // SIGKILLed by the old daemon before it replied (stats name them): gone, or a zombie not reaped yet
    assert.deepEqual([...(JSON.parse(k.stats) as { endedClients: number[] }).endedClients].sort(), [...holders].sort());
    const state = (pid: number): string => {
      try {
        return /\) (\S) /.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? 'gone';
      } catch {
        return 'gone';
      }
    };
    for (const pid of holders) await until(() => ['gone', 'Z'].includes(state(pid)), `holder ${pid} to die`);
  });

  let stage2Probe: RunResult | null = null;
  it('stage 2 of luoprobe: every line equals the real 7.3.4 run', async () => {
    const r = await run('luoprobe', ['stage2']);
    stage2Probe = r;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(probeLines(r), realLines('UAPI CREATE_SESSION name of incoming', null));
  });

  it('stage 2 of luoprobe: the position moved after PRESERVE_FD (5) is handed over, read from the forked holder', () => {
    // stage 1 preserved, moved the position to 5 and exited; its holder keeps the shim's hidden dup
    assert.ok(stage2Probe);
    const line = probeLines(stage2Probe).find((l) => l.startsWith('FILE stage2/hello size='));
    assert.match(line ?? '', / pos=5 /);
  });

  for (const sc of SCENARIOS) {
    it(`stage 2 of ${sc} in a new process`, async () => {
      const r = await run('lu_kexec', [sc, '--stage', '2']);
      assert.equal(r.code, 0, `${sc} stage 2:\n${r.stdout}${r.stderr}`);
      assert.ok(r.stdout.includes(BANNER[sc]), r.stdout);
    });
  }

  it('after stage 2 every session is finished: a new stage 1 is detected again', async () => {
    const r = await run('lu_kexec', ['simple', '--stage', '2']);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /asked for stage 2, but this is stage 1/);
  });
});
