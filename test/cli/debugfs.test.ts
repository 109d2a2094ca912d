/**
 * `luo debugfs` against a real `luo serve`: lists /sys/kernel/debug/kho, prints out/fdt as DTS
 * (from memory when the debugfs file is truncated, as the kernel's is), text files as they are,
 * in/* after a kexec; unknown paths and a missing daemon exit 1 with a message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import { normalizeDebugfsPath } from '../../src/cli/debugfs.ts';
import { cleanup, runLuo as luo, startDaemon, tempDir } from '../daemon/helpers.ts';

test('normalizeDebugfsPath accepts the kernel path, kho/ and slashes', () => {
  assert.equal(normalizeDebugfsPath('/sys/kernel/debug/kho/out/fdt'), 'out/fdt');
  assert.equal(normalizeDebugfsPath('kho/in//sub_fdts/'), 'in/sub_fdts');
  assert.equal(normalizeDebugfsPath('/out/scratch_phys'), 'out/scratch_phys');
  assert.equal(normalizeDebugfsPath('/sys/kernel/debug/kho'), '');
});

test('luo debugfs: list, out/fdt as DTS, scratch_phys, in/ after a kexec, errors', async () => {
  const dir = tempDir('cli-debugfs');
  try {
    const d = await startDaemon(dir);
    const sock = ['--socket', d.socket];
    let r = await luo(['debugfs', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /kho-v4/);
    for (const f of ['out/fdt', 'out/scratch_phys', 'out/scratch_len', 'out/sub_fdts/LUO', 'out/sub_fdts/kexec-metadata']) assert.match(r.stdout, new RegExp(`^${f} +\\d+ bytes$`, 'm'));
    assert.doesNotMatch(r.stdout, /^in\//m);

    r = await luo(['debugfs', '/sys/kernel/debug/kho/out/fdt', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/dts-v1\/;\n\n\/ \{\n\tcompatible = "kho-v4";/);
    assert.match(r.stdout, /LUO \{[\s\S]*kexec-metadata \{/);

    r = await luo(['debugfs', 'out/scratch_phys', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^(0x[0-9a-f]+\n)+$/);

    // A session makes the root FDT grow past the size out/fdt had at boot: printed from memory.
    const c = await LuoClient.connect(d.socket);
    const dev = await c.openDevice();
    const s = await dev.createSession('dbg');
    await s.preserveBuffer('x', 1);
    r = await luo(['debugfs', 'out/fdt', '--json', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { path: string; kind: string; text: string };
    assert.equal(j.path, 'out/fdt');
    assert.equal(j.kind, 'dts');
    await s.close().catch(() => undefined);
    await dev.close();
    await c.close();

    r = await luo(['debugfs', 'out/nope', ...sock]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such file or directory: out\/nope \(under \/sys\/kernel\/debug\/kho: out\/fdt/);

    r = await luo(['kexec', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    r = await luo(['debugfs', 'in', '--json', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    const inc = JSON.parse(r.stdout) as { liveupdateNum: number; files: Array<{ path: string; size: number }> };
    assert.deepEqual(inc.files.map((f) => f.path), ['in/fdt', 'in/sub_fdts/LUO', 'in/sub_fdts/kexec-metadata']);
    r = await luo(['debugfs', 'in/fdt', ...sock]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /compatible = "kho-v4";/);
    r = await luo(['debugfs', 'out/sub_fdts/LUO', '--raw', ...sock]);
    assert.equal(r.code, 0);
  } finally {
    await cleanup(dir);
  }
});

test('luo debugfs: no daemon is exit 1 with what to do', async () => {
  const dir = tempDir('cli-debugfs-none');
  try {
    const r = await luo(['debugfs', '--socket', join(dir, 'none.sock')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no daemon at .*none\.sock \(the socket does not exist\); start one with `luo serve --socket .*none\.sock`/);
    const h = await luo(['debugfs', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: luo debugfs \[options\] \[path\]/);
  } finally {
    await cleanup(dir);
  }
});
