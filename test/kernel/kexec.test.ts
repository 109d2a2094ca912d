/** KHO across real kexecs on the simulated machine: contents survive, the rest is poisoned, errors as the kernel's. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Machine } from '../../src/kernel/machine.ts';
import { DEFAULT_BUILD, type Kernel } from '../../src/kernel/kernel.ts';
import { withKhoProfile } from '../../src/kernel/build.ts';
import { isPoisoned } from '../../src/machine/memory.ts';
import { isLuoError } from '../../src/errno.ts';
import { vmalloc, vmRead, vmWrite } from '../../src/kho/vmalloc.ts';
import { KexecMetadata } from '../../src/abi/kho.ts';

const GiB = 1n << 30n;
const v1Build = withKhoProfile(DEFAULT_BUILD, 'kho-v1');

function fillPattern(seed: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 0xff; }
  return b;
}

type Item =
  | { kind: 'folio'; pa: bigint; order: number; data: Uint8Array }
  | { kind: 'pages'; pa: bigint; n: number; data: Uint8Array }
  | { kind: 'vmalloc'; desc: { first: bigint; total_pages: number; flags: number; order: number }; bytes: number; data: Uint8Array };

const pageBytes = (n: number) => n * 4096;

function preserveItem(k: Kernel, spec: { kind: number; order: number; n: number; seed: number }): Item {
  const kho = k.kho!;
  const mem = k.machine.memory;
  if (spec.kind === 0) {
    const pfn = k.alloc.allocFolio(spec.order);
    const pa = BigInt(pfn) << 12n;
    const data = fillPattern(spec.seed, pageBytes(2 ** spec.order));
    mem.write(pa, data);
    kho.preserveFolio(pa, spec.order);
    return { kind: 'folio', pa, order: spec.order, data };
  }
  if (spec.kind === 1) {
    const pfn = k.alloc.allocPages(spec.n);
    const pa = BigInt(pfn) << 12n;
    const data = fillPattern(spec.seed, pageBytes(spec.n));
    mem.write(pa, data);
    kho.preservePages(pa, spec.n);
    return { kind: 'pages', pa, n: spec.n, data };
  }
  const bytes = 1 + (spec.seed % (6 * 4096));
  const area = vmalloc(mem, k.alloc, bytes, spec.order % 2);
  const data = fillPattern(spec.seed, bytes);
  vmWrite(mem, area, 0, data);
  return { kind: 'vmalloc', desc: kho.preserveVmalloc(area), bytes, data };
}

/** Restores an item in the new kernel and checks its bytes; returns it re-preserved or dropped. */
function restoreItem(k: Kernel, it: Item): void {
  const kho = k.kho!;
  const mem = k.machine.memory;
  if (it.kind === 'folio') {
    const f = kho.restoreFolio(it.pa);
    assert.ok(f, `folio 0x${it.pa.toString(16)} restores`);
    assert.equal(f.order, it.order);
    assert.ok(Buffer.from(mem.read(it.pa, it.data.length)).equals(it.data), 'folio bytes identical');
    assert.equal(kho.restoreFolio(it.pa), null, 'second restore fails');
  } else if (it.kind === 'pages') {
    assert.ok(kho.restorePages(it.pa, it.n), 'page range restores');
    assert.ok(Buffer.from(mem.read(it.pa, it.data.length)).equals(it.data), 'range bytes identical');
    assert.equal(kho.restorePages(it.pa, it.n), false, 'second restore fails');
  } else {
    const area = kho.restoreVmalloc(it.desc);
    assert.ok(Buffer.from(vmRead(mem, area, 0, it.bytes)).equals(it.data), 'vmalloc bytes identical');
  }
}

/** The new kernel hands a restored folio or range on to the next one by preserving it again. */
function rePreserve(k: Kernel, it: Exclude<Item, { kind: 'vmalloc' }>): Item {
  if (it.kind === 'folio') k.kho!.preserveFolio(it.pa, it.order);
  else k.kho!.preservePages(it.pa, it.n);
  return it;
}

test('random workloads survive 1..5 kexecs byte for byte; everything else is poisoned', () => {
  fc.assert(fc.property(
    fc.array(fc.record({ kind: fc.integer({ min: 0, max: 2 }), order: fc.integer({ min: 0, max: 4 }), n: fc.integer({ min: 1, max: 37 }), seed: fc.integer({ min: 1, max: 2 ** 31 }) }), { minLength: 1, maxLength: 12 }),
    fc.integer({ min: 1, max: 5 }),
    fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
    (specs, rounds, drop) => {
      const m = new Machine({ ramSize: 2n * GiB });
      let items = specs.map((s) => preserveItem(m.kernel, s));
      // Unpreserve some before the first kexec: they must come back poisoned.
      const dropped = items.filter((_, i) => drop[i] && items[i]!.kind === 'folio') as Array<Extract<Item, { kind: 'folio' }>>;
      for (const d of dropped) m.kernel.kho!.unpreserveFolio(d.pa, d.order);
      items = items.filter((it) => !dropped.includes(it as never));
      const scratchFree = m.kernel.alloc.allocFolio(0); // allocated but never preserved
      m.memory.write(BigInt(scratchFree) << 12n, fillPattern(7, 4096));
      for (let r = 0; r < rounds; r++) {
        const k = m.kexec();
        assert.ok(k.handover, `round ${r}: hand-over found`);
        for (const it of items) restoreItem(k, it);
        // Not preserved (and held by the first kernel, so never its tracker pages): poisoned,
        // unless the new kernel has since allocated the page for itself.
        const poisonedOrReused = (pa: bigint) => isPoisoned(m.memory.read(pa, 4096)) || k.alloc.isAllocated(Number(pa >> 12n));
        // (Only right after the first kexec: later kernels may reuse those pages for themselves.)
        for (const d of r === 0 ? dropped : []) {
          assert.equal(k.kho!.restoreFolio(d.pa), null, 'an unpreserved folio cannot be restored');
          assert.ok(poisonedOrReused(d.pa), 'unpreserved folio is poisoned');
        }
        if (r === 0) assert.ok(poisonedOrReused(BigInt(scratchFree) << 12n), 'unpreserved page is poisoned');
        // Carry folios and ranges on to the next kernel (vmalloc areas are consumed).
        items = items.filter((it): it is Exclude<Item, { kind: 'vmalloc' }> => it.kind !== 'vmalloc').map((it) => rePreserve(k, it));
      }
    },
  ), { numRuns: 25 });
});

test('kexec-metadata: previous release and a count that grows by one per kexec', () => {
  const m = new Machine({ ramSize: GiB });
  const md = (k: Kernel) => KexecMetadata.decode(m.memory.read(k.kho!.kexecMetadataPa, KexecMetadata.size));
  assert.equal(md(m.kernel).kexec_count, 1);
  const k2 = m.kexec({ build: { ...DEFAULT_BUILD, release: '7.4.0-next' } });
  assert.equal(k2.kho!.incoming!.previousRelease, '7.3.4-luo');
  assert.equal(k2.kho!.incoming!.kexecCount, 1);
  assert.deepEqual(md(k2), { version: 1, previous_release: '7.4.0-next', kexec_count: 2 });
  const k3 = m.kexec();
  assert.equal(k3.kho!.incoming!.previousRelease, '7.4.0-next');
  assert.equal(md(k3).kexec_count, 3);
});

test('scratch areas are the same across any number of kexecs', () => {
  const m = new Machine({ ramSize: 4n * GiB });
  const first = JSON.stringify(m.kernel.scratch, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v));
  for (let i = 0; i < 4; i++) {
    const k = m.kexec();
    assert.equal(JSON.stringify(k.scratch, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v)), first);
  }
});

test('cross-profile kexec (kho-v4 -> kho-v1 and back) is refused: the new kernel boots cold and says why', () => {
  const m = new Machine({ ramSize: GiB });
  const pa = m.kernel.kho!.allocPreserve(100);
  const k1 = m.kexec({ build: v1Build });
  assert.equal(k1.handover, false);
  assert.ok(k1.log.grep(/incompatible with 'kho-v1'/).length === 1, k1.log.text());
  assert.ok(k1.log.grep(/disabling KHO revival/).length === 1);
  assert.ok(isPoisoned(m.memory.read(pa, 4096)) || m.memory.read(pa, 100).every((b) => b === 0));
  assert.throws(() => k1.kho!.retrieveSubtree('kexec-metadata'), (e) => isLuoError(e, 'ENOENT'));
  k1.kho!.finalize();
  const k2 = m.kexec({ build: DEFAULT_BUILD });
  assert.equal(k2.handover, false);
  assert.ok(k2.log.grep(/incompatible with 'kho-v4'/).length === 1);
});

test('kho-v1: no hand-over without finalize; finalize is re-entrant and sees later changes', () => {
  const m = new Machine({ ramSize: GiB, build: v1Build });
  const kho = m.kernel.kho!;
  const a = BigInt(m.kernel.alloc.allocFolio(2)) << 12n;
  m.memory.write(a, fillPattern(3, 4 * 4096));
  kho.preserveFolio(a, 2);
  assert.equal(kho.debugfs().has('out/fdt'), false, 'out/fdt appears only after finalize');
  assert.equal(new TextDecoder().decode(kho.debugfs().get('out/finalize')), '0\n');
  // kexec without finalize: preserved-memory-map is 0, so the next kernel ignores the hand-over.
  const k1 = m.kexec();
  assert.equal(k1.handover, false);
  assert.ok(k1.log.grep(/preserved-memory-map is 0/).length === 1);
  const kho1 = k1.kho!;
  const b = BigInt(k1.alloc.allocFolio(0)) << 12n;
  m.memory.write(b, fillPattern(9, 4096));
  kho1.preserveFolio(b, 0);
  kho1.finalize();
  const firstMap = kho1.memoryMapPa();
  const c = BigInt(k1.alloc.allocFolio(1)) << 12n;
  m.memory.write(c, fillPattern(11, 8192));
  kho1.preserveFolio(c, 1); // after a finalize: allowed
  kho1.unpreserveFolio(b, 0);
  kho1.finalize(); // discards the old chunks, builds fresh ones
  assert.notEqual(kho1.memoryMapPa(), 0n);
  assert.equal(new TextDecoder().decode(kho1.debugfs().get('out/finalize')), '1\n');
  void firstMap;
  const k2 = m.kexec();
  assert.ok(k2.handover, k2.log.text());
  assert.ok(k2.kho!.restoreFolio(c));
  assert.ok(Buffer.from(m.memory.read(c, 8192)).equals(fillPattern(11, 8192)));
  assert.equal(k2.kho!.restoreFolio(b), null, 'unpreserved after the first finalize: not handed over');
  assert.ok(isPoisoned(m.memory.read(b, 4096)));
});

test('a corrupt tracker means a boot without hand-over, logged with what and where', () => {
  for (const [name, corrupt] of [
    ['pointer outside RAM', (m: Machine, root: bigint) => m.memory.write(root, new Uint8Array(new BigUint64Array([1n << 45n]).buffer))],
    ['loop back to the root', (m: Machine, root: bigint) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, root, true); m.memory.write(root + 8n * 3n, b); }],
  ] as const) {
    const m = new Machine({ ramSize: GiB });
    const pa = m.kernel.kho!.allocPreserve(4096);
    m.memory.write(pa, fillPattern(5, 4096));
    const root = m.kernel.kho!.memoryMapPa();
    corrupt(m, root);
    const k = m.kexec();
    assert.equal(k.handover, false, name);
    assert.ok(k.log.grep(/failed to restore preserved memory: EINVAL: KHO radix tree/).length === 1, `${name}: ${k.log.text()}`);
    assert.throws(() => k.kho!.retrieveSubtree('kexec-metadata'), (e) => isLuoError(e, 'ENOENT'));
    assert.equal(k.kho!.restoreFolio(pa), null);
  }
});

test('KHO API errors as the kernel returns them', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  const kho = k.kho!;
  assert.throws(() => kho.allocPreserve(0), (e) => isLuoError(e, 'EINVAL'));
  assert.throws(() => kho.allocPreserve(4096 * 2048), (e) => isLuoError(e, 'E2BIG'));
  const s = k.scratch.find((a) => a.size > 0n)!;
  assert.throws(() => kho.preserveFolio(s.addr, 0), (e) => isLuoError(e, 'EINVAL') && /scratch/.test((e as Error).message));
  assert.throws(() => kho.preservePages(s.addr - 4096n, 2), (e) => isLuoError(e, 'EINVAL'));
  assert.throws(() => kho.preserveFolio(0x1000n, 1), (e) => isLuoError(e, 'EINVAL') && /aligned/.test((e as Error).message));
  const pa = kho.allocPreserve(64);
  kho.addSubtree('blob', pa, 64);
  assert.throws(() => kho.addSubtree('blob', pa, 64), (e) => isLuoError(e, 'EEXIST'));
  assert.throws(() => kho.retrieveSubtree('blob'), (e) => isLuoError(e, 'ENOENT'), 'cold boot: ENOENT');
  assert.throws(() => kho.finalize(), (e) => isLuoError(e, 'EOPNOTSUPP'));
  const before = kho.preservedPages;
  const p2 = kho.allocPreserve(3 * 4096);
  assert.equal(kho.preservedPages, before + 4);
  kho.unpreserveFree(p2);
  assert.equal(kho.preservedPages, before);
  kho.removeSubtree(pa);
  const k2 = m.kexec();
  assert.throws(() => k2.kho!.retrieveSubtree('blob'), (e) => isLuoError(e, 'ENOENT'));
  assert.throws(() => k2.kexec(), (e) => isLuoError(e, 'EINVAL'), 'no image loaded');
  assert.throws(() => k.kexecLoad(), (e) => isLuoError(e, 'EINVAL'), 'the old kernel is gone');
});

test('restore with the wrong shape fails; restoreFree returns memory to the allocator', () => {
  const m = new Machine({ ramSize: GiB });
  const kho = m.kernel.kho!;
  const pfn = m.kernel.alloc.allocPages(6);
  kho.preservePages(BigInt(pfn) << 12n, 6);
  const pa = kho.allocPreserve(4096);
  const k = m.kexec();
  assert.equal(k.kho!.restorePages(BigInt(pfn) << 12n, 5), false);
  assert.equal(k.kho!.restoreFolio((BigInt(pfn) + 1n) << 12n), null, 'not a block head');
  assert.ok(k.kho!.restorePages(BigInt(pfn) << 12n, 6));
  const free0 = k.alloc.freePagesCount();
  k.kho!.restoreFree(pa);
  assert.equal(k.alloc.freePagesCount(), free0 + 1);
  assert.throws(() => k.kho!.restoreFree(pa), (e) => isLuoError(e, 'EINVAL'));
});

test('kho=off: no KHO in that kernel, and a kexec carries nothing', () => {
  const m = new Machine({ ramSize: GiB, cmdline: 'console=ttyS0 kho=off' });
  assert.equal(m.kernel.kho, undefined);
  const k = m.kexec({ cmdline: 'console=ttyS0 kho=on' });
  assert.equal(k.handover, false);
  assert.ok(k.kho);
});

test('debugfs view: out/fdt keeps its boot-time size, scratch text, in/ after kexec', () => {
  const m = new Machine({ ramSize: GiB });
  const kho = m.kernel.kho!;
  const fdt0 = kho.debugfs().get('out/fdt')!;
  const pa = kho.allocPreserve(32);
  kho.addSubtree('test-blob', pa, 32);
  const files = kho.debugfs();
  assert.equal(files.get('out/fdt')!.length, fdt0.length, 'debugfs blob size is fixed at creation');
  assert.ok(kho.fdtTotalSize() > fdt0.length);
  const phys = new TextDecoder().decode(files.get('out/scratch_phys'));
  assert.equal(phys.trim().split('\n').length, m.kernel.scratch.length);
  assert.match(phys, /^(0x[0-9a-f]+\n)+$/);
  assert.equal(files.get('out/sub_fdts/test-blob')!.length, 32);
  const k = m.kexec();
  const inFiles = k.kho!.debugfs();
  assert.equal(inFiles.get('in/fdt')!.length, kho.fdtTotalSize());
  assert.deepEqual([...inFiles.keys()].filter((f) => f.startsWith('in/sub_fdts/')).sort(), ['in/sub_fdts/LUO', 'in/sub_fdts/kexec-metadata', 'in/sub_fdts/test-blob']);
});

test('a kexec\'d kernel allocates its early memory (the memmap) only inside the scratch areas', () => {
  const m = new Machine({ ramSize: 4n * GiB });
  const pa = m.kernel.kho!.allocPreserve(4096);
  const k = m.kexec();
  const scratch = k.scratch.filter((s) => s.size > 0n);
  const memmapSize = BigInt(m.memory.nrPages) * 64n;
  const memmap = k.memblock.reservedRegions().find((r) => r.size >= memmapSize);
  assert.ok(memmap, 'the memmap reservation exists');
  assert.ok(scratch.some((s) => memmap.base >= s.addr && memmap.base + memmap.size <= s.addr + s.size), 'inside a scratch area');
  assert.ok(k.memblock.isReserved(pa, 4096n), 'the preserved page is reserved in memblock');
  for (let i = 0; i < 200; i++) assert.notEqual(BigInt(k.alloc.allocFolio(0)) << 12n, pa, 'never handed out');
});
