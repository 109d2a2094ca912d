/** FLBs: registration errors, refcounts through preserve/kexec/retrieve/finish, the FLB page bytes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import type { Kernel } from '../../src/kernel/kernel.ts';
import { isLuoError, type ErrnoName, LuoError } from '../../src/errno.ts';
import type { Flb, FlbOpArgs } from '../../src/luo/flb.ts';
import type { FileHandler } from '../../src/luo/file-handler.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { LuoFlbHeaderSer, LuoFlbSer, LuoSer } from '../../src/abi/luo.ts';
import { createTestHandler, TestFile } from '../helpers/test-handler.ts';

const GiB = 1n << 30n;
const errno = (name: ErrnoName) => (e: unknown) => isLuoError(e, name);
const BASE = 0xfeedf00dcafebee0n;

/** The three FLBs of the kernel's CONFIG_LIVEUPDATE_TEST module, recording their calls. */
function testFlbs(log: string[], failPreserve?: number): Flb[] {
  return [0, 1, 2].map((i) => ({
    compatible: `liveupdate-test-flb-v${i}`,
    ops: {
      preserve(a: FlbOpArgs) {
        log.push(`preserve ${i}`);
        if (failPreserve === i) throw new LuoError('ENOMEM', `flb ${i} preserve`);
        a.data = BASE + BigInt(i);
        a.obj = { i };
      },
      unpreserve(a: FlbOpArgs) { log.push(`unpreserve ${i} ${a.data === BASE + BigInt(i)}`); },
      retrieve(a: FlbOpArgs) {
        log.push(`retrieve ${i}`);
        if (a.data !== BASE + BigInt(i)) throw new LuoError('EINVAL', 'wrong data');
        a.obj = { i, incoming: true };
      },
      finish(a: FlbOpArgs) { log.push(`finish ${i} ${JSON.stringify(a.obj)}`); },
    },
  }));
}

const memfdHandler = (k: Kernel): FileHandler => k.luo!.fileHandlers.find((h) => h.compatible === 'memfd-v2')!;

function withFlbs(k: Kernel, log: string[], failPreserve?: number): Flb[] {
  const flbs = testFlbs(log, failPreserve);
  for (const f of flbs) k.luo!.flbs.register(memfdHandler(k), f);
  return flbs;
}

test('registration errors: EEXIST, EINVAL, ENOSPC past 63, ENOENT, EOPNOTSUPP', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  const h = memfdHandler(k);
  const [a] = testFlbs([]);
  k.luo!.flbs.register(h, a!);
  assert.throws(() => k.luo!.flbs.register(h, a!), errno('EEXIST'), 'same FLB, same handler');
  const clone = { ...a!, ops: a!.ops };
  assert.throws(() => k.luo!.flbs.register(h, clone), errno('EEXIST'), 'compatible already in use');
  const th = createTestHandler(k);
  assert.throws(() => k.luo!.flbs.register(th, testFlbs([])[1]!), errno('EINVAL'), 'handler not registered');
  k.luo!.registerFileHandler(th);
  k.luo!.flbs.register(th, a!); // one FLB may serve several handlers
  assert.throws(() => k.luo!.flbs.register(h, { compatible: 'x', ops: { ...a!.ops, finish: undefined } } as never), errno('EINVAL'));
  for (let i = 1; i < 63; i++) k.luo!.flbs.register(h, { compatible: `flb-${i}`, ops: a!.ops });
  assert.throws(() => k.luo!.flbs.register(h, { compatible: 'flb-64', ops: a!.ops }), errno('ENOSPC'));
  assert.throws(() => k.luo!.flbs.unregister(th, testFlbs([])[2]!), errno('ENOENT'));
  assert.throws(() => k.luo!.unregisterFileHandler(th), errno('EBUSY'), 'a handler with FLBs linked');
  k.luo!.flbs.unregister(th, a!);
  k.luo!.unregisterFileHandler(th);
  const off = new Machine({ ramSize: GiB, cmdline: 'kho=off liveupdate=on' });
  assert.throws(() => off.kernel.luo!.flbs.register(h, a!), errno('EOPNOTSUPP'));
  assert.throws(() => off.kernel.luo!.flbs.getIncoming(a!), errno('EOPNOTSUPP'));
});

test('three FLBs on the memfd handler: refcounts, the FLB page bytes, retrieve once, finish at zero', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  const log: string[] = [];
  const flbs = withFlbs(k, log);
  k.luo!.open();
  const s = k.luo!.createSession('flb');
  const n = 5;
  const files = Array.from({ length: n }, (_, i) => memfdCreate(k.memfd, `m${i}`, 0));
  files.forEach((f, i) => k.luo!.sessions.preserveFile(s, BigInt(i), f));
  assert.deepEqual(log, ['preserve 0', 'preserve 1', 'preserve 2'], 'preserve runs once, with the first file');
  assert.deepEqual(flbs.map((f) => k.luo!.flbs.outgoingCount(f)), [n, n, n]);
  assert.deepEqual(k.luo!.flbs.getOutgoing(flbs[1]!), { i: 1 });
  let page: Uint8Array | undefined;
  k.onReboot(() => { page = m.memory.read(LuoSer.decode(m.memory.read(k.luo!.outgoingSerPa, 32)).flbs_pa, 4096); });
  const k2 = m.kexec();
  // Byte-exact page: header {pgcnt 1, count 3}, then {name, data, count} in registration order.
  const want = new Uint8Array(4096);
  LuoFlbHeaderSer.encode({ pgcnt: 1n, count: 3n }, want);
  for (let i = 0; i < 3; i++) LuoFlbSer.encode({ name: `liveupdate-test-flb-v${i}`, data: BASE + BigInt(i), count: BigInt(n) }, want, 16 + i * 64);
  assert.deepEqual(Buffer.from(page!), Buffer.from(want));
  const log2: string[] = [];
  const flbs2 = withFlbs(k2, log2);
  k2.luo!.open();
  assert.deepEqual(k2.luo!.flbs.getIncoming(flbs2[0]!), { i: 0, incoming: true });
  assert.deepEqual(k2.luo!.flbs.getIncoming(flbs2[0]!), { i: 0, incoming: true });
  assert.deepEqual(log2, ['retrieve 0'], 'retrieve runs once');
  const inc = k2.luo!.retrieveSession('flb');
  k2.luo!.sessions.retrieveFile(inc, 0n);
  k2.luo!.sessions.finish(inc);
  assert.deepEqual(log2.slice(1), ['retrieve 2', 'retrieve 1', 'finish 2 {"i":2,"incoming":true}', 'finish 1 {"i":1,"incoming":true}', 'finish 0 {"i":0,"incoming":true}'],
    'finish when the last dependent file finishes, reverse order');
  assert.throws(() => k2.luo!.flbs.getIncoming(flbs2[0]!), errno('ENODATA'), 'finished');
});

test('FLB preserve failure rolls back the ones already done (reverse order) and nothing leaks', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  const log: string[] = [];
  withFlbs(k, log, 2);
  k.luo!.open();
  const s = k.luo!.createSession('f');
  const f = memfdCreate(k.memfd, 'x', 0);
  const pages = k.kho!.preservedPages;
  assert.throws(() => k.luo!.sessions.preserveFile(s, 1n, f), errno('ENOMEM'));
  assert.deepEqual(log, ['preserve 0', 'preserve 1', 'preserve 2', 'unpreserve 1 true', 'unpreserve 0 true']);
  assert.equal(k.kho!.preservedPages, pages);
  assert.equal(s.fileSet.count, 0);
});

test('unpreserve runs with the last file; unknown or absent incoming FLBs give ENOENT/ENODATA', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  const log: string[] = [];
  const flbs = withFlbs(k, log);
  k.luo!.open();
  const s = k.luo!.createSession('u');
  k.luo!.sessions.preserveFile(s, 1n, memfdCreate(k.memfd, 'a', 0));
  k.luo!.sessions.preserveFile(s, 2n, memfdCreate(k.memfd, 'b', 0));
  k.luo!.sessions.release(s);
  assert.deepEqual(log.slice(3), ['unpreserve 2 true', 'unpreserve 1 true', 'unpreserve 0 true']);
  assert.throws(() => k.luo!.flbs.getIncoming(flbs[0]!), errno('ENODATA'), 'cold boot: no FLB data');
  k.luo!.registerFileHandler(createTestHandler(k));
  const s2 = k.luo!.createSession('v');
  k.luo!.sessions.preserveFile(s2, 1n, new TestFile(1n)); // a handler without FLBs: no FLB record
  const k2 = m.kexec();
  const other: Flb = { compatible: 'not-handed-over', ops: testFlbs([])[0]!.ops };
  k2.luo!.flbs.register(memfdHandler(k2), other);
  assert.deepEqual(k2.luo!.flbs.incomingRecords, [], 'an FLB page with no records');
  assert.throws(() => k2.luo!.flbs.getIncoming(other), errno('ENOENT'), 'the page is there, the name is not');
});

test('FLBs through three live updates with 200 memfds each time: counts, data and retrieve/finish every time', () => {
  const m = new Machine({ ramSize: GiB });
  let k = m.kernel;
  let log: string[] = [];
  withFlbs(k, log);
  k.luo!.open();
  let s = k.luo!.createSession('many');
  const n = 200;
  let files = Array.from({ length: n }, (_, i) => memfdCreate(k.memfd, `m${i}`, 0));
  files.forEach((f, i) => k.luo!.sessions.preserveFile(s, BigInt(i), f));
  for (let round = 0; round < 3; round++) {
    let page: Uint8Array | undefined;
    const cur = k;
    cur.onReboot(() => { page = m.memory.read(LuoSer.decode(m.memory.read(cur.luo!.outgoingSerPa, 32)).flbs_pa, 4096); });
    k = m.kexec();
    assert.equal(LuoFlbHeaderSer.decode(page!).count, 3n);
    for (let i = 0; i < 3; i++) assert.deepEqual(LuoFlbSer.decode(page!, 16 + i * 64), { name: `liveupdate-test-flb-v${i}`, data: BASE + BigInt(i), count: BigInt(n) });
    log = [];
    const flbs = withFlbs(k, log);
    k.luo!.open();
    const inc = k.luo!.retrieveSession('many');
    files = Array.from({ length: n }, (_, i) => k.luo!.sessions.retrieveFile(inc, BigInt(i)) as ReturnType<typeof memfdCreate>);
    assert.deepEqual(k.luo!.flbs.getIncoming(flbs[2]!), { i: 2, incoming: true });
    k.luo!.sessions.finish(inc);
    assert.equal(log.filter((l) => l.startsWith('finish')).length, 3, `round ${round}: each FLB finished once`);
    assert.equal(log.filter((l) => l.startsWith('retrieve')).length, 3, 'each FLB retrieved once');
    k.luo!.sessions.release(inc);
    s = k.luo!.createSession('many');
    files.forEach((f, i) => k.luo!.sessions.preserveFile(s, BigInt(i), f));
    assert.deepEqual(flbs.map((f) => k.luo!.flbs.outgoingCount(f)), [n, n, n]);
  }
});
