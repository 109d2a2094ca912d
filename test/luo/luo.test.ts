/** LUO core: luo_ser, sessions, files and handlers across kexecs, errno for errno with the kernel. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import type { Kernel } from '../../src/kernel/kernel.ts';
import { KernelPanic } from '../../src/luo/core.ts';
import { isLuoError, type ErrnoName } from '../../src/errno.ts';
import { LuoFileSer, LuoSer, LuoSessionSer } from '../../src/abi/luo.ts';
import { createTestHandler, TestFile, type TestHandler } from '../helpers/test-handler.ts';

const GiB = 1n << 30n;
const errno = (name: ErrnoName) => (e: unknown) => isLuoError(e, name);

function boot(cmdline = 'kho=on liveupdate=on'): { m: Machine; k: Kernel; h: TestHandler } {
  const m = new Machine({ ramSize: GiB, cmdline });
  const h = createTestHandler(m.kernel);
  m.kernel.luo!.registerFileHandler(h);
  return { m, k: m.kernel, h };
}

function kexec(m: Machine): { k: Kernel; h: TestHandler } {
  const k = m.kexec();
  const h = createTestHandler(k);
  k.luo!.registerFileHandler(h);
  return { k, h };
}

const readSer = (m: Machine, k: Kernel) => LuoSer.decode(m.memory.read(k.luo!.outgoingSerPa, 32));

test('luo_ser: registered as raw subtree "LUO", compat luo-v5, liveupdate_num counts live updates', () => {
  const { m, k } = boot();
  const sub = k.kho!.outgoingSubtrees().get('LUO')!;
  assert.deepEqual(sub, { pa: k.luo!.outgoingSerPa, size: 32 });
  assert.ok(k.kho!.isPreserved(sub.pa, 0), 'luo_ser lives in a preserved order-0 page');
  assert.deepEqual(readSer(m, k), { compatible: 'luo-v5', liveupdate_num: 1n, sessions_pa: 0n, flbs_pa: k.luo!.flbHeaderPa });
  assert.deepEqual([...m.memory.read(k.luo!.flbHeaderPa, 16)], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 'FLB header pgcnt=1 count=0');
  let cur = k;
  for (let n = 1; n <= 3; n++) {
    cur = kexec(m).k;
    assert.equal(cur.luo!.incomingNum, n);
    assert.equal(readSer(m, cur).liveupdate_num, BigInt(n + 1));
  }
});

test('create: name rules, duplicates, separate incoming and outgoing name spaces', () => {
  const { m, k } = boot();
  const luo = k.luo!;
  luo.open();
  assert.throws(() => luo.createSession(''), errno('EINVAL'));
  assert.throws(() => luo.createSession('X'.repeat(64)), errno('EINVAL'));
  assert.equal(luo.createSession('A'.repeat(63)).name, 'A'.repeat(63));
  luo.createSession('dup');
  const blocks = luo.sessions.outgoingBlocks;
  assert.throws(() => luo.createSession('dup'), errno('EEXIST'));
  assert.equal(luo.sessions.outgoingBlocks, blocks);
  const { k: k2 } = kexec(m);
  k2.luo!.open();
  const again = k2.luo!.createSession('dup');
  assert.equal(again.direction, 'outgoing');
  const inc = k2.luo!.retrieveSession('dup');
  assert.equal(inc.direction, 'incoming');
  assert.throws(() => k2.luo!.retrieveSession('dup'), errno('EINVAL'), 'already retrieved');
  assert.throws(() => k2.luo!.retrieveSession('nope'), errno('ENOENT'));
});

test('the 7.3.4 defect cannot happen: a duplicate create at 51 sessions leaves no empty block', () => {
  const { m, k } = boot();
  k.luo!.open();
  for (let i = 0; i < 51; i++) k.luo!.createSession(`s${i}`);
  assert.equal(k.luo!.sessions.outgoingBlocks, 1);
  assert.throws(() => k.luo!.createSession('s7'), errno('EEXIST'));
  assert.equal(k.luo!.sessions.outgoingBlocks, 1);
  const { k: k2 } = kexec(m);
  k2.luo!.open();
  assert.equal(k2.luo!.sessions.incoming.length, 51);
});

test('preserve: the kernel order of checks and errnos', () => {
  const { k, h } = boot();
  const luo = k.luo!;
  luo.open();
  const s1 = luo.createSession('one');
  const s2 = luo.createSession('two');
  const f = new TestFile(1n);
  luo.sessions.preserveFile(s1, 0x1111n, f);
  assert.throws(() => luo.sessions.preserveFile(s1, 0x1111n, new TestFile(2n)), errno('EEXIST'), 'token first');
  assert.throws(() => luo.sessions.preserveFile(s1, 0x1111n, undefined), errno('EEXIST'), 'token before EBADF');
  assert.throws(() => luo.sessions.preserveFile(s1, 0x2222n, undefined), errno('EBADF'));
  assert.throws(() => luo.sessions.preserveFile(s1, 0x2222n, { kind: 'pipe', pos: 0 }), errno('ENOENT'));
  assert.throws(() => luo.sessions.preserveFile(s2, 0x2222n, f), errno('EBUSY'), 'same file in another session');
  assert.throws(() => luo.sessions.preserveFile(s1, 0x3333n, f), errno('EBUSY'), 'same file, other token');
  h.failOn.set('preserve', { errno: 'ENOMEM', times: 1 });
  const before = k.kho!.preservedPages;
  assert.throws(() => luo.sessions.preserveFile(s2, 0x4444n, new TestFile(4n)), errno('ENOMEM'));
  assert.equal(k.kho!.preservedPages, before, 'nothing leaked');
  assert.equal(s2.fileSet.count, 0);
  luo.sessions.preserveFile(s2, 0x4444n, new TestFile(4n));
  assert.equal(s2.fileSet.count, 1, 'retry works');
});

test('direction rules: PRESERVE_FD only outgoing; RETRIEVE_FD and FINISH only incoming', () => {
  const { m, k } = boot();
  k.luo!.open();
  const out = k.luo!.createSession('s');
  assert.throws(() => k.luo!.sessions.retrieveFile(out, 1n), errno('EINVAL'));
  assert.throws(() => k.luo!.sessions.finish(out), errno('EINVAL'));
  const { k: k2 } = kexec(m);
  k2.luo!.open();
  const inc = k2.luo!.retrieveSession('s');
  assert.throws(() => k2.luo!.sessions.preserveFile(inc, 1n, new TestFile(1n)), errno('EINVAL'));
});

test('closing an outgoing session unpreserves in reverse order and frees the name and memory', () => {
  const { k, h } = boot();
  const luo = k.luo!;
  luo.open();
  const base = k.kho!.preservedPages;
  const s = luo.createSession('c');
  for (let i = 1; i <= 70; i++) luo.sessions.preserveFile(s, BigInt(i), new TestFile(BigInt(i)));
  assert.equal(s.fileSet.blocks.nblocks, 2);
  h.calls.length = 0;
  luo.sessions.release(s);
  assert.deepEqual(h.calls.slice(0, 3), ['unpreserve 70', 'unpreserve 69', 'unpreserve 68']);
  assert.equal(k.kho!.preservedPages, base, 'every page given back');
  luo.createSession('c');
});

test('files survive kexec: retrieve shares the open file, finish runs in reverse order', () => {
  const { m, k } = boot();
  k.luo!.open();
  const s = k.luo!.createSession('vm');
  const files = [1n, 2n, 3n].map((p) => new TestFile(p));
  files.forEach((f, i) => k.luo!.sessions.preserveFile(s, BigInt(0x10 + i), f));
  files[1]!.payload = 22n; // changed after preserve: freeze captures it
  const { k: k2, h: h2 } = kexec(m);
  k2.luo!.open();
  const inc = k2.luo!.retrieveSession('vm');
  const a = k2.luo!.sessions.retrieveFile(inc, 0x11n) as TestFile;
  assert.equal(a.payload, 22n);
  assert.equal(k2.luo!.sessions.retrieveFile(inc, 0x11n), a, 'the same open file again');
  assert.throws(() => k2.luo!.sessions.retrieveFile(inc, 0x99n), errno('ENOENT'));
  h2.calls.length = 0;
  k2.luo!.sessions.finish(inc);
  assert.deepEqual(h2.calls, ['finish unretrieved status=0', 'finish 22 status=1', 'finish unretrieved status=0']);
  assert.throws(() => k2.luo!.sessions.retrieveFile(inc, 0x10n), errno('ENOENT'), 'finished: gone');
  k2.luo!.sessions.finish(inc); // a second finish is a no-op
  k2.luo!.sessions.release(inc);
  assert.throws(() => k2.luo!.retrieveSession('vm'), errno('ENOENT'));
  // Left: the incoming root FDT, kexec-metadata and the FLB header page, which the kernel never
  // hands back either. Every session, file block and file page was taken back.
  assert.equal(k2.kho!.unrestoredBlocks, 3);
});

test('a failed retrieve stays failed; can_finish false is EBUSY and changes nothing', () => {
  const { m, k } = boot();
  k.luo!.open();
  const s = k.luo!.createSession('x');
  k.luo!.sessions.preserveFile(s, 1n, new TestFile(7n));
  k.luo!.sessions.preserveFile(s, 2n, new TestFile(8n));
  const { k: k2, h } = kexec(m);
  k2.luo!.open();
  const inc = k2.luo!.retrieveSession('x');
  h.failOn.set('retrieve', { errno: 'EIO', payload: 7n, times: 1 });
  assert.throws(() => k2.luo!.sessions.retrieveFile(inc, 1n), errno('EIO'));
  const calls = h.calls.length;
  assert.throws(() => k2.luo!.sessions.retrieveFile(inc, 1n), errno('EIO'), 'sticky');
  assert.equal(h.calls.length, calls, 'the handler is not called again');
  h.failOn.set('canFinish', { errno: 'EBUSY', payload: 8n, times: 1 });
  assert.throws(() => k2.luo!.sessions.finish(inc), errno('EBUSY'));
  assert.equal(inc.fileSet.count, 2, 'nothing finished');
  k2.luo!.sessions.finish(inc);
  assert.equal(inc.fileSet.count, 0);
});

test('closing an incoming session whose finish fails returns EBUSY and keeps it', () => {
  const { m, k } = boot();
  k.luo!.open();
  k.luo!.sessions.preserveFile(k.luo!.createSession('busy'), 1n, new TestFile(5n));
  const { k: k2, h } = kexec(m);
  k2.luo!.open();
  const inc = k2.luo!.retrieveSession('busy');
  h.failOn.set('canFinish', { errno: 'EBUSY', times: 1 });
  assert.throws(() => k2.luo!.sessions.release(inc), errno('EBUSY'));
  assert.equal(k2.luo!.sessions.incoming.includes(inc), true);
});

test('freeze failure at each position: earlier files unfrozen in order, reboot refused, nothing lost, retry works', () => {
  for (let fail = 0; fail < 4; fail++) {
    const { m, k, h } = boot();
    k.luo!.open();
    const a = k.luo!.createSession('a');
    const b = k.luo!.createSession('b');
    k.luo!.sessions.preserveFile(a, 1n, new TestFile(1n));
    k.luo!.sessions.preserveFile(a, 2n, new TestFile(2n));
    k.luo!.sessions.preserveFile(b, 3n, new TestFile(3n));
    k.luo!.sessions.preserveFile(b, 4n, new TestFile(4n));
    const pages = k.kho!.preservedPages;
    h.failOn.set('freeze', { errno: 'EAGAIN', payload: BigInt(fail + 1), times: 1 });
    h.calls.length = 0;
    assert.throws(() => m.kexec(), errno('EAGAIN'));
    assert.equal(m.kernel, k, 'no reboot happened');
    const order = h.calls.filter((c) => c.startsWith('freeze') || c.startsWith('unfreeze'));
    const want: Record<number, string[]> = {
      0: ['freeze 1'],
      1: ['freeze 1', 'freeze 2', 'unfreeze 1'],
      2: ['freeze 1', 'freeze 2', 'freeze 3', 'unfreeze 1', 'unfreeze 2'],
      3: ['freeze 1', 'freeze 2', 'freeze 3', 'freeze 4', 'unfreeze 3', 'unfreeze 1', 'unfreeze 2'],
    };
    assert.deepEqual(order, want[fail], `fail at file ${fail + 1}`);
    assert.equal(k.kho!.preservedPages, pages);
    assert.equal(readSer(m, k).sessions_pa, 0n);
    const { k: k2 } = kexec(m);
    k2.luo!.open();
    const rb = k2.luo!.retrieveSession('b');
    assert.equal((k2.luo!.sessions.retrieveFile(rb, 4n) as TestFile).payload, 4n);
  }
});

test('incoming sessions never retrieved are not carried to the following kernel', () => {
  const { m, k } = boot();
  k.luo!.open();
  k.luo!.createSession('left-behind');
  const { k: k2 } = kexec(m);
  k2.luo!.open();
  assert.equal(k2.luo!.sessions.incoming.length, 1);
  const { k: k3 } = kexec(m);
  k3.luo!.open();
  assert.throws(() => k3.luo!.retrieveSession('left-behind'), errno('ENOENT'));
});

test('device: exclusive open, ENOENT when disabled', () => {
  const { k } = boot();
  k.luo!.open();
  assert.throws(() => k.luo!.open(), errno('EBUSY'));
  k.luo!.close();
  k.luo!.open();
  const off = new Machine({ ramSize: GiB, cmdline: 'kho=on' });
  assert.equal(off.kernel.luo, undefined, 'liveupdate=off: no LUO at all');
  const nokho = new Machine({ ramSize: GiB, cmdline: 'kho=off liveupdate=on' });
  assert.equal(nokho.kernel.luo!.enabled, false);
  assert.throws(() => nokho.kernel.luo!.open(), errno('ENOENT'));
  assert.throws(() => nokho.kernel.luo!.registerFileHandler(createTestHandler(nokho.kernel)), errno('EOPNOTSUPP'));
});

test('handler registry: EINVAL for missing callbacks, EEXIST for a duplicate compatible', () => {
  const { k, h } = boot();
  assert.throws(() => k.luo!.registerFileHandler(h), errno('EEXIST'));
  const bad = { compatible: 'bad-v1', ops: { ...h.ops, finish: undefined } } as never;
  assert.throws(() => k.luo!.registerFileHandler(bad), errno('EINVAL'));
});

test('thousands of sessions and files across many blocks, three live updates in a row', () => {
  const { m, k } = boot();
  k.luo!.open();
  for (let i = 0; i < 2000; i++) k.luo!.createSession(`many-${i}`);
  const big = k.luo!.createSession('files');
  for (let i = 0; i < 500; i++) k.luo!.sessions.preserveFile(big, BigInt(i), new TestFile(BigInt(1000 + i)));
  let cur = kexec(m).k;
  for (let round = 0; round < 3; round++) {
    const luo = cur.luo!;
    luo.open();
    assert.equal(luo.sessions.incoming.length, round === 0 ? 2001 : 1);
    const inc = luo.retrieveSession('files');
    const out = luo.createSession('files');
    for (let i = 0; i < 500; i++) {
      const f = luo.sessions.retrieveFile(inc, BigInt(i)) as TestFile;
      assert.equal(f.payload, BigInt(1000 + i));
    }
    luo.sessions.finish(inc);
    for (let i = 0; i < 500; i++) luo.sessions.preserveFile(out, BigInt(i), new TestFile(BigInt(1000 + i)));
    cur = kexec(m).k;
  }
});

// ---- corrupt incoming state: each detected, and the policy applied ----

type Corruption = (m: Machine, k: Kernel) => void;
function corruptAndBoot(corrupt: Corruption, policy: 'panic' | 'disable') {
  const { m, k } = boot(`kho=on liveupdate=on luo.restore_fail=${policy}`);
  k.luo!.open();
  const s = k.luo!.createSession('victim');
  for (let i = 0; i < 3; i++) k.luo!.sessions.preserveFile(s, BigInt(i), new TestFile(BigInt(i)));
  k.luo!.createSession('empty');
  k.onReboot(() => corrupt(m, k)); // runs after LUO serialized
  return m;
}
const serPa = (k: Kernel) => k.luo!.outgoingSerPa;
const sessionsPa = (m: Machine, k: Kernel) => m.memory.readU64(serPa(k) + 16n);
const corruptions: Array<[string, Corruption, RegExp]> = [
  ['wrong compat', (m, k) => m.memory.write(serPa(k), new TextEncoder().encode('luo-v4\0')), /compatible is "luo-v4"/],
  ['wrong blob size', (m, k) => {
    const kho = k.kho!; const pa = serPa(k);
    kho.removeSubtree(pa); kho.addSubtree('LUO', pa, 16);
  }, /16 bytes/],
  ['a cycle in the session chain', (m, k) => m.memory.writeU64(sessionsPa(m, k), sessionsPa(m, k)), /loops back/],
  ['a session block count of 0', (m, k) => m.memory.writeU64(sessionsPa(m, k) + 8n, 0n), /invalid entry count: 0/],
  ['a session block count above capacity', (m, k) => m.memory.writeU64(sessionsPa(m, k) + 8n, 52n), /invalid entry count: 52/],
  ['a session chain pointer outside RAM', (m, k) => m.memory.writeU64(serPa(k) + 16n, 1n << 41n), /not a page inside RAM/],
];
for (const [name, corrupt, re] of corruptions) {
  test(`corrupt incoming state (${name}): panic policy fails the boot; a cold boot recovers`, () => {
    const m = corruptAndBoot(corrupt, 'panic');
    assert.throws(() => m.kexec(), (e) => e instanceof KernelPanic && /failed to initialize properly \[-22\]/.test(e.message));
    assert.ok(m.panic);
    assert.throws(() => m.kexec(), (e) => e instanceof KernelPanic, 'a panicked machine stays down');
    const fresh = m.coldBoot();
    assert.equal(fresh.luo!.incomingNum, 0);
    fresh.luo!.open();
  });
  test(`corrupt incoming state (${name}): disable policy boots without /dev/liveupdate and says why`, () => {
    const m = corruptAndBoot(corrupt, 'disable');
    const k2 = m.kexec();
    assert.ok(k2.log.grep(re).length >= 1, k2.log.text());
    assert.throws(() => k2.luo!.open(), errno('ENOENT'));
  });
}

// Errors found at first open (file-level): EIO on open, cached.
const openErrors: Array<[string, Corruption, RegExp]> = [
  ['a file count mismatch', (m, k) => {
    const pa = sessionsPa(m, k); // session 0 is "victim": bump its count
    m.memory.writeU64(pa + 16n + 72n, 5n);
  }, /hold 3 entries, the session says 5/],
  ['an unknown handler compat string', (m, k) => {
    const files = m.memory.readU64(sessionsPa(m, k) + 16n + 64n);
    m.memory.write(files + 16n, new TextEncoder().encode('unknown-v9\0'));
  }, /no registered handler for compatible 'unknown-v9'/],
  ['a file chain pointer outside RAM', (m, k) => m.memory.writeU64(sessionsPa(m, k) + 16n + 64n, 1n << 42n), /not a page inside RAM/],
  ['a file block count above capacity', (m, k) => {
    const files = m.memory.readU64(sessionsPa(m, k) + 16n + 64n);
    m.memory.writeU64(files + 8n, 64n);
  }, /invalid entry count: 64/],
];
for (const [name, corrupt, re] of openErrors) {
  test(`corrupt incoming files (${name}): open gives EIO every time, naming the cause`, () => {
    const m = corruptAndBoot(corrupt, 'panic');
    const k2 = m.kexec();
    createTestHandler(k2);
    k2.luo!.registerFileHandler(createTestHandler(k2));
    assert.throws(() => k2.luo!.open(), (e) => isLuoError(e, 'EIO') && re.test((e as Error).message));
    assert.throws(() => k2.luo!.open(), errno('EIO'), 'cached');
  });
}

test('serialized bytes: session and file entries as the ABI lays them out', () => {
  const { m, k } = boot();
  k.luo!.open();
  const s = k.luo!.createSession('conf-session-a');
  k.luo!.createSession('conf-session-b-empty');
  k.luo!.sessions.preserveFile(s, 0x1an, new TestFile(1n));
  k.luo!.sessions.preserveFile(s, 0x2bn, new TestFile(2n));
  let captured: { ser: ReturnType<typeof LuoSer.decode>; block: Uint8Array; files: Uint8Array } | undefined;
  k.onReboot(() => {
    const ser = readSer(m, k);
    const block = m.memory.read(ser.sessions_pa, 4096);
    const files = m.memory.read(LuoSessionSer.decode(block, 16).files, 4096);
    captured = { ser, block, files };
  });
  m.kexec();
  const { ser, block, files } = captured!;
  assert.equal(ser.liveupdate_num, 1n);
  assert.deepEqual([m.memory.readU64(ser.sessions_pa), m.memory.readU64(ser.sessions_pa + 8n)], [0n, 2n], '{next, count}');
  const s0 = LuoSessionSer.decode(block, 16);
  const s1 = LuoSessionSer.decode(block, 96);
  assert.equal(s0.name, 'conf-session-a');
  assert.equal(s0.count, 2n);
  assert.deepEqual(s1, { name: 'conf-session-b-empty', files: 0n, count: 0n }, 'an empty session has files = 0');
  assert.ok(block.subarray(176).every((b) => b === 0));
  assert.equal(new DataView(files.buffer).getBigUint64(8, true), 2n);
  assert.deepEqual([LuoFileSer.decode(files, 16).token, LuoFileSer.decode(files, 80).token], [0x1an, 0x2bn]);
  assert.equal(LuoFileSer.decode(files, 16).compatible, 'luo-test-v1');
});
