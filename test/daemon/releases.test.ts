/**
 * The daemon on other kernel releases: `luo serve --release`, and `luo kexec --release` into a
 * release whose hand-over ABI differs (what survives is what `luo plan` says), or one it does not
 * know (refused before anything changes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LuoClient } from '../../src/client/index.ts';
import { cleanup, errnoOf, runLuo, startDaemon, tempDir } from './helpers.ts';

test('--release: a daemon of another release; a kexec into a release whose KHO differs keeps nothing, an unknown one is refused', async () => {
  const dir2 = tempDir('kexec-release');
  try {
    const g = await startDaemon(dir2, ['--release', 'mm-granular']);
    const c = await LuoClient.connect(g.socket);
    assert.equal((await c.status()).release, '7.4.0-rc1-mm');
    const dev = await c.openDevice();
    const s = await dev.createSession('vm-1');
    // a release luo does not know: refused, nothing changed
    const unknown = await runLuo(['kexec', '--socket', g.socket, '--release', 'nope']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown release "nope".*\(ENOENT\)/);
    assert.equal((await c.status()).release, '7.4.0-rc1-mm');
    // 7.3.4's KHO refuses the granular root: the session does not come back (luo plan: no-handover)
    const r = await runLuo(['kexec', '--socket', g.socket, '--release', '7.3.4']);
    assert.equal(r.code, 0, r.stderr);
    const c2 = await LuoClient.connect(g.socket);
    const st = await c2.status();
    assert.equal(st.release, '7.3.4-luo');
    assert.equal(st.liveupdateNum, 0);
    const dev2 = await c2.openDevice();
    assert.equal(await errnoOf(dev2.retrieveSession('vm-1')), 'ENOENT');
    await dev2.close();
    await c2.close();
    void s;
  } finally {
    await cleanup(dir2);
  }
});
