/**
 * Fault injection into a running kernel, the way a test module wraps what the kernel calls: a
 * file handler's liveupdate_file_ops (memfd-v2 by default), an FLB's ops, a subsystem's
 * callbacks, or KHO's preservation and allocation (ENOMEM at the Nth call). The wrapped callback
 * throws a LuoError with the chosen errno instead of running, and LUO rolls back as the kernel
 * does. Callbacks that return bool fail by saying no: `finish` makes can_finish() refuse (LUO
 * reports EBUSY), `can-preserve` makes can_preserve() refuse (ENOENT: no handler takes the file).
 */
import { type ErrnoName, LuoError } from '../errno.ts';
import type { Kernel } from '../kernel/kernel.ts';
import type { FileHandlerOps } from '../luo/file-handler.ts';
import type { FlbOps } from '../luo/flb.ts';
import type { SubsystemOps } from '../luo/subsystems.ts';

export const FAULT_OPS = [
  'preserve', 'freeze', 'retrieve', 'finish', 'unpreserve', 'can-preserve',
  'flb-preserve', 'flb-retrieve',
  'subsystem-prepare', 'subsystem-freeze',
  'kho-preserve', 'kho-alloc',
] as const;
export type FaultOp = (typeof FAULT_OPS)[number];

/** The errno a bool-returning callback's refusal comes out as. */
export const FIXED_ERRNO: Partial<Record<FaultOp, ErrnoName>> = { finish: 'EBUSY', 'can-preserve': 'ENOENT' };

export interface FaultSpec {
  readonly op: FaultOp;
  /** The errno the callback fails with (for `finish`: EBUSY, what LUO reports). */
  readonly errno: ErrnoName;
  /** Let this many calls through first (default 0). */
  readonly skip?: number;
  /** Fail this many calls, then behave again (default: every call). */
  readonly times?: number;
  /** The handler's compatible string (default "memfd-v2"). */
  readonly handler?: string;
  /** flb-* faults: the FLB's compatible. */
  readonly flb?: string;
  /** subsystem-* faults: the subsystem's name. */
  readonly subsystem?: string;
}

export interface InjectedFault {
  readonly spec: FaultSpec;
  /** Calls that failed because of this fault. */
  readonly hits: number;
  /** Calls seen (passed or failed). */
  readonly calls: number;
  remove(): void;
}

/** Swaps `obj[key]` for `wrapped`; the returned function puts the original back. */
function swap<T extends object, K extends keyof T>(obj: T, key: K, wrapped: T[K]): () => void {
  const own = Object.hasOwn(obj, key);
  const orig = obj[key];
  obj[key] = wrapped;
  return () => {
    if (own) obj[key] = orig;
    else delete obj[key];
  };
}

/**
 * Wraps one callback of `k`: ENOENT if what it names (handler, FLB, subsystem, KHO) is not there.
 * Every fault counts calls: `skip` pass first, then `times` (default: all) fail.
 */
export function injectFault(k: Kernel, spec: FaultSpec): InjectedFault {
  const state = { hits: 0, calls: 0 };
  const skip = spec.skip ?? 0;
  const fires = (): boolean => {
    state.calls++;
    if (state.calls <= skip) return false;
    if (spec.times !== undefined && state.hits >= spec.times) return false;
    state.hits++;
    return true;
  };
  let target: string;
  const fail = (): never => {
    throw new LuoError(spec.errno, `injected ${spec.op} fault (${target})`);
  };
  const luo = k.luo?.enabled ? k.luo : undefined;
  const missing = (what: string): never => {
    throw new LuoError('ENOENT', `no ${what} in this kernel${k.luo?.enabled ? '' : ' (live update is disabled)'}`);
  };
  let restore: () => void;
  if (spec.op === 'kho-preserve' || spec.op === 'kho-alloc') {
    const kho = k.kho ?? missing('KHO');
    target = 'KHO';
    if (spec.op === 'kho-alloc') {
      const orig = kho.allocPreserve.bind(kho);
      restore = swap(kho, 'allocPreserve', (size: number) => (fires() ? fail() : orig(size)));
    } else {
      // every preservation goes through one of these (alloc-and-preserve, vmalloc and blocks too)
      const folio = kho.preserveFolio.bind(kho);
      const pages = kho.preservePages.bind(kho);
      const r1 = swap(kho, 'preserveFolio', (pa: bigint, order: number) => (fires() ? fail() : folio(pa, order)));
      const r2 = swap(kho, 'preservePages', (pa: bigint, n: number) => (fires() ? fail() : pages(pa, n)));
      restore = () => {
        r2();
        r1();
      };
    }
  } else if (spec.op === 'flb-preserve' || spec.op === 'flb-retrieve') {
    const flb = (spec.flb !== undefined ? luo?.flbs.find(spec.flb) : undefined) ?? missing(`registered FLB "${spec.flb ?? '(name one with flb:)'}"`);
    target = `FLB ${flb.compatible}`;
    const key: keyof FlbOps = spec.op === 'flb-preserve' ? 'preserve' : 'retrieve';
    const orig = flb.ops[key].bind(flb.ops);
    restore = swap(flb.ops, key, (a) => (fires() ? fail() : orig(a)));
  } else if (spec.op === 'subsystem-prepare' || spec.op === 'subsystem-freeze') {
    const sub = (spec.subsystem !== undefined ? luo?.subsystems.find(spec.subsystem) : undefined) ?? missing(`registered subsystem "${spec.subsystem ?? '(name one with subsystem:)'}"`);
    target = `subsystem ${sub.name}`;
    const key: keyof SubsystemOps = spec.op === 'subsystem-prepare' ? 'prepare' : 'freeze';
    const orig = sub.ops[key]?.bind(sub.ops);
    restore = swap(sub.ops, key, (a) => (fires() ? fail() : orig?.(a)));
  } else {
    const compat = spec.handler ?? k.build.abi.memfd;
    const h = luo?.fileHandlers.find((x) => x.compatible === compat) ?? missing(`registered LUO file handler "${compat}"`);
    target = compat;
    const ops = h.ops as FileHandlerOps;
    switch (spec.op) {
      case 'finish': {
        const orig = ops.canFinish?.bind(ops);
        restore = swap(ops, 'canFinish', (a) => (fires() ? false : orig ? orig(a) : true));
        break;
      }
      case 'can-preserve': {
        const orig = ops.canPreserve.bind(ops);
        restore = swap(ops, 'canPreserve', (hh, f) => (fires() ? false : orig(hh, f)));
        break;
      }
      case 'freeze': {
        const orig = ops.freeze?.bind(ops);
        restore = swap(ops, 'freeze', (a) => (fires() ? fail() : orig?.(a)));
        break;
      }
      default: {
        const op = spec.op;
        const orig = ops[op].bind(ops);
        restore = swap(ops, op, (a) => (fires() ? fail() : orig(a)));
      }
    }
  }
  k.print('warn', `luo-fault: injecting ${spec.errno} into ${target} ${spec.op}${skip ? ` after ${skip} call(s)` : ''}${spec.times !== undefined ? ` for ${spec.times} call(s)` : ''}`);
  return {
    spec,
    get hits() {
      return state.hits;
    },
    get calls() {
      return state.calls;
    },
    remove: () => restore(),
  };
}
