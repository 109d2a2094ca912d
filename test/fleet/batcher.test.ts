/**
 * Group commit of a runner's etcd transactions (src/fleet/batcher.ts) against a real etcd: the
 * transactions asked for in one turn go in few etcd transactions, each keeping the outcome it
 * would have had alone (a failed compare fails only its own, with its own failure ops), ops on one
 * key never share a transaction, and an etcd whose --max-txn-ops is too low for a batch gets one
 * transaction each from then on, said once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TxnBatcher } from '../../src/fleet/batcher.ts';
import type { TxnRequest } from '../../src/fleet/batcher.ts';
import { startFleet } from './helpers.ts';

/** A result-like write of host i: create-once compare, four ops, a failure op. */
const write = (i: number, tag: string): TxnRequest => ({
  compares: [{ key: `t/${tag}/result/${i}`, target: 'create', op: '==', value: 0 }],
  success: [
    { put: `t/${tag}/result/${i}`, value: `r${i}` },
    { put: `t/${tag}/host/${i}`, value: 'idle' },
    { del: `t/${tag}/slot/${i}` },
    { del: `t/${tag}/assign/${i}` },
  ],
  failure: [{ put: `t/${tag}/late/${i}`, value: 'too late' }],
});

test('twenty writes asked together go in two etcd transactions; a failed compare fails only its own', async () => {
  const f = await startFleet('batcher');
  try {
    const b = new TxnBatcher(f.store);
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => b.txn(write(i, 'a'))));
    assert.ok(rs.every((r) => r.succeeded));
    assert.equal(b.asked, 20);
    assert.equal(b.sent, 2, '16 + 4');
    assert.equal((await f.store.range('t/a/result/')).kvs.length, 20);

    // host 3's result exists already: its compare fails, the others' hold
    const again = new TxnBatcher(f.store);
    const mixed = await Promise.all([3, 20, 21, 22].map((i) => again.txn(write(i, 'a'))));
    assert.deepEqual(mixed.map((r) => r.succeeded), [false, true, true, true]);
    assert.equal((await f.store.get('t/a/late/3'))?.value, 'too late', 'the failed one ran its own failure ops');
    assert.equal(await f.store.get('t/a/late/20'), undefined);
    assert.equal(again.sent, 1 + 4, 'the batch, then each alone');

    // two writes of one key asked together: never in one etcd transaction (etcd refuses that)
    const dup = new TxnBatcher(f.store);
    const twice = await Promise.all([0, 1].map((n) => dup.txn({ compares: [{ key: 't/nothing', target: 'create', op: '==', value: 0 }], success: [{ put: 't/dup', value: `v${n}` }] })));
    assert.ok(twice.every((r) => r.succeeded));
    assert.equal(dup.sent, 2);
  } finally {
    await f.stop();
  }
});

test('an etcd with --max-txn-ops 12: the batch is refused, said once, and every transaction goes alone from then on', async () => {
  const f = await startFleet('batcher-small', 1, ['--max-txn-ops', '12']);
  try {
    const said: string[] = [];
    const b = new TxnBatcher(f.store, (m) => said.push(m));
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => b.txn(write(i, 'b'))));
    assert.ok(rs.every((r) => r.succeeded));
    assert.equal(said.length, 1);
    assert.match(said[0]!, /etcd refused 6 transactions in one \(.*too many operations.*\): one transaction each from now on/);
    const before = b.sent;
    await Promise.all(Array.from({ length: 6 }, (_, i) => b.txn(write(10 + i, 'b'))));
    assert.equal(b.sent - before, 6, 'one each');
    assert.equal(said.length, 1, 'said once');
    assert.equal((await f.store.range('t/b/result/')).kvs.length, 12);
  } finally {
    await f.stop();
  }
});
