/**
 * A simulated computer: physical memory that outlives every kernel booted on it, and the kernel
 * currently running. Cold boot starts the first kernel; each kexec replaces it (Kernel.kexec).
 */
import { PhysicalMemory } from '../machine/memory.ts';
import { DEFAULT_BUILD, Kernel, type KernelBuild } from './kernel.ts';

export interface MachineOptions {
  /** RAM size in bytes (address space; only touched pages cost host memory). */
  readonly ramSize: bigint;
  readonly build?: KernelBuild;
  readonly cmdline?: string;
  /** Receives every kernel log line as it is printed. */
  readonly console?: (line: string) => void;
}

export const DEFAULT_CMDLINE = 'console=ttyS0 kho=on liveupdate=on';

export class Machine {
  readonly memory: PhysicalMemory;
  kernel: Kernel;
  readonly console: ((line: string) => void) | undefined;

  constructor(opts: MachineOptions) {
    this.memory = new PhysicalMemory({ size: opts.ramSize });
    this.console = opts.console;
    this.kernel = Kernel.boot(this, opts.build ?? DEFAULT_BUILD, { cmdline: opts.cmdline ?? DEFAULT_CMDLINE }, opts.console);
  }

  /** kexec_file_load + reboot into the given build (default: the running one). */
  kexec(opts: { build?: KernelBuild; cmdline?: string } = {}): Kernel {
    if (!this.kernel.kexecLoaded || opts.build || opts.cmdline) this.kernel.kexecLoad(opts);
    return this.kernel.kexec(this.console);
  }
}
