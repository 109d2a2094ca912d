/**
 * Loads a build's file handler plugins (and makes its declared subsystems) in a booted kernel, as
 * its late initcalls would register built-in handlers and subsystems: each plugin gets a view of this kernel (KHO, FLB objects, the log), its
 * callbacks are registered with LUO and its FLBs linked to it. A plugin is user code: an error it
 * throws with an `errno` property naming an errno (e.g. 'EINVAL') is reported with that errno,
 * anything else that is not a LuoError becomes EIO naming the handler and the callback, so a
 * broken plugin fails the operation the kernel would fail, and nothing else.
 */
import { isLuoError, LuoError } from '../errno.ts';
import { pluginCall } from '../luo/plugin.ts';
import type { Luo } from '../luo/core.ts';
import type { Flb, FlbOps } from '../luo/flb.ts';
import type { FileHandler, FileHandlerOps } from '../luo/file-handler.ts';
import type { HandlerKernel, HandlerPlugin } from '../luo/plugin.ts';
import type { Kho } from '../kho/kho.ts';
import type { PhysicalMemory } from '../machine/memory.ts';
import type { Subsystem } from '../luo/subsystems.ts';
import type { SubsystemDecl } from './build.ts';

/** `f` run through pluginCall. */
function guarded<A extends unknown[], R>(what: string, f: (...a: A) => R): (...a: A) => R {
  return (...a: A): R => pluginCall(what, () => f(...a));
}

function guardOps(compatible: string, ops: FileHandlerOps): FileHandlerOps {
  const name = (cb: string): string => `handler "${compatible}" ${cb}`;
  const out: FileHandlerOps = {
    // a can_preserve that throws accepts nothing (the kernel's would return false)
    canPreserve: (h, f) => {
      try {
        return ops.canPreserve(h, f) === true;
      } catch {
        return false;
      }
    },
    preserve: guarded(name('preserve'), ops.preserve.bind(ops)),
    unpreserve: guarded(name('unpreserve'), ops.unpreserve.bind(ops)),
    retrieve: guarded(name('retrieve'), ops.retrieve.bind(ops)),
    finish: guarded(name('finish'), ops.finish.bind(ops)),
    ...(ops.freeze ? { freeze: guarded(name('freeze'), ops.freeze.bind(ops)) } : {}),
    ...(ops.unfreeze ? { unfreeze: guarded(name('unfreeze'), ops.unfreeze.bind(ops)) } : {}),
    ...(ops.canFinish ? { canFinish: guarded(name('can_finish'), ops.canFinish.bind(ops)) } : {}),
    ...(ops.getId ? { getId: guarded(name('get_id'), ops.getId.bind(ops)) } : {}),
  };
  return out;
}

function guardFlb(flb: Flb): Flb {
  const name = (cb: string): string => `FLB "${flb.compatible}" ${cb}`;
  const ops: FlbOps = {
    preserve: guarded(name('preserve'), flb.ops.preserve.bind(flb.ops)),
    unpreserve: guarded(name('unpreserve'), flb.ops.unpreserve.bind(flb.ops)),
    retrieve: guarded(name('retrieve'), flb.ops.retrieve.bind(flb.ops)),
    finish: guarded(name('finish'), flb.ops.finish.bind(flb.ops)),
  };
  return { ...flb, ops };
}

/** Registers every plugin of the build with this kernel's LUO. A plugin that cannot be set up is logged and skipped. */
export function registerPlugins(
  plugins: readonly HandlerPlugin[],
  k: { readonly luo: Luo; readonly kho: Kho; readonly memory: PhysicalMemory; readonly release: string; print(level: 'info' | 'err', msg: string): void },
): void {
  for (const p of plugins) {
    // FLB objects are looked up by the registered (guarded) FLB: map the plugin's own to it
    const registered = new Map<Flb, Flb>();
    const view: HandlerKernel = {
      release: k.release,
      kho: {
        allocPreserve: (size) => k.kho.allocPreserve(size),
        unpreserveFree: (pa) => k.kho.unpreserveFree(pa),
        restoreFree: (pa) => k.kho.restoreFree(pa),
        read: (pa, len) => k.memory.read(pa, len),
        write: (pa, bytes) => k.memory.write(pa, bytes),
      },
      flbIncoming: (flb) => k.luo.flbs.getIncoming(registered.get(flb) ?? flb),
      flbOutgoing: (flb) => k.luo.flbs.getOutgoing(registered.get(flb) ?? flb),
      log: (msg) => k.print('info', `${p.compatible}: ${msg}`),
    };
    try {
      const inst = guarded(`handler plugin "${p.compatible}" create`, () => p.create(view))();
      const handler: FileHandler = { compatible: p.compatible, ops: guardOps(p.compatible, inst.ops) };
      k.luo.registerFileHandler(handler);
      for (const flb of inst.flbs ?? []) {
        const g = guardFlb(flb);
        registered.set(flb, g);
        k.luo.flbs.register(handler, g);
      }
      k.print('info', `luo: registered file handler plugin "${p.compatible}"${p.source ? ` (${p.source})` : ''}`);
    } catch (e) {
      k.print('err', `luo: file handler plugin "${p.compatible}" not registered: ${isLuoError(e) ? e.detail : e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/**
 * A declared subsystem (KernelBuild.subsystems): prepare and freeze hand over its data, boot and
 * finish say what came back in the log. A declared failure makes prepare or freeze fail with its
 * errno (the first `times` calls in this kernel); inject-fault (subsystem-prepare/-freeze) too.
 */
export function declaredSubsystem(d: SubsystemDecl, log: (msg: string) => void): Subsystem {
  let failures = 0;
  const maybeFail = (op: 'prepare' | 'freeze'): void => {
    const f = d.fail;
    if (!f || f.op !== op || (f.times !== undefined && failures >= f.times)) return;
    failures++;
    log(`luo: subsystem "${d.name}" ${op} fails with ${f.errno} (declared, failure ${failures}${f.times !== undefined ? ` of ${f.times}` : ''})`);
    throw new LuoError(f.errno, `subsystem "${d.name}" ${op} failed (declared)`);
  };
  return {
    name: d.name,
    ops: {
      prepare(a) {
        maybeFail('prepare');
        a.data = d.data;
      },
      freeze(a) {
        maybeFail('freeze');
        a.data = d.data;
      },
      boot(a) {
        log(`luo: subsystem "${d.name}" booted with data 0x${a.data.toString(16)}`);
      },
      finish(a) {
        log(`luo: subsystem "${d.name}" finished (data 0x${a.data.toString(16)})`);
      },
    },
  };
}

