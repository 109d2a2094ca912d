/**
 * `luo serve --from-image` on a corrupted hand-over: the new daemon never dies of a raw error. A
 * broken LUO blob under the panic policy is a kernel panic (exit 1, the panic message); under
 * luo.restore_fail=disable the daemon serves without /dev/liveupdate; an impossible image address
 * in the boot parameters is an early-boot panic whatever the policy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HANDOVER_FORMAT } from '../../src/daemon/kexec.ts';
import type { BootParams } from '../../src/kernel/kernel.ts';
import { LuoClient } from '../../src/client/index.ts';
import { LuoError } from '../../src/errno.ts';
import { makeHandover } from '../helpers/corrupt-handover.ts';
import { cleanup, runLuo, startDaemon, tempDir } from './helpers.ts';

const hex = (v: bigint) => `0x${v.toString(16)}`;

async function image(dir: string, policy: 'panic' | 'disable', edit: (h: ReturnType<typeof makeHandover>) => BootParams): Promise<string> {
  const h = makeHandover(policy);
  const params = edit(h);
  const kho = params.kho!;
  const path = join(dir, `${policy}.img`);
  const keep = [{ start: 0n, end: h.machine.memory.size }];
  await h.machine.memory.saveImage(path, {
    ranges: keep,
    meta: {
      format: HANDOVER_FORMAT, luoVersion: 'test', from: { release: 'test', khoProfile: 'kho-v4', pid: 1, generation: '0x1' }, cmdline: params.cmdline,
      kho: { fdtAddr: hex(kho.fdtAddr), fdtSize: hex(kho.fdtSize), scratchAddr: hex(kho.scratchAddr), scratchSize: hex(kho.scratchSize) },
      image: params.image ? { addr: hex(params.image.addr), size: hex(params.image.size) } : null,
      ramSize: hex(h.machine.memory.size), liveupdateNum: 1, stats: {}, createdAt: new Date(0).toISOString(),
    },
  });
  return path;
}

const breakLuo = (h: ReturnType<typeof makeHandover>): BootParams => {
  const prop = h.fdtProps.find((p) => p.name === '/LUO:preserved-data')!;
  h.machine.memory.writeU64(prop.pa, 1n << 40n);
  return h.params;
};

test('luo serve --from-image: a broken LUO blob panics (panic policy) or serves without /dev/liveupdate (disable)', async () => {
  const dir = tempDir('corrupt-img');
  try {
    const panicImg = await image(dir, 'panic', breakLuo);
    const r = await runLuo(['serve', '--from-image', panicImg, '--socket', join(dir, 'p.sock'), '--state-dir', join(dir, 'p')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^luo serve: Kernel panic - not syncing: /m);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');

    const early = await image(dir, 'disable', (h) => ({ ...h.params, image: { addr: (1n << 53n) + 4096n, size: 32n << 20n } }));
    const e = await runLuo(['serve', '--from-image', early, '--socket', join(dir, 'e.sock'), '--state-dir', join(dir, 'e')]);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /Kernel panic - not syncing: early boot: EINVAL: kernel image 0x20000000001000\+0x2000000 is not inside RAM/);

    const disableImg = await image(dir, 'disable', breakLuo);
    const d = await startDaemon(dir, ['--from-image', disableImg]);
    const c = await LuoClient.connect(d.socket);
    await assert.rejects(c.openDevice(), (err) => err instanceof LuoError && err.errno === 'ENOENT');
    await c.shutdown();
  } finally {
    await cleanup(dir);
  }
});
