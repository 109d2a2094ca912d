/**
 * Random corruptions of a real hand-over, and the property every one must satisfy: the new kernel
 * ends in a typed KernelPanic (panic policy) or boots, with or without the hand-over or
 * /dev/liveupdate; then everything userspace can do with what it got (open, retrieve, read,
 * finish, another kexec) answers with errnos, never a raw exception.
 *
 * Targets: every structure page the old kernel kept (root FDT, kexec-metadata, tracker pages,
 * luo_ser, session and file blocks, FLB page, memfd descriptors and folio arrays; guest data pages
 * are recognised by their fill and skipped), the scratch array segment, and the boot parameters.
 */
import { DEFAULT_BUILD, type BootParams, Kernel } from '../../src/kernel/kernel.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { KernelPanic } from '../../src/luo/core.ts';
import { LuoError } from '../../src/errno.ts';
import { MFD_ALLOW_SEALING, F_SEAL_GROW } from '../../src/handlers/memfd-file.ts';
import { luoCreateSession, luoRetrieveSession, luoSessionFinish, luoSessionPreserveFd, luoSessionRetrieveFd, O_RDWR, processesOf } from '../../src/uapi/index.ts';
import { Rng } from '../../src/conform/program.ts';
import { Fdt } from '../../src/fdt/ro.ts';

const RAM = 1n << 30n;
const DATA = 0xd7;
const SESSIONS: Record<string, number[]> = { alpha: [1, 2, 3], beta: [7], gamma: [] };

export interface Handover {
  readonly machine: Machine;
  readonly params: BootParams;
  /** Page frame numbers of structure pages (not guest data), the root FDT's first. */
  readonly structPfns: number[];
  /** Every property value of the root FDT: its physical address and length. */
  readonly fdtProps: ReadonlyArray<{ readonly name: string; readonly pa: bigint; readonly len: number }>;
}

/** A machine right after its kernel's reboot path: sessions with memfds preserved, memory poisoned. */
export function makeHandover(policy: 'panic' | 'disable'): Handover {
  const m = new Machine({ ramSize: RAM, cmdline: `console=ttyS0 kho=on liveupdate=on${policy === 'disable' ? ' luo.restore_fail=disable' : ''}` });
  const p = processesOf(m.kernel).spawn();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  for (const [name, tokens] of Object.entries(SESSIONS)) {
    const s = luoCreateSession(p, dev, name);
    for (const t of tokens) {
      const fd = p.memfdCreate(`m${t}`, t === 2 ? MFD_ALLOW_SEALING : 0);
      if (t !== 3) {
        p.ftruncate(fd, t * 4096 + 100);
        p.pwrite(fd, new Uint8Array(t * 4096).fill(DATA), 0);
      }
      if (t === 2) p.fcntl(fd, 1033, F_SEAL_GROW);
      if (luoSessionPreserveFd(p, s, fd, t) !== 0) throw new Error(`preserve ${t}: ${p.errno}`);
    }
  }
  const k = m.kernel;
  k.kexecLoad();
  const h = k.prepareKexec();
  const pfns = new Set<number>();
  for (const r of h.keep) {
    for (let pfn = Number(r.start >> 12n); pfn < Number(r.end >> 12n); pfn++) {
      const page = m.memory.page(pfn);
      if (page.every((b) => b === DATA) || page.every((b) => b === 0)) continue;
      pfns.add(pfn);
    }
  }
  const fdtPfn = Number(h.params.kho!.fdtAddr >> 12n);
  pfns.delete(fdtPfn);
  const page = m.memory.read(h.params.kho!.fdtAddr, 4096);
  const fdt = Fdt.open(page);
  const fdtProps: Array<{ name: string; pa: bigint; len: number }> = [];
  fdt.walkNodes((off, _d, _n, path) => {
    fdt.forEachProperty(off, (name, value) => fdtProps.push({ name: `${path}:${name}`, pa: h.params.kho!.fdtAddr + BigInt(value.byteOffset - page.byteOffset), len: value.length }));
  });
  return { machine: m, params: h.params, structPfns: [fdtPfn, ...[...pfns].sort((a, b) => a - b)], fdtProps };
}

/** One corruption, described for the failure message. */
export interface Mutation {
  readonly what: string;
  readonly params: BootParams;
}

const POINTERS = (rng: Rng, structPfns: number[]): bigint[] => {
  const other = BigInt(rng.pick(structPfns)) << 12n;
  const page = BigInt(rng.pick(structPfns)) << 12n;
  return [
    0n, RAM, RAM + 4096n, RAM - 8n, 1n << 53n, (1n << 53n) + 4096n, 1n << 63n, (1n << 64n) - 1n, (1n << 64n) - 4096n,
    page + 4096n - BigInt(1 + rng.int(16)), other, other + BigInt(rng.int(4096)), BigInt(rng.next()) << 12n,
  ];
};
const U32S = [0, 1, 2, 0xff, 0x1000, 0x7fffffff, 0x80000000, 0xffffffff, 819, 10000];

/**
 * Applies one random corruption (to memory, or to `params`, the boot parameters so far) and says
 * what it was. Memory is found through the hand-over's own parameters.
 */
export function mutate(h: Handover, params: BootParams, rng: Rng): Mutation {
  const mem = h.machine.memory;
  const kho = h.params.kho!;
  const kind = rng.int(20);
  if (kind < 2) {
    // the boot parameters
    const ptrs = POINTERS(rng, h.structPfns);
    const field = rng.pick(['fdtAddr', 'fdtSize', 'scratchAddr', 'scratchSize', 'image.addr', 'image.size'] as const);
    const v = field.endsWith('Size') || field === 'image.size' ? rng.pick([0n, 1n, 16n, 4096n, 16n * 2000n, RAM, (1n << 64n) - 1n, 1n << 53n]) : rng.pick(ptrs);
    const next: BootParams = field.startsWith('image')
      ? { ...params, image: { ...(params.image ?? { addr: 0x1000000n, size: 32n << 20n }), [field === 'image.addr' ? 'addr' : 'size']: v } }
      : { ...params, kho: { ...params.kho!, [field]: v } };
    return { what: `boot parameter ${field} = 0x${v.toString(16)}`, params: next };
  }
  if (kind < 4) {
    // the scratch array: tiny, misplaced, overlapping or zero areas
    const n = Number(kho.scratchSize / 16n);
    const i = rng.int(n);
    const addr = rng.pick([0n, RAM, RAM - 4096n, 0x1000000n, BigInt(rng.pick(h.structPfns)) << 12n, 1n << 53n]);
    const size = rng.pick([0n, 4096n, 8192n, 1n << 20n, RAM, 1n << 60n]);
    mem.writeU64(kho.scratchAddr + BigInt(i * 16), addr);
    mem.writeU64(kho.scratchAddr + BigInt(i * 16 + 8), size);
    return { what: `scratch area ${i} = 0x${addr.toString(16)}+0x${size.toString(16)}`, params };
  }
  if (kind < 6) {
    // a root FDT property value: KHO's u64 properties hold native (little-endian) values, FDT cells
    // are big-endian; both are tried
    const prop = rng.pick(h.fdtProps);
    const bytes = new Uint8Array(prop.len);
    const dv = new DataView(bytes.buffer);
    const le = rng.int(4) > 0;
    let v: bigint;
    if (prop.len === 8) dv.setBigUint64(0, (v = rng.pick(POINTERS(rng, h.structPfns))), le);
    else if (prop.len === 4) dv.setUint32(0, Number((v = BigInt(rng.pick(U32S)))), !le);
    else {
      v = BigInt(rng.int(prop.len + 1));
      if (prop.len) bytes.set(mem.read(prop.pa, prop.len));
      if (v < BigInt(prop.len)) bytes[Number(v)] = rng.int(256);
    }
    mem.write(prop.pa, bytes);
    return { what: `root FDT ${prop.name} (${prop.len} bytes) = 0x${v.toString(16)}`, params };
  }
  const pfn = kind < 8 ? h.structPfns[0]! : rng.pick(h.structPfns);
  const base = BigInt(pfn) << 12n;
  const where = kind < 8 ? 'root FDT' : `page 0x${base.toString(16)}`;
  const m = rng.int(3);
  if (m === 0) {
    const off = rng.int(4096);
    const v = rng.int(256);
    mem.write(base + BigInt(off), Uint8Array.of(v));
    return { what: `${where} +0x${off.toString(16)} byte = 0x${v.toString(16)}`, params };
  }
  if (m === 1) {
    const off = rng.int(512) * 8;
    const v = rng.pick(POINTERS(rng, h.structPfns));
    mem.writeU64(base + BigInt(off), v);
    return { what: `${where} +0x${off.toString(16)} u64 = 0x${v.toString(16)}`, params };
  }
  const off = rng.int(1024) * 4;
  const v = rng.pick(U32S);
  mem.writeU32(base + BigInt(off), v);
  // FDT cells are big-endian: also try the value as the FDT sees it
  if (kind < 8 && rng.int(2)) mem.write(base + BigInt(off), Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
  return { what: `${where} +0x${off.toString(16)} u32 = 0x${v.toString(16)}`, params };
}

/** 'early-panic': the kernel could not set up memory (any policy); 'panic': LUO's restore failed (panic policy). */
export type Outcome = 'early-panic' | 'panic' | 'no-handover' | 'no-liveupdate' | 'restored' | 'partial';

/**
 * Boots the new kernel on the corrupted hand-over and uses what it got. Returns the outcome, or
 * throws the first escape (anything but KernelPanic out of boot, anything but an errno after it).
 */
export function bootAndUse(h: Handover, params: BootParams): Outcome {
  let k: Kernel;
  try {
    k = Kernel.boot(h.machine, DEFAULT_BUILD, params);
  } catch (e) {
    if (e instanceof KernelPanic) return /not syncing: early boot:/.test(e.message) ? 'early-panic' : 'panic';
    throw e;
  }
  h.machine.kernel = k;
  if (!k.handover) return afterwards(h, 'no-handover');
  if (!k.luo?.deviceRegistered) return afterwards(h, 'no-liveupdate');
  const p = processesOf(k).spawn();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  if (dev < 0) return afterwards(h, 'no-liveupdate');
  let all = true;
  for (const [name, tokens] of Object.entries(SESSIONS)) {
    const s = luoRetrieveSession(p, dev, name);
    if (s < 0) {
      all = false;
      continue;
    }
    for (const t of tokens) {
      const fd = luoSessionRetrieveFd(p, s, t);
      if (fd < 0) {
        all = false;
        continue;
      }
      const st = p.fstat(fd);
      const buf = new Uint8Array(8192);
      if (st === -1 || p.pread(fd, buf, 0) < 0) all = false;
      p.close(fd);
    }
    if (luoSessionFinish(p, s) < 0) all = false;
    p.close(s);
  }
  p.exit(0);
  return afterwards(h, all ? 'restored' : 'partial');
}

/** The kernel that booted must still work: a new session, a memfd, another kexec. */
function afterwards(h: Handover, outcome: Outcome): Outcome {
  const k = h.machine.kernel;
  if (k.luo?.deviceRegistered) {
    const p = processesOf(k).spawn();
    const dev = p.open('/dev/liveupdate', O_RDWR);
    if (dev >= 0) {
      const s = luoCreateSession(p, dev, 'after');
      const fd = p.memfdCreate('after', 0);
      p.pwrite(fd, 'still works', 0);
      if (s >= 0) luoSessionPreserveFd(p, s, fd, 1);
      p.fork();
      p.exit(0);
    }
  }
  try {
    h.machine.kexec();
  } catch (e) {
    if (e instanceof KernelPanic || e instanceof LuoError) return outcome;
    throw e;
  }
  return outcome;
}
