/**
 * `luo serve --handler PATH`: the plugin is built into the daemon's kernel and into every kernel a
 * `luo kexec` starts (the successor process loads the same module); a module that is not a plugin
 * stops the daemon before it serves, saying why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import { cleanup, errnoOf, runLuo, startDaemon, tempDir } from './helpers.ts';

const COUNTER = new URL('../../examples/handlers/counter.mjs', import.meta.url).pathname;

test('luo serve --handler: the plugin is registered in the daemon and again after luo kexec, in the new process', async () => {
  const dir = tempDir('plugin-serve');
  try {
    const d = await startDaemon(dir, ['--handler', COUNTER]);
    const c = await LuoClient.connect(d.socket);
    const r = await runLuo(['kexec', '--socket', d.socket]);
    assert.equal(r.code, 0, r.stderr);
    const c2 = await LuoClient.connectRetry(d.socket);
    assert.equal(c2.liveupdateNum, 1);
    const lines = readFileSync(d.log, 'utf8').split('\n').filter((l) => l.includes('registered file handler plugin "luo-example-counter-v1"'));
    assert.equal(lines.length, 2, 'once per kernel: the first daemon and its successor');
    assert.ok(lines.every((l) => l.includes(COUNTER)));
    await c2.shutdown();
    void c;
  } finally {
    await cleanup(dir);
  }
});

test('luo serve --handler with a module that is not a plugin: exit 1 naming the file, nothing served', async () => {
  const dir = tempDir('plugin-bad');
  try {
    const bad = join(dir, 'bad.mjs');
    writeFileSync(bad, 'export default { compatible: 42 };\n');
    const r = await runLuo(['serve', '--socket', join(dir, 's.sock'), '--state-dir', join(dir, 'state'), '--handler', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /handler plugin .*bad\.mjs: its default export is not a handler plugin/);
  } finally {
    await cleanup(dir);
  }
});

test('luo serve --subsystem and --liveupdate-test: subsystem data and the test FLBs cross luo kexec; luo status shows both; a bad --subsystem is refused', async () => {
  const dir = tempDir('subsys-serve');
  try {
    const d = await startDaemon(dir, ['--subsystem', 'kvm=0x1234', 'iommu=7', '--liveupdate-test']);
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('vm');
    await s.preserveBuffer('guest', 1);
    await dev.close();
    const r = await runLuo(['kexec', '--socket', d.socket]);
    assert.equal(r.code, 0, r.stderr);
    const c2 = await LuoClient.connectRetry(d.socket);
    const st = await c2.status();
    assert.deepEqual([st.subsystems.state, st.subsystems.registered, st.subsystems.incoming], ['updated', ['kvm', 'iommu'], { kvm: '0x1234', iommu: '0x7' }]);
    assert.deepEqual(st.flbs.incoming.map((f) => [f.name, f.count]), [0, 1, 2].map((i) => [`liveupdate-test-flb-v${i}`, 1]));
    const out = await runLuo(['status', '--socket', d.socket]);
    assert.match(out.stdout, /subsystems \(updated\): kvm, iommu; handed over kvm=0x1234 iommu=0x7/);
    assert.match(out.stdout, /FLBs handed over: liveupdate-test-flb-v0 \(1 file\(s\), data 0xfeedf00dcafebee0\)/);
    // every registered FLB: none of its files preserved now, the incoming one not yet retrieved
    assert.match(out.stdout, /FLBs:\s+liveupdate-test-flb-v0 \[memfd-v2\] 0 file\(s\) now, incoming waiting \(1 file\(s\), data 0xfeedf00dcafebee0\)/);
    assert.deepEqual(st.flbs.registered.map((f) => [f.name, f.outgoing.files, f.incoming?.state]), [0, 1, 2].map((i) => [`liveupdate-test-flb-v${i}`, 0, 'waiting']));
    await c2.shutdown();
    void c;
    const bad = await runLuo(['serve', '--socket', join(dir, 'b.sock'), '--state-dir', join(dir, 'b'), '--subsystem', 'kvm']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--subsystem kvm: expected NAME=DATA/);
  } finally {
    await cleanup(dir);
  }
});

test('plugin files through the protocol: open /dev/luo/<compatible>, read and write, PRESERVE_FD by connection, a write after preserve handed over by freeze, RETRIEVE_FD then ATTACH; errors as the kernel gives them', async () => {
  const dir = tempDir('plugin-files');
  try {
    const d = await startDaemon(dir, ['--handler', COUNTER]);
    const c = await LuoClient.connect(d.socket);
    // no such plugin, and arguments the plugin refuses
    assert.equal(await errnoOf(c.openPlugin('no-such-handler')), 'ENOENT');
    assert.equal(await errnoOf(c.openPlugin('luo-example-counter-v1', { args: { count: -1 } })), 'EINVAL');
    const ro = await c.openPlugin('luo-example-counter-v1', { flags: 0 /* O_RDONLY */ });
    assert.equal(await errnoOf(ro.write(new Uint8Array(8))), 'EBADF');
    await ro.close();
    const f = await c.openPlugin('luo-example-counter-v1', { args: { count: 40 } });
    const u64 = (v: bigint) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, v, true);
      return b;
    };
    assert.equal(await f.write(u64(2n)), 8);
    assert.equal(await errnoOf(f.write(new Uint8Array(4))), 'EINVAL');
    assert.equal(await errnoOf(f.read(4)), 'EINVAL');
    const dev = await c.openDevice();
    const s = await dev.createSession('vm');
    await s.preservePluginFile(f, 7);
    // a token already used in the session: EEXIST, whatever the file
    assert.equal(await errnoOf(s.preservePluginFile(f, 7)), 'EEXIST');
    // the device and a session are files no handler takes
    assert.equal(await errnoOf(s.ioctl(0xba40, (() => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(0, 16, true); b[8] = 9; return b; })(), { source: { kind: 'conn', connId: dev.conn.connId } })), 'ENOENT');
    // a connection that does not exist: the fd is not open
    assert.equal(await errnoOf(s.ioctl(0xba40, (() => { const b = new Uint8Array(16); new DataView(b.buffer).setUint32(0, 16, true); b[8] = 10; return b; })(), { source: { kind: 'conn', connId: 999999 } })), 'EBADF');
    // changed after PRESERVE_FD: freeze writes the count at the reboot
    assert.equal(await f.write(u64(100n)), 8);
    await dev.close();
    const k = await runLuo(['kexec', '--socket', d.socket]);
    assert.equal(k.code, 0, k.stderr);

    const c2 = await LuoClient.connectRetry(d.socket);
    const dev2 = await c2.openDevice();
    const s2 = await dev2.retrieveSession('vm');
    // asked for as a memfd: refused, and it can still be retrieved as what it is
    assert.equal(await errnoOf(s2.retrieve(7)), 'EINVAL');
    const g = await s2.retrievePlugin(7, 'luo-example-counter-v1');
    assert.equal(Buffer.from(await g.read(8)).readBigUInt64LE(0), 142n);
    assert.equal(await errnoOf(g.read(8)), 'EAGAIN');
    // a handle that was never handed out
    const raw = await c2.rawConnection();
    const { decodePrefix, MSG, PayloadWriter } = await import('../../src/daemon/wire.ts');
    const r = decodePrefix(await raw.request(MSG.ATTACH, new PayloadWriter().u32(s2.conn.connId).u32(0).u64(12345n).finish()));
    assert.deepEqual([r.ret, r.errno], [-1, 9]);
    await s2.finish();
    await g.close();
    await c2.shutdown();
  } finally {
    await cleanup(dir);
  }
});

test('luo serve --subsystem NAME=DATA,fail=freeze:EBUSY:1: the first luo kexec is refused with EBUSY and nothing changes, the retry hands the data over; a bad fail spec is refused', async () => {
  const dir = tempDir('subsys-fail');
  try {
    const d = await startDaemon(dir, ['--subsystem', 'kvm=0x10', 'iommu=0x20,fail=freeze:EBUSY:1']);
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('vm');
    await s.preserveBuffer('guest', 1);
    await dev.close();
    const refused = await runLuo(['kexec', '--socket', d.socket]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /EBUSY/);
    // still the first kernel, the session still there
    const st = await c.status();
    assert.equal(st.liveupdateNum, 0);
    assert.deepEqual(st.sessions.outgoing.map((o) => o.name), ['vm']);
    assert.equal(st.subsystems.state, 'normal');
    const r = await runLuo(['kexec', '--socket', d.socket]);
    assert.equal(r.code, 0, r.stderr);
    const c2 = await LuoClient.connectRetry(d.socket);
    const st2 = await c2.status();
    assert.deepEqual(st2.subsystems.incoming, { kvm: '0x10', iommu: '0x20' });
    assert.match(readFileSync(d.log, 'utf8'), /subsystem "iommu" freeze fails with EBUSY \(declared, failure 1 of 1\)/);
    await c2.shutdown();
    for (const bad of ['kvm=1,fail=cancel:EBUSY', 'kvm=1,fail=freeze:ENOTANERRNO', 'kvm=1,fail=freeze:EBUSY:0']) {
      const b = await runLuo(['serve', '--socket', join(dir, 'b.sock'), '--state-dir', join(dir, 'b'), '--subsystem', bad]);
      assert.equal(b.code, 1, bad);
      assert.match(b.stderr, /expected NAME=DATA\[,fail=prepare\|freeze:ERRNO\[:TIMES\]\]/, bad);
    }
  } finally {
    await cleanup(dir);
  }
});
