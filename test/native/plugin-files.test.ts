/**
 * A C program's own fd type through a live update (docs/handlers.md, "From a C program"):
 * `luo serve --handler examples/handlers/counter.mjs`, the program lu_plugin through the LD_PRELOAD
 * shim opens /dev/luo/luo-example-counter-v1, reads and writes it, preserves two counters, the
 * daemon kexecs into a new process, and stage 2 retrieves them with the counts the plugin's freeze
 * handed over.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildNative, Daemon, ROOT, runShimmed } from './harness.ts';

describe('native: a plugin file through the shim and a kexec', () => {
  let bin = '';
  let daemon: Daemon;
  let env: NodeJS.ProcessEnv = {};
  const holders: number[] = [];

  before(async () => {
    bin = buildNative();
    daemon = new Daemon(['--handler', join(ROOT, 'examples/handlers/counter.mjs')]);
    await daemon.start();
    env = { ...process.env, LUO_SOCKET: daemon.socket, LD_PRELOAD: join(bin, 'libluo-preload.so') };
  });

  after(async () => {
    for (const pid of holders) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await daemon?.stop();
    if (bin) rmSync(bin, { recursive: true, force: true });
  });

  it('stage 1: the node errors, read/write, PRESERVE_FD of two counters (one changed after, one closed)', async () => {
    const r = await runShimmed(join(bin, 'lu_plugin'), ['--stage', '1'], env);
    const m = /STAGE1 HOLDER (\d+)/.exec(r.stdout);
    if (m) holders.push(Number(m[1]));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(m, r.stdout);
  });

  it('kexec into a new daemon process, then stage 2 retrieves both counts (7 and 9) and finishes', async () => {
    await daemon.kexec();
    const r = await runShimmed(join(bin, 'lu_plugin'), ['--stage', '2'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /--- PLUGIN KEXEC TEST PASSED ---/);
    assert.match(daemon.log, /luo-example-counter-v1/);
  });
});
