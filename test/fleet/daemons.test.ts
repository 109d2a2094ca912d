/**
 * A host runner attached to real `luo serve` daemons: each daemon is a host; a campaign's update is
 * the daemon's kexec into the target release, and what a client had preserved there comes back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keys } from '../../src/fleet/keys.ts';
import type { HostResult } from '../../src/fleet/result.ts';
import { LuoClient } from '../../src/client/index.ts';
import { cleanup, runLuo, startDaemon, tempDir } from '../daemon/helpers.ts';
import { hostsPresent, monitor, startFleet, waitPhase } from './helpers.ts';

test('a runner attached to two luo serve daemons: the campaign kexecs each into the target release; their preserved files come back', async () => {
  const dir = tempDir('fleet-daemons');
  const f = await startFleet('daemons');
  try {
    const d1 = await startDaemon(join(dir, 'd1'));
    const d2 = await startDaemon(join(dir, 'd2'));
    const data = join(dir, 'guest.img');
    writeFileSync(data, Buffer.alloc(64 << 10, 0x3c));
    for (const d of [d1, d2]) {
      assert.equal((await runLuo(['session', 'create', 'vm-1', '--socket', d.socket])).code, 0);
      const p = await runLuo(['session', 'preserve', 'vm-1', '0x100', data, '--copy', '--socket', d.socket]);
      assert.equal(p.code, 0, p.stderr);
    }
    const mon = await monitor(f.store);
    await f.start('rd', ['host', '--id', 'rd', '--socket', d1.socket, d2.socket]);
    await f.start('c1', ['controller', '--id', 'c1']);
    await hostsPresent(f, 2);
    const created = f.create('d', 'name: d\ntarget: "7.3.5"\nwaves:\n  - { name: all, maxConcurrent: 1 }\n');
    assert.equal(created.code, 0, created.stderr);
    await waitPhase(f, 'd', 'done');
    const rs = (await f.store.range(keys.results('d'))).kvs.map((kv) => JSON.parse(kv.value) as HostResult);
    assert.deepEqual(rs.map((r) => [r.host, r.outcome, r.from, r.to]), [['rd-0000', 'updated', '7.3.4', '7.3.5'], ['rd-0001', 'updated', '7.3.4', '7.3.5']]);
    assert.ok(rs.every((r) => r.blackoutMs! > 0));
    for (const [i, d] of [d1, d2].entries()) {
      const c = await LuoClient.connect(d.socket);
      const st = await c.status();
      await c.close();
      assert.deepEqual([st.release, st.liveupdateNum], ['7.3.5-luo', 1]);
      const out = join(dir, `back-${i}.img`);
      const r = await runLuo(['session', 'retrieve', 'vm-1', '0x100', '-o', out, '--socket', d.socket]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(readFileSync(out), readFileSync(data));
    }
    await mon.stop();
    assert.deepEqual(mon.violations, []);
  } finally {
    await f.stop();
    await cleanup(dir);
  }
});
