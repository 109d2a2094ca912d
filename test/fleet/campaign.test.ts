/**
 * Fleet campaigns against real etcd processes, real host runners and real controllers (child
 * processes of `luo fleet`), with an independent monitor on every etcd revision: never more hosts
 * in flight than a wave allows, each host admitted and recorded once — through a normal rollout, a
 * controller killed mid-wave, a host runner killed mid-update, failures that halt a wave, operator
 * pause/resume/abort, and bad campaign files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keys } from '../../src/fleet/keys.ts';
import type { HostResult } from '../../src/fleet/result.ts';
import { until } from '../daemon/helpers.ts';
import { campaignPhase, type Fleet, hostsPresent, monitor, startFleet, waitPhase } from './helpers.ts';

/** `etcdctl compact REV`: etcd forgets every revision before `rev`. */
function compactTo(f: Fleet, rev: bigint): void {
  const r = spawnSync('etcdctl', ['--endpoints', f.cluster.endpoints[0]!, 'compact', String(rev)], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

async function results(store: import('../../src/fleet/store.ts').FleetStore, c: string): Promise<HostResult[]> {
  return (await store.range(keys.results(c))).kvs.map((kv) => JSON.parse(kv.value) as HostResult);
}

test('a campaign rolls canary then waves to completion: at most maxConcurrent in flight, each host admitted and recorded once, blackouts recorded', async () => {
  const f = await startFleet('roll');
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '8', '--labels', 'az=a', '--update-delay-ms', '50']);
    await f.start('rb', ['host', '--id', 'rb', '--count', '8', '--labels', 'az=b', '--update-delay-ms', '50']);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 16);
    const created = f.create('roll', 'name: roll\ntarget: "7.3.5"\nwaves:\n  - { name: canary, hosts: 1, maxConcurrent: 1 }\n  - { name: rest, maxConcurrent: 3 }\npolicy: { blackoutSlo: 10s }\n');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /16 host\(s\) to 7\.3\.5 in 2 wave\(s\)/);
    await waitPhase(f, 'roll', 'done');
    const rs = await results(f.store, 'roll');
    assert.equal(rs.length, 16);
    assert.deepEqual([...new Set(rs.map((r) => r.outcome))], ['updated']);
    for (const r of rs) {
      assert.equal(r.from, '7.3.4');
      assert.equal(r.to, '7.3.5');
      assert.ok(r.blackoutMs! > 0 && r.phases && 'kexec.boot' in r.phases, JSON.stringify(r));
    }
    // the canary was alone and finished before anything else started
    const canary = rs.find((r) => r.wave === 0)!;
    assert.ok(rs.filter((r) => r.wave === 1).every((r) => r.at >= canary.at));
    await mon.stop();
    assert.deepEqual(mon.violations, []);
    assert.equal(mon.peak.get('roll/0'), 1);
    assert.ok((mon.peak.get('roll/1') ?? 0) <= 3 && (mon.peak.get('roll/1') ?? 0) >= 2, `wave 1 peaked at ${mon.peak.get('roll/1')}`);
    // every host now runs 7.3.5
    const hosts = f.luo(['hosts', '--json']);
    assert.deepEqual([...new Set((JSON.parse(hosts.stdout) as Array<{ release: string }>).map((h) => h.release))], ['7.3.5']);
    const st = f.luo(['campaign', 'status', 'roll']);
    assert.match(st.stdout, /roll -> 7\.3\.5: done/);
    assert.match(st.stdout, /wave 1 rest\s+15 host\(s\): 15 updated/);
  } finally {
    await f.stop();
  }
});

test('an etcd that refuses large transactions (--max-txn-ops 12): admissions fall back to one host per transaction; the campaign completes, nobody twice', async () => {
  const f = await startFleet('small-txn', 1, ['--max-txn-ops', '12']);
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '10', '--update-delay-ms', '50']);
    const c1 = await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 10);
    assert.equal(f.create('st', 'name: st\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 5 }\n').code, 0);
    await waitPhase(f, 'st', 'done');
    const rs = await results(f.store, 'st');
    assert.equal(rs.length, 10);
    assert.equal(new Set(rs.map((r) => r.host)).size, 10);
    assert.deepEqual([...new Set(rs.map((r) => r.outcome))], ['updated']);
    await mon.stop();
    assert.deepEqual(mon.violations, []);
    assert.ok((mon.peak.get('st/0') ?? 0) <= 5, `peaked at ${mon.peak.get('st/0')}`);
    assert.match(c1.out, /etcd refused \d+ admissions in one transaction \(.*too many operations.*\): admitting one host per transaction/);
  } finally {
    await f.stop();
  }
});

test('kill -9 of the leading controller mid-wave: the standby takes over, nobody is admitted twice, the campaign completes', async () => {
  const f = await startFleet('failover');
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '12', '--update-delay-ms', '150']);
    const c1 = await f.start('c1', ['controller', '--id', 'c1']);
    await until(async () => (await f.store.get(keys.leader()))?.value === 'c1', 'c1 to lead');
    const c2 = await f.start('c2', ['controller', '--id', 'c2']);
    await hostsPresent(f, 12);
    assert.equal(f.create('fo', 'name: fo\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 2 }\n').code, 0);
    await until(async () => (await results(f.store, 'fo')).length >= 3, 'three results');
    c1.child.kill('SIGKILL');
    await c1.exited;
    await until(async () => (await f.store.get(keys.leader()))?.value === 'c2', 'c2 to take over', () => (c2.child.exitCode !== null ? `c2 exited: ${c2.out}` : undefined));
    await waitPhase(f, 'fo', 'done');
    const rs = await results(f.store, 'fo');
    assert.equal(rs.length, 12);
    assert.ok(rs.every((r) => r.outcome === 'updated'), JSON.stringify(rs.filter((r) => r.outcome !== 'updated')));
    await mon.stop();
    assert.deepEqual(mon.violations, []);
    assert.match(c2.out, /leading/);
  } finally {
    await f.stop();
  }
});

test('kill -9 of a host runner mid-update: its slots expire with its lease, those hosts are timed-out once; the policy pauses; it comes back, resume finishes the rest', async () => {
  const f = await startFleet('runner-crash');
  try {
    const mon = await monitor(f.store);
    // the slow runner's hosts (ha-*) sort first: they are admitted first and hang in a 60 s delay
    const slow = await f.start('ha', ['host', '--id', 'ha', '--count', '4', '--update-delay-ms', '60000', '--ttl', '2']);
    await f.start('hb', ['host', '--id', 'hb', '--count', '4']);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 8);
    assert.equal(f.create('rc', 'name: rc\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 2, maxFailures: 8 }\npolicy: { pauseAfterTimeouts: 2 }\nselect: { labels: {} }\n').code, 0);
    await until(async () => (await f.store.range(keys.slots('rc'))).kvs.length === 2, 'two hosts in flight');
    const inFlight = (await f.store.range(keys.slots('rc'))).kvs.map((kv) => (JSON.parse(kv.value) as { host: string }).host).sort();
    assert.deepEqual(inFlight, ['ha-0000', 'ha-0001']);
    slow.child.kill('SIGKILL');
    await slow.exited;
    await waitPhase(f, 'rc', 'paused');
    const st = await campaignPhase(f.store, 'rc');
    assert.match(st!.reason!, /2 host\(s\) timed out/);
    const timedOut = (await results(f.store, 'rc')).filter((r) => r.outcome === 'timed-out').map((r) => r.host).sort();
    assert.deepEqual(timedOut, inFlight);
    // the runner comes back with the same hosts; resume: the ones never admitted are updated
    await f.start('ha2', ['host', '--id', 'ha', '--count', '4']);
    await until(async () => (await f.store.range(keys.hosts())).kvs.length === 8, 'ha back');
    assert.equal(f.luo(['campaign', 'resume', 'rc']).code, 0);
    // two more timeouts already counted: resume accepts them, the rest go through
    await waitPhase(f, 'rc', 'done');
    const rs = await results(f.store, 'rc');
    assert.equal(rs.filter((r) => r.outcome === 'timed-out').length, 2, 'the timed-out hosts are not updated again');
    assert.equal(rs.filter((r) => r.outcome === 'updated').length, 6);
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
  }
});

test('failures past a wave\'s limit pause it (in-flight hosts finish); resume goes on; abort stops admissions for good', async () => {
  const f = await startFleet('halt');
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '10', '--fail', 'ra-0001=refused,ra-0003=fell-back,ra-0005=refused']);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 10);
    assert.equal(f.create('halt', 'name: halt\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 1, maxFailures: 0 }\n').code, 0);
    await waitPhase(f, 'halt', 'paused');
    let st = await campaignPhase(f.store, 'halt');
    assert.match(st!.reason!, /1 failure\(s\), more than the 0 it allows/);
    let rs = await results(f.store, 'halt');
    assert.deepEqual(rs.map((r) => [r.host, r.outcome]).sort(), [['ra-0000', 'updated'], ['ra-0001', 'refused']]);
    assert.match(rs.find((r) => r.host === 'ra-0001')!.reason!, /kexec/);
    // resume: the next failure (a fall-back, its layer named) pauses it again
    assert.equal(f.luo(['campaign', 'resume', 'halt']).code, 0);
    await until(async () => (await results(f.store, 'halt')).some((r) => r.host === 'ra-0003'), 'ra-0003');
    await waitPhase(f, 'halt', 'paused');
    rs = await results(f.store, 'halt');
    const fb = rs.find((r) => r.host === 'ra-0003')!;
    assert.deepEqual([fb.outcome, fb.layer], ['fell-back', 'LUO']);
    // abort: nothing more is admitted, and a resume cannot bring it back
    assert.equal(f.luo(['campaign', 'abort', 'halt']).code, 0);
    await waitPhase(f, 'halt', 'aborted');
    const n = (await f.store.range(keys.admittedAll('halt'))).kvs.length;
    assert.equal(f.luo(['campaign', 'resume', 'halt']).code, 0);
    await new Promise((r) => setTimeout(r, 600));
    st = await campaignPhase(f.store, 'halt');
    assert.equal(st!.phase, 'aborted');
    assert.equal((await f.store.range(keys.admittedAll('halt'))).kvs.length, n);
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
  }
});

test('bad campaigns are refused with clear errors and nothing is written: schema, unknown release, empty selection, hops luo plan refuses', async () => {
  const f = await startFleet('bad');
  try {
    await f.start('old', ['host', '--id', 'old', '--count', '2', '--release', '6.19', '--labels', 'gen=old']);
    await hostsPresent(f, 2);
    const w = (name: string, text: string): string => {
      const p = join(f.dir, name);
      writeFileSync(p, text);
      return p;
    };
    const schema = f.luo(['campaign', 'create', w('a.yaml', 'name: Bad Name\ntarget: "7.9"\nwaves: []\nextra: 1\n')]);
    assert.equal(schema.code, 2);
    assert.match(schema.stderr, /a\.yaml:1:7: name: a campaign name is 1\.\.63/);
    assert.match(schema.stderr, /a\.yaml:2:9: target: expected one of 6\.19, /);
    assert.match(schema.stderr, /a\.yaml:3:8: waves: needs at least one wave/);
    assert.match(schema.stderr, /a\.yaml:4:1: extra: unknown field "extra"/);
    const empty = f.luo(['campaign', 'create', w('b.yaml', 'name: b\ntarget: "7.0"\nselect: { labels: { gen: new } }\nwaves: [{ name: all, maxConcurrent: 1 }]\n')]);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /no registered host matches the selection .*\(ENOENT\)/);
    const hop = f.luo(['campaign', 'create', w('c.yaml', 'name: c\ntarget: "7.0"\nwaves: [{ name: all, maxConcurrent: 1 }]\n')]);
    assert.equal(hop.code, 1);
    assert.match(hop.stderr, /2 host\(s\) cannot live-update to 7\.0 \(luo plan\): 6\.19 -> 7\.0: LUO: the new kernel requires a "luo-flb" node.*allowColdBoot/);
    assert.deepEqual((await f.store.range(keys.campaigns())).kvs, [], 'nothing written');
    // allowed explicitly: created, and the fall-backs are counted as such
    const ok = f.luo(['campaign', 'create', w('d.yaml', 'name: d\ntarget: "7.0"\nwaves: [{ name: all, maxConcurrent: 1 }]\npolicy: { allowColdBoot: true }\n')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /2 host\(s\) will fall back to a cold boot/);
    const dup = f.luo(['campaign', 'create', w('d2.yaml', 'name: d\ntarget: "7.0"\nwaves: [{ name: all, maxConcurrent: 1 }]\npolicy: { allowColdBoot: true }\n')]);
    assert.match(dup.stderr, /a campaign named "d" exists already \(EEXIST\)/);
    const noEtcd = f.luo(['hosts', '--etcd', 'http://127.0.0.1:1']);
    assert.equal(noEtcd.code, 1);
    assert.match(noEtcd.stderr, /etcd http:\/\/127\.0\.0\.1:1: no member answers.*\(ECONNREFUSED\)/);
  } finally {
    await f.stop();
  }
});

test('a 3-member etcd loses its leader mid-campaign (kill -9): nothing is lost, the campaign completes, the guarantees hold', async () => {
  const f = await startFleet('member-loss', 3);
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '12', '--update-delay-ms', '100', '--ttl', '5']);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 12);
        // timeouts from the election gap are allowed: what must hold is once-only and the concurrency bound
    assert.equal(f.create('ml', 'name: ml\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 2, maxFailures: 12 }\n').code, 0);
    await until(async () => (await results(f.store, 'ml')).length >= 3, 'three results');
    // the member that leads raft, as etcdctl reports it
    const leader = f.cluster.members.find((m) => {
      const r = spawnSync('etcdctl', ['--endpoints', m.clientUrl, 'endpoint', 'status', '-w', 'json'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
      const st = JSON.parse(r.stdout) as Array<{ Status: { leader: string; header: { member_id: string } } }>;
      return String(st[0]!.Status.leader) === String(st[0]!.Status.header.member_id);
    });
    assert.ok(leader, 'etcdctl names a leader');
    process.kill(leader.pid, 'SIGKILL');
    await waitPhase(f, 'ml', 'done');
    const rs = await results(f.store, 'ml');
    assert.equal(rs.length, 12, 'every host has exactly one result');
    assert.ok(rs.filter((r) => r.outcome === 'updated').length >= 10, JSON.stringify(rs.map((r) => r.outcome)));
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
  }
});

test('operator intent survives a leader change: a pause sent as the leader dies is applied by the standby; admissions stop; resume finishes', async () => {
  const f = await startFleet('intent');
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '10', '--update-delay-ms', '200']);
    const c1 = await f.start('c1', ['controller', '--id', 'c1']);
    await until(async () => (await f.store.get(keys.leader()))?.value === 'c1', 'c1 to lead');
    await f.start('c2', ['controller', '--id', 'c2']);
    await hostsPresent(f, 10);
    assert.equal(f.create('in', 'name: in\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 2 }\n').code, 0);
    await until(async () => (await results(f.store, 'in')).length >= 2, 'two results');
    c1.child.kill('SIGKILL');
    assert.equal(f.luo(['campaign', 'pause', 'in']).code, 0);
    await waitPhase(f, 'in', 'paused');
    assert.match((await campaignPhase(f.store, 'in'))!.reason!, /^pause by .+@\d+$/);
    // what was in flight finishes; nothing new is admitted while paused
    await until(async () => (await f.store.range(keys.slots('in'))).kvs.length === 0, 'in-flight hosts to finish');
    const admitted = (await f.store.range(keys.admittedAll('in'))).kvs.length;
    await new Promise((r) => setTimeout(r, 800));
    assert.equal((await f.store.range(keys.admittedAll('in'))).kvs.length, admitted);
    assert.equal((await f.store.get(keys.leader()))?.value, 'c2');
    assert.equal(f.luo(['campaign', 'resume', 'in']).code, 0);
    await waitPhase(f, 'in', 'done');
    assert.equal((await results(f.store, 'in')).length, 10);
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
  }
});

test('two campaigns over the same hosts at once: a host is never in flight for both; both complete, each host once in each', async () => {
  const f = await startFleet('two');
  try {
    const mon = await monitor(f.store);
    await f.start('ra', ['host', '--id', 'ra', '--count', '4', '--update-delay-ms', '100']);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 4);
    for (const n of ['one', 'two']) {
      assert.equal(f.create(n, `name: ${n}\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 4 }\n`).code, 0);
    }
    await waitPhase(f, 'one', 'done');
    await waitPhase(f, 'two', 'done');
    for (const n of ['one', 'two']) assert.equal((await results(f.store, n)).filter((r) => r.outcome === 'updated').length, 4);
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
  }
});

test('a controller and runner stopped behind 30 MB of changes and a compaction: the campaign completes, nobody twice', async (t) => {
  const f = await startFleet('compacted');
  try {
    const mon = await monitor(f.store);
    const runner = await f.start('r', ['host', '--id', 'r', '--count', '12', '--ttl', '120']);
    const ctl = await f.start('c', ['controller', '--id', 'c']); // its election lease ends while stopped: it leads again after
    await hostsPresent(f, 12);
    await until(async () => (await f.store.get(keys.leader()))?.value === 'c', 'the controller to lead');
    // both stop reading; 30 MB of changes pile up behind their watches; etcd compacts past them
    runner.child.kill('SIGSTOP');
    ctl.child.kill('SIGSTOP');
    const noise = 'n'.repeat(10_000);
    let rev = 0n;
    for (let i = 0; i < 3000; i++) rev = await f.store.put(keys.assign(`zz-noise-${i % 50}`), noise);
    compactTo(f, rev);
    for (let i = 0; i < 50; i++) await f.store.delete(keys.assign(`zz-noise-${i}`));
    const created = f.create('after', 'name: after\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 4 }\n');
    assert.equal(created.code, 0, created.stderr);
    runner.child.kill('SIGCONT');
    ctl.child.kill('SIGCONT');
    await waitPhase(f, 'after', 'done');
    assert.equal((await results(f.store, 'after')).filter((r) => r.outcome === 'updated').length, 12);
    // whether etcd ends a stalled watch depends on how much its buffers took: say which were ended
    // (the watch that etcd ends for sure is the next test's)
    t.diagnostic(`watches etcd ended: controller ${/etcd ended the watch of the fleet/.test(ctl.out)}, runner ${/etcd ended the assignment watch/.test(runner.out)}`);
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
  }
});

test('a watch from a revision etcd compacted away is ended by etcd: the store reports it (ESTALE) instead of waiting forever', async () => {
  const f = await startFleet('watch-lost');
  try {
    const first = await f.store.put(keys.assign('x-1'), 'a');
    let last = first;
    for (let i = 0; i < 5; i++) last = await f.store.put(keys.assign(`x-${i}`), String(i));
    compactTo(f, last);
    const lost = await new Promise<Error>((resolve) => {
      void f.store.watch(keys.assigns(), first - 1n, () => undefined, resolve);
    });
    assert.match(lost.message, /ESTALE|the watch of luo\/fleet\/assign\/ ended/);
    assert.equal((lost as Error & { errno?: string }).errno, 'ESTALE');
  } finally {
    await f.stop();
  }
});

test('policy.fallback fresh-kexec: hosts whose hop cannot live-update fall back by a kexec without hand-over, and their results say so', async () => {
  const f = await startFleet('fresh');
  try {
    await f.start('ra', ['host', '--id', 'ra', '--count', '3']);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 3);
    // 7.3.4 -> mm-granular: the new KHO refuses the root (luo plan: no hand-over)
    const c = f.create('fresh', 'name: fresh\ntarget: "mm-granular"\nwaves: [{ name: all, maxConcurrent: 3 }]\npolicy: { allowColdBoot: true, fallback: fresh-kexec, failOn: [refused] }\n');
    assert.equal(c.code, 0, c.stderr);
    await waitPhase(f, 'fresh', 'done');
    const rs = await results(f.store, 'fresh');
    assert.deepEqual(rs.map((r) => [r.outcome, r.freshKexec, r.layer]), [0, 1, 2].map(() => ['fell-back', true, 'KHO']));
    assert.ok(rs.every((r) => r.phases && 'fresh-kexec' in r.phases && !('cold-boot' in r.phases)), JSON.stringify(rs[0]));
  } finally {
    await f.stop();
  }
});
