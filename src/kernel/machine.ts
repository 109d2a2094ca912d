/**
 * A simulated computer: physical memory that outlives every kernel booted on it, and the kernel
 * currently running. Cold boot starts the first kernel; each kexec replaces it (Kernel.kexec).
 */
import { PhysicalMemory } from '../machine/memory.ts';
import { KernelPanic } from '../luo/core.ts';
import { type BootParams, DEFAULT_BUILD, Kernel, type KernelBuild } from './kernel.ts';

export interface MachineOptions {
  /** RAM size in bytes (address space; only touched pages cost host memory). */
  readonly ramSize: bigint;
  readonly build?: KernelBuild;
  readonly cmdline?: string;
  /** Receives every kernel log line as it is printed. */
  readonly console?: (line: string) => void;
  /**
   * Boot on this memory (e.g. loaded from an image) instead of fresh RAM; with `boot`, the first
   * kernel starts with these parameters (a hand-over) instead of a cold boot.
   */
  readonly memory?: PhysicalMemory;
  readonly boot?: BootParams;
}

export const DEFAULT_CMDLINE = 'console=ttyS0 kho=on liveupdate=on';

export class Machine {
  readonly memory: PhysicalMemory;
  kernel: Kernel;
  readonly console: ((line: string) => void) | undefined;
  /** Set when the last boot panicked: the machine must be cold-booted. */
  panic: KernelPanic | undefined;
  private readonly defaultBuild: KernelBuild;
  private readonly defaultCmdline: string;

  constructor(opts: MachineOptions) {
    if (opts.memory && opts.memory.size !== opts.ramSize) throw new Error(`Machine: memory is ${opts.memory.size} bytes, ramSize says ${opts.ramSize}`);
    this.memory = opts.memory ?? new PhysicalMemory({ size: opts.ramSize });
    this.console = opts.console;
    this.defaultBuild = opts.build ?? DEFAULT_BUILD;
    this.defaultCmdline = opts.cmdline ?? DEFAULT_CMDLINE;
    this.kernel = Kernel.boot(this, this.defaultBuild, opts.boot ?? { cmdline: this.defaultCmdline }, opts.console);
  }

  /**
   * kexec_file_load + reboot into the given build (default: the running one). A panic of the new
   * kernel is recorded in `panic` and rethrown; `coldBoot()` then brings the machine back.
   * `handover: false` hands nothing over: a fresh kernel without a power cycle.
   */
  kexec(opts: { build?: KernelBuild; cmdline?: string; handover?: boolean } = {}): Kernel {
    if (this.panic) throw this.panic;
    if (!this.kernel.kexecLoaded || opts.build || opts.cmdline || opts.handover === false) this.kernel.kexecLoad(opts);
    try {
      return this.kernel.kexec(this.console);
    } catch (e) {
      if (e instanceof KernelPanic) this.panic = e;
      throw e;
    }
  }

  /** Power cycle: every byte of RAM is lost (poisoned) and a fresh kernel boots without hand-over. */
  coldBoot(opts: { build?: KernelBuild; cmdline?: string } = {}): Kernel {
    this.memory.poisonExcept([]);
    this.panic = undefined;
    this.kernel = Kernel.boot(this, opts.build ?? this.defaultBuild, { cmdline: opts.cmdline ?? this.defaultCmdline }, this.console);
    return this.kernel;
  }
}
