/**
 * `luo session` end to end against a real `luo serve` process: sessions created by one-shot
 * commands are held by the daemon (HOLD/TAKE), survive a kexec into a new daemon process, and are
 * retrieved and finished there; errors exit 1 (operation) or 2 (usage) with a message saying what
 * to do. Every process is killed and the temp dir removed at the end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, runLuo as luo, startDaemon, tempDir } from '../daemon/helpers.ts';

test('luo session: create, preserve, list, kexec, retrieve, finish through a real daemon', async () => {
  const dir = tempDir('cli-session');
  try {
    const d = await startDaemon(dir);
    const sock = ['--socket', d.socket];
    const guest = join(dir, 'guest.img');
    writeFileSync(guest, 'guest memory of vm-1\n');
    const state = join(dir, 'state.bin');
    writeFileSync(state, Buffer.from([1, 2, 3, 4, 5]));

    let r = await luo(['session', 'create', 'vm-1', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created session vm-1/);
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colour when stdout is not a TTY');

    r = await luo(['session', 'create', 'vm-1', ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /a session named "vm-1" already exists/);

    r = await luo(['session', 'preserve', 'vm-1', '0x100', guest, ...sock]);
    assert.equal(r.code, 0, r.stderr);
    r = await luo(['session', 'preserve', 'vm-1', '512', state, '--copy', '--json', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { name: 'vm-1', token: '0x200', file: state, size: 5, mode: 'copy' });

    // Usage errors exit 2; operations that fail exit 1.
    r = await luo(['session', 'preserve', 'vm-1', 'not-a-token', guest, ...sock]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad token "not-a-token"/);
    r = await luo(['session', 'preserve', 'vm-1', '0x300', join(dir, 'missing'), ...sock]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read/);
    r = await luo(['session', 'preserve', 'nope', '0x1', guest, ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no held session named "nope": create it first with `luo session create nope`/);
    r = await luo(['session', 'preserve', 'vm-1', '0x100', guest, ...sock]);
    assert.equal(r.code, 1, 'the same token twice');
    assert.match(r.stderr, /EEXIST/);
    r = await luo(['session', 'finish', 'vm-1', ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /outgoing/);

    r = await luo(['session', 'list', '--json', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    const before = JSON.parse(r.stdout) as { liveupdateNum: number; outgoing: Array<{ name: string; held: boolean; files: Array<{ token: string; handler: string; size: number }> }> };
    assert.equal(before.liveupdateNum, 0);
    assert.deepEqual(before.outgoing, [{ name: 'vm-1', held: true, files: [{ token: '0x100', handler: 'memfd-v2', size: 21 }, { token: '0x200', handler: 'memfd-v2', size: 5 }] }]);

    // The guest file changes before the kexec: a PATH source is read at kexec.
    writeFileSync(guest, 'GUEST MEMORY OF VM-1\n');
    r = await luo(['kexec', ...sock]);
    assert.equal(r.code, 0, r.stderr);

    r = await luo(['session', 'list', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /liveupdate_num 1/);
    assert.match(r.stdout, /incoming \(1\)\n {2}vm-1\n {4}token 0x100 {2}memfd-v2\n {4}token 0x200 {2}memfd-v2/);

    const out = join(dir, 'back.img');
    r = await luo(['session', 'retrieve', 'vm-1', '0x100', '-o', out, ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(out, 'utf8'), 'GUEST MEMORY OF VM-1\n');
    assert.match(r.stderr, /retrieved token 0x100 of vm-1: 21 bytes/);
    r = await luo(['session', 'retrieve', 'vm-1', '0x200', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...Buffer.from(r.stdout, 'latin1')], [1, 2, 3, 4, 5]);
    r = await luo(['session', 'retrieve', 'vm-1', '0x999', ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no file with token 0x999/);

    r = await luo(['session', 'list', '--json', ...sock]);
    const mid = JSON.parse(r.stdout) as { incoming: Array<{ name: string; retrieved: boolean; held: boolean }> };
    assert.deepEqual(mid.incoming.map((i) => [i.name, i.retrieved, i.held]), [['vm-1', true, true]]);

    r = await luo(['session', 'finish', 'vm-1', '--json', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { name: 'vm-1', finished: true });
    r = await luo(['session', 'list', '--json', ...sock]);
    assert.deepEqual((JSON.parse(r.stdout) as { incoming: unknown[] }).incoming, []);
    r = await luo(['session', 'retrieve', 'vm-1', '0x100', ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no session named "vm-1"/);
  } finally {
    await cleanup(dir);
  }
});

test('luo session: no daemon is exit 1 with what to do; --help exits 0', async () => {
  const dir = tempDir('cli-session-none');
  try {
    const r = await luo(['session', 'list', '--socket', join(dir, 'none.sock')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no daemon at .*none\.sock \(the socket does not exist\); start one with `luo serve --socket .*none\.sock`/);
    const h = await luo(['session', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /create[\s\S]*list[\s\S]*preserve[\s\S]*retrieve[\s\S]*finish/);
    assert.match(h.stdout, /held by the daemon/);
  } finally {
    await cleanup(dir);
  }
});
