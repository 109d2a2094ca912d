/**
 * A corrupt hand-over never escapes the new kernel's boot as anything but a typed KernelPanic
 * (panic policy) or a clean boot without the hand-over or without /dev/liveupdate (disable
 * policy); what then boots stays usable and answers with errnos. Property over random corruptions
 * of a real hand-over (test/helpers/corrupt-handover.ts), fixed seed; LUO_STRESS=1 runs many more.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootAndUse, makeHandover, mutate, type Outcome } from '../helpers/corrupt-handover.ts';
import { Rng } from '../../src/conform/program.ts';
import { KernelPanic } from '../../src/luo/core.ts';
import { DEFAULT_BUILD, Kernel } from '../../src/kernel/kernel.ts';
import { scaled } from '../helpers/scale.ts';

const TRIALS = scaled(1_500, 40_000, 'LUO_BOOT_TRIALS');

test(`property: ${TRIALS} random corruptions of a real hand-over end in a panic or a clean boot`, () => {
  const rng = new Rng(0x5eed);
  const seen = new Map<Outcome, number>();
  for (let i = 0; i < TRIALS; i++) {
    const policy = i % 2 ? 'disable' : 'panic';
    const h = makeHandover(policy);
    let params = h.params;
    const what: string[] = [];
    for (let j = 1 + rng.int(3); j > 0; j--) {
      const m = mutate(h, params, rng);
      what.push(m.what);
      params = m.params;
    }
    let o: Outcome;
    try {
      o = bootAndUse(h, params);
    } catch (e) {
      assert.fail(`trial ${i} (${policy}): ${what.join('; ')}: escaped as ${(e as Error).stack}`);
    }
    if (policy === 'disable') assert.notEqual(o, 'panic', `trial ${i}: luo.restore_fail=disable never panics for LUO (${what.join('; ')})`);
    seen.set(o, (seen.get(o) ?? 0) + 1);
  }
  // the corruptions reach every outcome: the property is not vacuous
  for (const o of ['early-panic', 'panic', 'no-handover', 'no-liveupdate', 'restored'] as const) assert.ok((seen.get(o) ?? 0) > 0, `${o}: ${JSON.stringify(Object.fromEntries(seen))}`);
});

const le64 = (v: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

test('kexec-metadata pointing a few bytes before a page end, or outside RAM: ignored with a warning', () => {
  for (const target of ['before-page-end', 'outside-ram'] as const) {
    const h = makeHandover('panic');
    const prop = h.fdtProps.find((p) => p.name === '/kexec-metadata:preserved-data')!;
    const cur = new DataView(h.machine.memory.read(prop.pa, 8).buffer).getBigUint64(0, true);
    h.machine.memory.write(prop.pa, le64(target === 'outside-ram' ? 1n << 40n : ((cur >> 12n) << 12n) + 4095n));
    assert.equal(bootAndUse(h, h.params), 'restored');
  }
});

test('boot parameters: an image above 2^53 or larger than RAM, tiny scratch areas: a panic in early boot', () => {
  for (const image of [{ addr: (1n << 53n) + 4096n, size: 32n << 20n }, { addr: 0x1000000n, size: 1n << 40n }, { addr: (1n << 64n) - 4096n, size: 4096n }]) {
    const h = makeHandover('disable');
    assert.throws(() => Kernel.boot(h.machine, DEFAULT_BUILD, { ...h.params, image }), (e) => e instanceof KernelPanic && /early boot: EINVAL: kernel image .* is not inside RAM/.test(e.message));
  }
  // every scratch area one page: early allocations cannot be satisfied
  const h = makeHandover('disable');
  const kho = h.params.kho!;
  for (let i = 0n; i < kho.scratchSize / 16n; i++) h.machine.memory.writeU64(kho.scratchAddr + i * 16n + 8n, 4096n);
  assert.throws(() => Kernel.boot(h.machine, DEFAULT_BUILD, h.params), (e) => e instanceof KernelPanic && /early boot/.test(e.message));
});

test('a scratch area covering all RAM: KHO fails to initialize, the kernel boots without hand-over', () => {
  const h = makeHandover('panic');
  h.machine.memory.writeU64(h.params.kho!.scratchAddr + 16n, 0n);
  h.machine.memory.writeU64(h.params.kho!.scratchAddr + 24n, 1n << 30n);
  const outcome = bootAndUse(h, h.params);
  assert.equal(outcome, 'no-handover');
});
