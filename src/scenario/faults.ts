/**
 * Fault injection into a running kernel's LUO file handler (memfd-v2 by default), the way a
 * test module would wrap a handler's liveupdate_file_ops: the wrapped callback throws a LuoError
 * with the chosen errno instead of running. `finish` cannot fail in the kernel (it returns void);
 * a `finish` fault makes can_finish() say no, which LUO reports as EBUSY.
 */
import { type ErrnoName, LuoError } from '../errno.ts';
import type { Kernel } from '../kernel/kernel.ts';
import type { FileHandlerOps } from '../luo/file-handler.ts';

export const FAULT_OPS = ['preserve', 'freeze', 'retrieve', 'finish', 'unpreserve'] as const;
export type FaultOp = (typeof FAULT_OPS)[number];

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
}

export interface InjectedFault {
  readonly spec: FaultSpec;
  /** Calls that failed because of this fault. */
  readonly hits: number;
  /** Calls seen (passed or failed). */
  readonly calls: number;
  remove(): void;
}

/** Wraps one op of a registered handler of `k`. Throws ENOENT if LUO or the handler is missing. */
export function injectFault(k: Kernel, spec: FaultSpec): InjectedFault {
  const compat = spec.handler ?? k.build.abi.memfd;
  const h = k.luo?.enabled ? k.luo.fileHandlers.find((x) => x.compatible === compat) : undefined;
  if (!h) throw new LuoError('ENOENT', `no registered LUO file handler "${compat}" in this kernel${k.luo?.enabled ? '' : ' (live update is disabled)'}`);
  const ops = h.ops as FileHandlerOps;
  const state = { hits: 0, calls: 0 };
  const skip = spec.skip ?? 0;
  const fires = (): boolean => {
    state.calls++;
    if (state.calls <= skip) return false;
    if (spec.times !== undefined && state.hits >= spec.times) return false;
    state.hits++;
    return true;
  };
  const fail = (): never => {
    throw new LuoError(spec.errno, `injected ${spec.op} fault (${compat})`);
  };
  let restore: () => void;
  switch (spec.op) {
    case 'finish': {
      const orig = ops.canFinish;
      ops.canFinish = (a) => (fires() ? false : orig ? orig(a) : true);
      restore = () => {
        if (orig) ops.canFinish = orig;
        else delete ops.canFinish;
      };
      break;
    }
    case 'freeze': {
      const orig = ops.freeze;
      ops.freeze = (a) => (fires() ? fail() : orig?.(a));
      restore = () => {
        if (orig) ops.freeze = orig;
        else delete ops.freeze;
      };
      break;
    }
    default: {
      const op = spec.op;
      const orig = ops[op];
      ops[op] = (a) => (fires() ? fail() : orig(a));
      restore = () => {
        ops[op] = orig;
      };
    }
  }
  k.print('warn', `luo-fault: injecting ${spec.errno} into ${compat} ${spec.op}${skip ? ` after ${skip} call(s)` : ''}${spec.times !== undefined ? ` for ${spec.times} call(s)` : ''}`);
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
