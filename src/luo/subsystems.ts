/**
 * LUO subsystems (the seed patch "luo_subsystems: add subsystem registration"; the RFC's global
 * state machine, include/uapi/linux/liveupdate.h of soleen's RFC v1): kernel components (KVM,
 * IOMMU, drivers) that register by name and get prepare/freeze/cancel/boot/finish callbacks
 * carrying one u64 each, handed over as an FDT node compatible "subsystems-v1" with one
 * native-endian u64 property per subsystem: inside the LUO FDT, as the seed patch has it (release
 * seed-subsystems, luo_subsystems.c), or — on releases that never had subsystems — as luo's own KHO
 * subtree "subsystems", written only when a subsystem is registered.
 *
 * The global state machine, and how it meets the session flow:
 *
 *   normal --prepare--> prepared --freeze (reboot path)--> frozen --kexec--> [new kernel] updated
 *     ^                    |  cancel / a failed prepare or freeze              |
 *     +--------------------+                                                   finish
 *     +------------------------------------------------------------------------+
 *
 * - prepare: every subsystem's prepare in registration order; the first failure cancels those
 *   already prepared in reverse order and returns the error (state back to normal). It runs
 *   explicitly (an agent's "prepare" step) or implicitly at reboot when still normal.
 * - freeze: at reboot, before sessions are serialized; the same rollback: the subsystems that
 *   froze before the failing one get cancel in reverse order. If session serialization fails
 *   afterwards, every subsystem is cancelled (reverse order).
 * - updated: a kernel that received subsystem data; `boot` runs when a subsystem with that name
 *   registers (early or late) and its data stays readable with getData until finish.
 * - finish: every registered subsystem that got data has finish called; names nobody claimed are
 *   reported and their data left alone; state returns to normal.
 * Registration is allowed only in normal or updated (EBUSY otherwise).
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { Fdt } from '../fdt/ro.ts';
import { FdtSw } from '../fdt/sw.ts';

export const SUBSYSTEMS_SUBTREE = 'subsystems';
export const SUBSYSTEMS_COMPATIBLE = 'subsystems-v1';

export type LuoState = 'normal' | 'prepared' | 'frozen' | 'updated';

/** The argument every callback gets: the subsystem's name and its u64 of state. */
export interface SubsystemArgs {
  readonly name: string;
  data: bigint;
}

export interface SubsystemOps {
  prepare?(a: SubsystemArgs): void;
  freeze?(a: SubsystemArgs): void;
  cancel?(a: SubsystemArgs): void;
  boot?(a: SubsystemArgs): void;
  finish?(a: SubsystemArgs): void;
}

export interface Subsystem {
  readonly name: string;
  readonly ops: SubsystemOps;
}

interface Entry {
  readonly sub: Subsystem;
  data: bigint;
  prepared: boolean;
  booted: boolean;
}

/** Where the subsystems' data goes at the freeze, and how a cancel takes it back. */
export interface SubsystemsOut {
  publish(records: ReadonlyArray<readonly [string, bigint]>): void;
  withdraw(): void;
}

/** The KHO services the "subsystems" subtree needs. */
export interface SubsystemsKho {
  allocPreserve(size: number): bigint;
  unpreserveFree(pa: bigint): void;
  addSubtree(name: string, pa: bigint, size: number): void;
  removeSubtree(pa: bigint): void;
  page(pfn: number): Uint8Array;
}

/** The properties of a "subsystems-v1" node: compatible, then one u64 per subsystem. */
export function writeSubsystemsNode(sw: FdtSw, records: ReadonlyArray<readonly [string, bigint]>): void {
  sw.propertyString('compatible', SUBSYSTEMS_COMPATIBLE);
  for (const [name, data] of records) sw.propertyLeU64(name, data);
}

/** luo's own KHO subtree "subsystems" (releases without subsystems): written only when there are some. */
export function subtreeOut(kho: SubsystemsKho): SubsystemsOut {
  let pa = 0n;
  return {
    publish(records) {
      if (records.length === 0) return;
      const sw = new FdtSw(PAGE_SIZE);
      sw.finishReservemap();
      sw.beginNode('');
      writeSubsystemsNode(sw, records);
      sw.endNode();
      sw.finish();
      const blob = sw.blob();
      const at = kho.allocPreserve(PAGE_SIZE);
      kho.page(Number(at >> 12n)).set(blob);
      try {
        kho.addSubtree(SUBSYSTEMS_SUBTREE, at, blob.length);
      } catch (err) {
        kho.unpreserveFree(at);
        throw err;
      }
      pa = at;
    },
    withdraw() {
      if (pa === 0n) return;
      kho.removeSubtree(pa);
      kho.unpreserveFree(pa);
      pa = 0n;
    },
  };
}

/** Decodes an incoming "subsystems" FDT into name -> u64 (EINVAL naming what is wrong). */
export function decodeSubsystemsFdt(blob: Uint8Array): Map<string, bigint> {
  const fdt = Fdt.open(blob);
  if (!fdt.nodeCheckCompatible(0, SUBSYSTEMS_COMPATIBLE)) throw new LuoError('EINVAL', `subsystems subtree is not "${SUBSYSTEMS_COMPATIBLE}"`);
  return subsystemsOfNode(fdt, 0);
}

/** The name -> u64 properties of a subsystems node at `off` (EINVAL for a value that is not a u64). */
export function subsystemsOfNode(fdt: Fdt, off: number): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const p of fdt.properties(off)) {
    if (p.name === 'compatible') continue;
    if (p.value.length !== 8) throw new LuoError('EINVAL', `subsystem "${p.name}": ${p.value.length}-byte value, expected a u64`);
    out.set(p.name, new DataView(p.value.buffer, p.value.byteOffset, 8).getBigUint64(0, true));
  }
  return out;
}

export class Subsystems {
  private readonly entries: Entry[] = [];
  private stateValue: LuoState;
  constructor(
    private readonly enabled: () => boolean,
    private readonly out: SubsystemsOut | undefined,
    private readonly incoming: ReadonlyMap<string, bigint>,
    private readonly log: (msg: string) => void,
  ) {
    this.stateValue = incoming.size > 0 ? 'updated' : 'normal';
  }

  get state(): LuoState {
    return this.stateValue;
  }

  /** Registered subsystems' names, in registration order. */
  get names(): string[] {
    return this.entries.map((e) => e.sub.name);
  }

  /** What the previous kernel handed over, by name (empty after a cold boot or a finish). */
  get incomingData(): ReadonlyMap<string, bigint> {
    return this.stateValue === 'updated' ? this.incoming : new Map();
  }

  /** The registered subsystem with this name, if any. */
  find(name: string): Subsystem | undefined {
    return this.entries.find((e) => e.sub.name === name)?.sub;
  }

  /** Register by unique name: EBUSY outside normal/updated, EEXIST for a name or object twice. */
  register(sub: Subsystem): void {
    if (!this.enabled()) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    if (this.stateValue !== 'normal' && this.stateValue !== 'updated') throw new LuoError('EBUSY', `cannot register subsystems while ${this.stateValue}`);
    if (!sub.name || sub.name.includes('\0') || sub.name.length > 31) throw new LuoError('EINVAL', `bad subsystem name "${sub.name}"`);
    if (this.entries.some((e) => e.sub === sub)) throw new LuoError('EEXIST', `subsystem "${sub.name}" is already registered`);
    if (this.entries.some((e) => e.sub.name === sub.name)) throw new LuoError('EEXIST', `a subsystem named "${sub.name}" is already registered`);
    const e: Entry = { sub, data: 0n, prepared: false, booted: false };
    this.entries.push(e);
    const data = this.incoming.get(sub.name);
    if (this.stateValue === 'updated' && data !== undefined) {
      const a = { name: sub.name, data };
      sub.ops.boot?.(a);
      e.booted = true;
    }
  }

  /** ENOENT for an unknown subsystem; EBUSY outside normal/updated. */
  unregister(sub: Subsystem): void {
    if (!this.enabled()) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    const i = this.entries.findIndex((e) => e.sub === sub);
    if (i < 0) throw new LuoError('ENOENT', `subsystem "${sub.name}" is not registered`);
    if (this.stateValue !== 'normal' && this.stateValue !== 'updated') throw new LuoError('EBUSY', `cannot unregister subsystems while ${this.stateValue}`);
    this.entries.splice(i, 1);
  }

  /** The incoming u64 of a subsystem (ENOENT when the previous kernel left none). */
  getData(name: string): bigint {
    const v = this.incoming.get(name);
    if (v === undefined || this.stateValue !== 'updated') throw new LuoError('ENOENT', `no incoming data for subsystem "${name}"`);
    return v;
  }

  /** normal -> prepared, two-phase. */
  prepare(): void {
    if (this.stateValue !== 'normal') throw new LuoError('EINVAL', `cannot prepare while ${this.stateValue}`);
    const done: Entry[] = [];
    for (const e of this.entries) {
      const a = { name: e.sub.name, data: e.data };
      try {
        e.sub.ops.prepare?.(a);
      } catch (err) {
        this.cancelEntries(done);
        throw err;
      }
      e.data = a.data;
      e.prepared = true;
      done.push(e);
    }
    this.stateValue = 'prepared';
  }

  private cancelEntries(list: Entry[]): void {
    for (const e of [...list].reverse()) {
      const a = { name: e.sub.name, data: e.data };
      e.sub.ops.cancel?.(a);
      e.prepared = false;
      e.data = 0n;
    }
    this.stateValue = 'normal';
  }

  /** prepared (or frozen) -> normal: cancel every prepared subsystem in reverse order. */
  cancel(): void {
    if (this.stateValue !== 'prepared' && this.stateValue !== 'frozen') throw new LuoError('EINVAL', `nothing to cancel while ${this.stateValue}`);
    this.out?.withdraw();
    this.cancelEntries(this.entries.filter((e) => e.prepared));
  }

  /**
   * The reboot path: prepare if still normal, freeze everyone, then write the subsystems FDT as
   * a KHO subtree. A failure cancels every prepared subsystem (reverse order) and is returned.
   */
  freeze(): void {
    if (this.stateValue === 'updated') this.finish();
    if (this.stateValue === 'normal') this.prepare();
    const frozen: Entry[] = [];
    const fail = (err: unknown): never => {
      // As the seed patch does for a failed freeze: cancel goes to the subsystems that froze
      // (reverse order); the one that failed and those after it never froze and get no cancel.
      this.cancelEntries(frozen);
      for (const e of this.entries) e.prepared = false;
      throw err;
    };
    for (const e of this.entries) {
      const a = { name: e.sub.name, data: e.data };
      try {
        e.sub.ops.freeze?.(a);
      } catch (err) {
        fail(err);
      }
      e.data = a.data;
      frozen.push(e);
    }
    try {
      this.out?.publish(this.entries.map((e) => [e.sub.name, e.data] as const));
    } catch (err) {
      fail(err instanceof LuoError ? err : new LuoError('ENOMEM', `subsystems subtree: ${err instanceof Error ? err.message : String(err)}`));
    }
    this.stateValue = 'frozen';
  }

  /** updated -> normal: finish for every subsystem that got data; report the unclaimed. */
  finish(): void {
    if (this.stateValue !== 'updated') throw new LuoError('EINVAL', `nothing to finish while ${this.stateValue}`);
    for (const e of this.entries) {
      if (!e.booted) continue;
      e.sub.ops.finish?.({ name: e.sub.name, data: this.incoming.get(e.sub.name)! });
      e.booted = false;
    }
    for (const name of this.incoming.keys()) {
      if (!this.entries.some((e) => e.sub.name === name)) this.log(`subsystem "${name}" from the previous kernel is unknown here; its data is left alone`);
    }
    this.stateValue = 'normal';
  }

  /** Names the previous kernel handed data for that no registered subsystem claims (yet). */
  unclaimed(): string[] {
    return [...this.incoming.keys()].filter((n) => !this.entries.some((e) => e.sub.name === n));
  }
}
