/**
 * A C program's own fd type through a live update (docs/handlers.md, "From a C program"):
 * `luo serve --handler examples/handlers/counter.mjs`, the program lu_plugin through the LD_PRELOAD
 * shim opens /dev/luo/luo-example-counter-v1, reads and writes it, preserves two counters, the
 * daemon kexecs into a new process, and stage 2 retrieves them with the counts the plugin's freeze
 * handed over.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT, useShimDaemon } from './harness.ts';

describe('native: a plugin file through the shim and a kexec', () => {
  const suite = useShimDaemon(['--handler', join(ROOT, 'examples/handlers/counter.mjs')]);

  it('stage 1: the node errors, read/write, PRESERVE_FD of two counters (one changed after, one closed)', async () => {
    const r = await suite.run('lu_plugin', ['--stage', '1']);
    const m = /STAGE1 HOLDER (\d+)/.exec(r.stdout);
    if (m) suite.holders.push(Number(m[1]));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(m, r.stdout);
  });

  it('kexec into a new daemon process, then stage 2 retrieves both counts (7 and 9) and finishes', async () => {
    await suite.daemon.kexec();
    const r = await suite.run('lu_plugin', ['--stage', '2']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /--- PLUGIN KEXEC TEST PASSED ---/);
    assert.match(suite.daemon.log, /luo-example-counter-v1/);
  });
});
