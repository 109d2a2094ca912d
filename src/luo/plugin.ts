/**
 * File handler plugins: the kernel's liveupdate_file_handler (and the FLBs a handler's files
 * share) as a module a user writes for their own fd type, loaded into every kernel of a build.
 * This is the contract; kernel/plugins.ts registers plugins at a kernel's late init and
 * plugins/load.ts imports them from files. docs/handlers.md explains it with two examples.
 */
import { ERRNO, type ErrnoName, isLuoError, LuoError } from '../errno.ts';
import type { Flb } from './flb.ts';
import type { FileHandlerOps, KernelFile } from './file-handler.ts';

/** The KHO services a handler uses to hand memory over (kexec_handover.h). */
export interface PluginKho {
  /** kho_alloc_preserve: zeroed memory of `size` bytes (a power-of-two folio), preserved; its physical address. */
  allocPreserve(size: number): bigint;
  /** kho_unpreserve_free: the outgoing side gives it back (unpreserve, a cancelled preserve). */
  unpreserveFree(pa: bigint): void;
  /** kho_restore_free: the incoming side is done with what the previous kernel preserved. */
  restoreFree(pa: bigint): void;
  /** Reads physical memory (the new kernel reading what the old one wrote). */
  read(pa: bigint, len: number): Uint8Array;
  /** Writes physical memory (the old kernel filling what it preserved). */
  write(pa: bigint, bytes: Uint8Array): void;
}

/** What a plugin sees of the kernel it is loaded into. */
export interface HandlerKernel {
  /** `uname -r` of this kernel. */
  readonly release: string;
  readonly kho: PluginKho;
  /** liveupdate_flb_get_incoming: the FLB's object restored from the previous kernel (retrieved on first use). */
  flbIncoming(flb: Flb): unknown;
  /** liveupdate_flb_get_outgoing: the FLB's live object in this kernel (made at the first preserve of a file that uses it). */
  flbOutgoing(flb: Flb): unknown;
  /** A line in this kernel's log, prefixed with the handler's compatible. */
  log(msg: string): void;
}

/** What `create` returns: the callbacks of one kernel's instance, and the FLBs its files depend on. */
export interface PluginInstance {
  readonly ops: FileHandlerOps;
  /** Registered with the handler (liveupdate_register_flb), in this order. */
  readonly flbs?: readonly Flb[];
}

/**
 * A plugin's open file may also answer read(2) and write(2) (the driver's f_op->read/write): a C
 * program that opened `/dev/luo/<compatible>` through `luo serve` reads and writes it this way.
 * Without them, read and write are EINVAL, as vfs_read says of a file without those operations.
 */
export interface PluginFileIo {
  /** At most `count` bytes; throw an errno-named Error (EAGAIN, EINVAL...) to fail. */
  read?(count: number): Uint8Array;
  /** Bytes accepted. */
  write?(bytes: Uint8Array): number;
}

export interface HandlerPlugin {
  /** liveupdate_file_handler.compatible: at most 47 bytes; what the next kernel matches files by. */
  readonly compatible: string;
  /** Called once per kernel, at its late init (a module_init registering the handler). */
  create(kernel: HandlerKernel): PluginInstance;
  /** For tools: makes an open file of this plugin's kind from JSON arguments (a scenario's `plugin-open`). */
  open?(args: unknown): KernelFile;
  /** For tools: what a file holds, as JSON (a scenario's `plugin-check` compares it). */
  describe?(file: KernelFile): unknown;
  /** Where it was loaded from (set by the loader). */
  readonly source?: string;
}

/** Runs plugin code: an error naming an errno keeps it, anything else but a LuoError becomes EIO naming `what`. */
export function pluginCall<R>(what: string, f: () => R): R {
  try {
    return f();
  } catch (e) {
    if (isLuoError(e)) throw e;
    const named = (e as { errno?: unknown } | null)?.errno;
    const message = e instanceof Error ? ((e as { detail?: unknown }).detail as string | undefined) ?? e.message : String(e);
    if (typeof named === 'string' && Object.hasOwn(ERRNO, named)) throw new LuoError(named as ErrnoName, `${what}: ${message}`, { cause: e });
    throw new LuoError('EIO', `${what} failed: ${message}`, { cause: e });
  }
}

