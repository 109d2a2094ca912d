/**
 * The two-stage selftests (§7.4): luo_kexec_simple and luo_multi_session run their stage 1 in
 * processes on the first kernel (a daemonized child keeps the session fds open), one kexec, then
 * stage 2 in new processes on the new kernel, printing what the real run printed
 * (fixtures/real-kernel/logs/selftests-serial.log). Also the stress variants from the spec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Machine } from '../../src/kernel/machine.ts';
import {
  createAndPreserveMemfd, createStateFile, daemonizeAndWait, ksftPrintMsg, luoCreateSession, luoEnsureNofileLimit, luoRetrieveSession,
  luoSessionFinish, luoTest, type Process, processesOf, restoreAndReadStage, restoreAndVerifyMemfd,
} from '../../src/uapi/index.ts';

function failExit(msg: string): never {
  throw new Error(`fail_exit: ${msg}`);
}

interface TwoStage {
  readonly state: string;
  readonly token: number;
  stage1(p: Process, luoFd: number): void;
  stage2(p: Process, luoFd: number, stateFd: number): void;
}

/** luo_kexec_simple.c */
const KEXEC_SIMPLE: TwoStage = {
  state: 'kexec_simple_state',
  token: 999,
  stage1(p, luoFd) {
    ksftPrintMsg(p, '[STAGE 1] Starting pre-kexec setup...\n');
    ksftPrintMsg(p, '[STAGE 1] Creating state file for next stage (2)...\n');
    if (createStateFile(p, luoFd, this.state, this.token, 2) < 0) failExit('create_state_file');
    ksftPrintMsg(p, "[STAGE 1] Creating session 'test-session' and preserving memfd...\n");
    const s = luoCreateSession(p, luoFd, 'test-session');
    if (s < 0) failExit("luo_create_session for 'test-session'");
    if (createAndPreserveMemfd(p, s, 0x1a, 'hello kexec world') < 0) failExit('create_and_preserve_memfd for token 0x1a');
    p.close(luoFd);
    daemonizeAndWait(p);
  },
  stage2(p, luoFd, stateFd) {
    ksftPrintMsg(p, '[STAGE 2] Starting post-kexec verification...\n');
    const stage = restoreAndReadStage(p, stateFd, this.token);
    if (stage !== 2) failExit(`Expected stage 2, but state file contains ${stage}`);
    ksftPrintMsg(p, "[STAGE 2] Retrieving session 'test-session'...\n");
    const s = luoRetrieveSession(p, luoFd, 'test-session');
    if (s < 0) failExit("luo_retrieve_session for 'test-session'");
    ksftPrintMsg(p, '[STAGE 2] Restoring and verifying memfd (token 0x1a)...\n');
    const mfd = restoreAndVerifyMemfd(p, s, 0x1a, 'hello kexec world');
    if (mfd < 0) failExit('restore_and_verify_memfd for token 0x1a');
    p.close(mfd);
    ksftPrintMsg(p, '[STAGE 2] Test data verified successfully.\n');
    ksftPrintMsg(p, '[STAGE 2] Finalizing test session...\n');
    if (luoSessionFinish(p, s) < 0) failExit('luo_session_finish for test session');
    p.close(s);
    ksftPrintMsg(p, '[STAGE 2] Finalizing state session...\n');
    if (luoSessionFinish(p, stateFd) < 0) failExit('luo_session_finish for state session');
    p.close(stateFd);
    ksftPrintMsg(p, '\n--- SIMPLE KEXEC TEST PASSED ---\n');
  },
};

const MULTI = {
  empty1: 'multi-test-empty-1',
  empty2: 'multi-test-empty-2',
  files1: 'multi-test-files-1',
  files2: 'multi-test-files-2',
  files: [
    [0x1001, 'Data for session files 1'],
    [0x2002, 'First file for session files 2'],
    [0x3003, 'Second file for session files 2'],
  ] as const,
};

/** luo_multi_session.c */
const MULTI_SESSION: TwoStage = {
  state: 'kexec_multi_state',
  token: 998,
  stage1(p, luoFd) {
    ksftPrintMsg(p, '[STAGE 1] Starting pre-kexec setup for multi-session test...\n');
    ksftPrintMsg(p, '[STAGE 1] Creating state file for next stage (2)...\n');
    if (createStateFile(p, luoFd, this.state, this.token, 2) < 0) failExit('create_state_file');
    ksftPrintMsg(p, `[STAGE 1] Creating empty sessions '${MULTI.empty1}' and '${MULTI.empty2}'...\n`);
    if (luoCreateSession(p, luoFd, MULTI.empty1) < 0) failExit(MULTI.empty1);
    if (luoCreateSession(p, luoFd, MULTI.empty2) < 0) failExit(MULTI.empty2);
    ksftPrintMsg(p, `[STAGE 1] Creating session '${MULTI.files1}' with one memfd...\n`);
    const f1 = luoCreateSession(p, luoFd, MULTI.files1);
    if (f1 < 0) failExit(MULTI.files1);
    if (createAndPreserveMemfd(p, f1, MULTI.files[0][0], MULTI.files[0][1]) < 0) failExit('create_and_preserve_memfd 0x1001');
    ksftPrintMsg(p, `[STAGE 1] Creating session '${MULTI.files2}' with two memfds...\n`);
    const f2 = luoCreateSession(p, luoFd, MULTI.files2);
    if (f2 < 0) failExit(MULTI.files2);
    if (createAndPreserveMemfd(p, f2, MULTI.files[1][0], MULTI.files[1][1]) < 0) failExit('create_and_preserve_memfd 0x2002');
    if (createAndPreserveMemfd(p, f2, MULTI.files[2][0], MULTI.files[2][1]) < 0) failExit('create_and_preserve_memfd 0x3003');
    p.close(luoFd);
    daemonizeAndWait(p);
  },
  stage2(p, luoFd, stateFd) {
    ksftPrintMsg(p, '[STAGE 2] Starting post-kexec verification...\n');
    const stage = restoreAndReadStage(p, stateFd, this.token);
    if (stage !== 2) failExit(`Expected stage 2, but state file contains ${stage}`);
    ksftPrintMsg(p, '[STAGE 2] Retrieving all sessions...\n');
    const fds = [MULTI.empty1, MULTI.empty2, MULTI.files1, MULTI.files2].map((n) => {
      const s = luoRetrieveSession(p, luoFd, n);
      if (s < 0) failExit(`luo_retrieve_session for '${n}'`);
      return s;
    });
    ksftPrintMsg(p, `[STAGE 2] Verifying contents of session '${MULTI.files1}'...\n`);
    const m1 = restoreAndVerifyMemfd(p, fds[2]!, MULTI.files[0][0], MULTI.files[0][1]);
    if (m1 < 0) failExit('restore_and_verify_memfd 0x1001');
    p.close(m1);
    ksftPrintMsg(p, `[STAGE 2] Verifying contents of session '${MULTI.files2}'...\n`);
    for (const [token, data] of MULTI.files.slice(1)) {
      const m = restoreAndVerifyMemfd(p, fds[3]!, token, data);
      if (m < 0) failExit(`restore_and_verify_memfd ${token}`);
      p.close(m);
    }
    ksftPrintMsg(p, '[STAGE 2] Test data verified successfully.\n');
    ksftPrintMsg(p, '[STAGE 2] Finalizing all test sessions...\n');
    for (const s of fds) {
      if (luoSessionFinish(p, s) < 0) failExit('luo_session_finish');
      p.close(s);
    }
    ksftPrintMsg(p, '[STAGE 2] Finalizing state session...\n');
    if (luoSessionFinish(p, stateFd) < 0) failExit('luo_session_finish for state session');
    p.close(stateFd);
    ksftPrintMsg(p, '\n--- MULTI-SESSION KEXEC TEST PASSED ---\n');
  },
};

/** The test binary's main: luo_test, then the process exits (closing what it still holds). */
function run(p: Process, t: TwoStage, stage: 1 | 2) {
  const r = luoTest(p, { stage, stateName: t.state, stage1: (fd) => (t.stage1(p, fd), true), stage2: (fd, s) => (t.stage2(p, fd, s), true) });
  if (p.state === 'running') p.exit(r === 'pass' ? 0 : 1);
  return r;
}

const stageLines = (text: string): string[] =>
  text.split('\n').filter((l) => /^# \[STAGE [12]\]/.test(l) || /^--- .* PASSED ---$/.test(l) || l === '# ').map((l) => l.replace(/Child PID: \d+/, 'Child PID: N'));

const REAL_LINES = stageLines(readFileSync(new URL('../fixtures/real-kernel/logs/selftests-serial.log', import.meta.url), 'latin1').replace(/\r/g, ''));

test('luo_kexec_simple and luo_multi_session across one kexec, printing what the real run printed', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const t1 = processesOf(m.kernel);
  // init runs each test binary with -s 1; each stage 1 daemonizes a holder and exits 0.
  assert.equal(run(t1.spawn(), KEXEC_SIMPLE, 1), 'pass');
  assert.equal(run(t1.spawn(), MULTI_SESSION, 1), 'pass');
  const holders = [...t1.processes.values()];
  assert.equal(holders.length, 2, 'only the two daemonized children are left');
  for (const h of holders) assert.deepEqual(h.openFds().map((fd) => h.fdPath(fd)?.startsWith('anon_inode:[luo_session]')), h.openFds().map(() => true));
  assert.equal(m.kernel.luo!.isOpen, false, 'stage 1 closed the device');
  assert.equal(m.kernel.luo!.sessions.outgoing.length, 7);
  // Asking for stage 2 on the first kernel fails (the state session is missing).
  assert.equal(run(t1.spawn(), KEXEC_SIMPLE, 2), 'fail');
  assert.equal(t1.processes.size, 2);

  const k2 = m.kexec();
  const t2 = processesOf(k2);
  assert.equal(run(t2.spawn(), KEXEC_SIMPLE, 2), 'pass');
  assert.equal(run(t2.spawn(), MULTI_SESSION, 2), 'pass');
  assert.equal(k2.luo!.sessions.incoming.length, 0, 'every incoming session finished and closed');
  assert.equal(t2.processes.size, 0);
  assert.deepEqual(stageLines(t1.console + t2.console), REAL_LINES);
});

test('a stage mismatch after the kexec fails, and an unregistered device skips', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  assert.equal(run(processesOf(m.kernel).spawn(), KEXEC_SIMPLE, 1), 'pass');
  const k2 = m.kexec();
  assert.equal(run(processesOf(k2).spawn(), KEXEC_SIMPLE, 1), 'fail');
  const off = new Machine({ ramSize: 1n << 30n, cmdline: 'console=ttyS0 kho=on' });
  assert.equal(run(processesOf(off.kernel).spawn(), KEXEC_SIMPLE, 1), 'skip');
});

test('luo_stress_sessions: 2000 empty sessions across a kexec with a raised fd limit', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const N = 2000;
  const stress: TwoStage = {
    state: 'kexec_many_state',
    token: 999,
    stage1(p, luoFd) {
      assert.equal(luoEnsureNofileLimit(p, N), 0);
      assert.ok(createStateFile(p, luoFd, this.state, this.token, 2) >= 0);
      for (let i = 0; i < N; i++) assert.ok(luoCreateSession(p, luoFd, `many-test-${i}`) >= 0);
      p.close(luoFd);
      daemonizeAndWait(p);
    },
    stage2(p, luoFd, stateFd) {
      assert.equal(restoreAndReadStage(p, stateFd, this.token), 2);
      assert.equal(luoEnsureNofileLimit(p, N), 0);
      for (let i = 0; i < N; i++) {
        const s = luoRetrieveSession(p, luoFd, `many-test-${i}`);
        assert.ok(s >= 0, `many-test-${i}`);
        assert.equal(luoSessionFinish(p, s), 0);
        assert.equal(p.close(s), 0);
      }
      assert.equal(luoSessionFinish(p, stateFd), 0);
      p.close(stateFd);
    },
  };
  assert.equal(run(processesOf(m.kernel).spawn(), stress, 1), 'pass');
  const k2 = m.kexec();
  assert.equal(run(processesOf(k2).spawn(), stress, 2), 'pass');
  assert.equal(k2.luo!.sessions.incoming.length, 0);
});

test('luo_stress_files: 500 memfds "file-data-i" in one session across a kexec', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const N = 500;
  const stress: TwoStage = {
    state: 'kexec_many_files_state',
    token: 9999,
    stage1(p, luoFd) {
      assert.equal(luoEnsureNofileLimit(p, N), 0);
      assert.ok(createStateFile(p, luoFd, this.state, this.token, 2) >= 0);
      const s = luoCreateSession(p, luoFd, 'many_files_session');
      for (let i = 0; i < N; i++) assert.equal(createAndPreserveMemfd(p, s, i, `file-data-${i}`), 0);
      p.close(luoFd);
      daemonizeAndWait(p);
    },
    stage2(p, luoFd, stateFd) {
      assert.equal(restoreAndReadStage(p, stateFd, this.token), 2);
      const s = luoRetrieveSession(p, luoFd, 'many_files_session');
      for (let i = 0; i < N; i++) {
        const fd = restoreAndVerifyMemfd(p, s, i, `file-data-${i}`);
        assert.ok(fd >= 0, `token ${i}`);
        p.close(fd);
      }
      assert.equal(luoSessionFinish(p, s), 0);
      p.close(s);
      assert.equal(luoSessionFinish(p, stateFd), 0);
      p.close(stateFd);
    },
  };
  assert.equal(run(processesOf(m.kernel).spawn(), stress, 1), 'pass');
  const k2 = m.kexec();
  assert.equal(run(processesOf(k2).spawn(), stress, 2), 'pass');
});
