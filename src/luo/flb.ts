/**
 * File-lifecycle-bound (FLB) global data (kernel/liveupdate/luo_flb.c): one object shared by every
 * preserved file of the handlers it is linked to. Its preserve runs with the first such file and
 * its unpreserve with the last; the u64 it returns is handed over in the FLB page as
 * {name, data, count}; in the next kernel it is retrieved on first use and finished when the last
 * file that depended on it finishes.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { LIVEUPDATE_HNDL_COMPAT_LENGTH, LUO_FLB_MAX, LuoFlbHeaderSer, LuoFlbSer } from '../abi/luo.ts';
import type { KhoMemory } from '../kho/memory.ts';
import type { FileHandler } from './file-handler.ts';
import type { FlbHooks } from './file.ts';

/** liveupdate_flb_op_args: `data` is the handed-over u64, `obj` the live object. */
export interface FlbOpArgs {
  readonly flb: Flb;
  data: bigint;
  obj: unknown;
}

export interface FlbOps {
  preserve(a: FlbOpArgs): void;
  unpreserve(a: FlbOpArgs): void;
  retrieve(a: FlbOpArgs): void;
  finish(a: FlbOpArgs): void;
}

export interface Flb {
  /** At most 47 bytes (48 with the NUL). */
  readonly compatible: string;
  readonly ops: FlbOps;
}

interface FlbState {
  readonly flb: Flb;
  users: number;
  out: { count: number; data: bigint; obj: unknown };
  inc: { count: number; data: bigint; obj: unknown; retrieved: boolean; finished: boolean };
}

/** One record of the incoming FLB page. */
export interface FlbRecord {
  readonly name: string;
  readonly data: bigint;
  readonly count: bigint;
}

/** Reads and checks an incoming FLB page (pgcnt 1, at most 63 records). */
export function readFlbPage(mem: KhoMemory, pa: bigint, ramPages: number): FlbRecord[] {
  if (pa === 0n) return [];
  if (pa % BigInt(PAGE_SIZE) !== 0n || pa >> 12n >= BigInt(ramPages)) throw new LuoError('EINVAL', `FLB header at 0x${pa.toString(16)} is not a page inside RAM`);
  const page = mem.page(Number(pa >> 12n));
  const hdr = LuoFlbHeaderSer.decode(page);
  if (hdr.pgcnt !== 1n) throw new LuoError('EINVAL', `FLB header says ${hdr.pgcnt} pages (luo-v5 writes 1)`);
  if (hdr.count > BigInt(LUO_FLB_MAX)) throw new LuoError('EINVAL', `FLB header counts ${hdr.count} records (at most ${LUO_FLB_MAX})`);
  const out: FlbRecord[] = [];
  for (let i = 0; i < Number(hdr.count); i++) {
    const r = LuoFlbSer.decode(page, LuoFlbHeaderSer.size + i * LuoFlbSer.size);
    out.push({ name: r.name, data: r.data, count: r.count });
  }
  return out;
}

/** What tools show of one registered FLB (luo status, the dashboard). */
export interface FlbView {
  readonly name: string;
  /** The file handlers it is registered with. */
  readonly handlers: string[];
  /** Preserved files using it now (its outgoing count), and the data its preserve returned. */
  readonly outgoing: { readonly files: number; readonly data: bigint };
  /** What the previous kernel handed over for it, and how far this kernel got with it. */
  readonly incoming: { readonly files: number; readonly data: bigint; readonly state: 'waiting' | 'retrieved' | 'finished' } | null;
}

/** An FlbView as JSON (data as 0x-hex). */
export interface FlbViewJson {
  name: string;
  handlers: string[];
  outgoing: { files: number; data: string };
  incoming: { files: number; data: string; state: 'waiting' | 'retrieved' | 'finished' } | null;
}

export function flbViewJson(v: FlbView): FlbViewJson {
  const hex = (x: bigint) => `0x${x.toString(16)}`;
  return { name: v.name, handlers: v.handlers, outgoing: { files: v.outgoing.files, data: hex(v.outgoing.data) }, incoming: v.incoming ? { ...v.incoming, data: hex(v.incoming.data) } : null };
}

export class FlbRegistry implements FlbHooks {
  /** Global registration order (what the FLB page is written in). */
  private readonly global: FlbState[] = [];
  private readonly byFlb = new Map<Flb, FlbState>();
  private readonly links = new Map<FileHandler, Flb[]>();

  private incoming: readonly FlbRecord[] = [];
  /** The previous kernel left an FLB page (luo_ser.flbs_pa was set). */
  private incomingActive = false;

  constructor(
    private readonly enabled: () => boolean,
    private readonly isHandlerRegistered: (h: FileHandler) => boolean,
  ) {}

  /** The records the previous kernel handed over (set once at early boot). */
  setIncoming(records: readonly FlbRecord[]): void {
    this.incoming = records;
    this.incomingActive = true;
  }

  get incomingRecords(): readonly FlbRecord[] {
    return this.incoming;
  }

  /** The registered FLB with this compatible, if any. */
  find(compatible: string): Flb | undefined {
    return this.global.find((s) => s.flb.compatible === compatible)?.flb;
  }

  private state(flb: Flb): FlbState {
    let s = this.byFlb.get(flb);
    if (!s) {
      s = { flb, users: 0, out: { count: 0, data: 0n, obj: undefined }, inc: { count: 0, data: 0n, obj: undefined, retrieved: false, finished: false } };
      this.byFlb.set(flb, s);
    }
    return s;
  }

  /** liveupdate_register_flb. */
  register(h: FileHandler, flb: Flb): void {
    if (!this.enabled()) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    const o = flb.ops as Partial<FlbOps>;
    if (!o.preserve || !o.unpreserve || !o.retrieve || !o.finish) throw new LuoError('EINVAL', `FLB "${flb.compatible}" lacks a required callback`);
    if (!this.isHandlerRegistered(h)) throw new LuoError('EINVAL', `file handler "${h.compatible}" is not registered`);
    const list = this.links.get(h) ?? [];
    if (list.includes(flb)) throw new LuoError('EEXIST', `FLB "${flb.compatible}" is already linked to handler "${h.compatible}"`);
    const s = this.state(flb);
    if (s.users === 0) {
      if (this.global.length === LUO_FLB_MAX) throw new LuoError('ENOSPC', `already ${LUO_FLB_MAX} FLBs registered`);
      if (this.global.some((g) => g.flb.compatible === flb.compatible)) throw new LuoError('EEXIST', `an FLB with compatible "${flb.compatible}" is already registered`);
      if (flb.compatible.length >= LIVEUPDATE_HNDL_COMPAT_LENGTH) throw new LuoError('EINVAL', `FLB compatible "${flb.compatible}" is longer than ${LIVEUPDATE_HNDL_COMPAT_LENGTH - 1} bytes`);
      this.global.push(s);
    }
    s.users++;
    list.push(flb);
    this.links.set(h, list);
  }

  /** liveupdate_unregister_flb: ENOENT when not linked to this handler. */
  unregister(h: FileHandler, flb: Flb): void {
    if (!this.enabled()) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    const list = this.links.get(h) ?? [];
    const i = list.indexOf(flb);
    if (i < 0) throw new LuoError('ENOENT', `FLB "${flb.compatible}" is not linked to handler "${h.compatible}"`);
    list.splice(i, 1);
    const s = this.state(flb);
    if (--s.users === 0) this.global.splice(this.global.indexOf(s), 1);
  }

  /** True when the handler has FLBs linked (a handler cannot be unregistered then). */
  hasLinks(h: FileHandler): boolean {
    return (this.links.get(h)?.length ?? 0) > 0;
  }

  // ---- FlbHooks, called by file sets ----

  filePreserve(h: FileHandler): void {
    const list = this.links.get(h) ?? [];
    const done: FlbState[] = [];
    try {
      for (const flb of list) {
        const s = this.state(flb);
        if (s.out.count === 0) {
          const a: FlbOpArgs = { flb, data: 0n, obj: undefined };
          flb.ops.preserve(a);
          s.out.data = a.data;
          s.out.obj = a.obj;
        }
        s.out.count++;
        done.push(s);
      }
    } catch (e) {
      for (const s of done.reverse()) this.unpreserveOne(s);
      throw e;
    }
  }

  private unpreserveOne(s: FlbState): void {
    if (--s.out.count === 0) {
      s.flb.ops.unpreserve({ flb: s.flb, data: s.out.data, obj: s.out.obj });
      s.out.data = 0n;
      s.out.obj = undefined;
    }
  }

  fileUnpreserve(h: FileHandler): void {
    for (const flb of [...(this.links.get(h) ?? [])].reverse()) this.unpreserveOne(this.state(flb));
  }

  fileFinish(h: FileHandler): void {
    for (const flb of [...(this.links.get(h) ?? [])].reverse()) {
      const s = this.state(flb);
      if (s.inc.finished) continue;
      if (!s.inc.retrieved) {
        try {
          this.retrieveOne(s);
        } catch {
          continue; // the kernel WARNs and carries on
        }
      }
      if (--s.inc.count <= 0) {
        flb.ops.finish({ flb, data: s.inc.data, obj: s.inc.obj });
        s.inc.data = 0n;
        s.inc.obj = undefined;
        s.inc.finished = true;
      }
    }
  }

  private retrieveOne(s: FlbState): void {
    if (s.inc.finished) throw new LuoError('ENODATA', `FLB "${s.flb.compatible}" has already finished`);
    if (s.inc.retrieved) return;
    if (!this.incomingActive) throw new LuoError('ENODATA', 'no incoming FLB data');
    const rec = this.incoming.find((r) => r.name === s.flb.compatible);
    if (!rec) throw new LuoError('ENOENT', `no incoming data for FLB "${s.flb.compatible}"`);
    const a: FlbOpArgs = { flb: s.flb, data: rec.data, obj: undefined };
    s.flb.ops.retrieve(a);
    s.inc.data = rec.data;
    s.inc.count = Number(rec.count);
    s.inc.obj = a.obj;
    s.inc.retrieved = true;
  }

  /** liveupdate_flb_get_incoming: the live object, retrieving it on first use. */
  getIncoming(flb: Flb): unknown {
    if (!this.enabled()) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    const s = this.state(flb);
    if (s.inc.obj === undefined) this.retrieveOne(s);
    return s.inc.obj;
  }

  /** liveupdate_flb_get_outgoing. */
  getOutgoing(flb: Flb): unknown {
    if (!this.enabled()) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    return this.state(flb).out.obj;
  }

  /** Every registered FLB, in registration order: its handlers, its files now, what came in. */
  get views(): FlbView[] {
    const handlers = new Map<Flb, string[]>();
    for (const [h, flbs] of this.links) for (const f of flbs) handlers.set(f, [...(handlers.get(f) ?? []), h.compatible]);
    return this.global.map((s) => {
      const rec = this.incoming.find((r) => r.name === s.flb.compatible);
      const state = s.inc.finished ? 'finished' : s.inc.retrieved ? 'retrieved' : 'waiting';
      return {
        name: s.flb.compatible,
        handlers: handlers.get(s.flb) ?? [],
        outgoing: { files: s.out.count, data: s.out.data },
        incoming: rec ? { files: s.inc.retrieved ? s.inc.count : Number(rec.count), data: rec.data, state } : null,
      };
    });
  }

  outgoingCount(flb: Flb): number {
    return this.state(flb).out.count;
  }

  /** luo_flb_serialize: records of FLBs in use, in registration order, and the header count. */
  serialize(page: Uint8Array): void {
    page.fill(0);
    let i = 0;
    for (const s of this.global) {
      if (s.out.count <= 0) continue;
      LuoFlbSer.encode({ name: s.flb.compatible, data: s.out.data, count: BigInt(s.out.count) }, page, LuoFlbHeaderSer.size + i * LuoFlbSer.size);
      i++;
    }
    LuoFlbHeaderSer.encode({ pgcnt: 1n, count: BigInt(i) }, page);
  }
}
