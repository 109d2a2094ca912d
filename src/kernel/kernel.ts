/**
 * A simulated Linux kernel on a Machine: early boot (memblock, KHO discovery and the tracker walk,
 * scratch areas), the page allocator, KHO init, then kexec load/execute. A kexec boots a brand-new
 * Kernel on the same memory given only what x86's boot protocol carries (struct kho_data and the
 * command line); memory nobody preserved is poisoned first. Mirrors init/main.c, mm/mm_init.c and
 * kernel/kexec_core.c at the level live update needs.
 */
import { LuoError } from '../errno.ts';
import { KhoScratch, PAGE_SIZE } from '../abi/kho.ts';
import { abiLabel, type KernelBuild, khoProfileOf } from './build.ts';
import { declaredSubsystem, registerPlugins } from './plugins.ts';
import { Kho, type ScratchArea } from '../kho/kho.ts';
import { type KhoBootData, khoMemoryInit, khoPopulate, type Populated } from '../kho/incoming.ts';
import type { PageStamps } from '../kho/stamps.ts';
import { Memblock, MEMBLOCK_RSRV_KERN, MEMBLOCK_RSRV_NOINIT } from '../machine/memblock.ts';
import { PageAllocator } from '../machine/page-alloc.ts';
import { DEFAULT_SCRATCH_CONFIG, parseKhoScratch, reserveScratch, type ScratchConfig } from '../machine/scratch.ts';
import { KernelPanic, Luo, type RestoreFailPolicy } from '../luo/core.ts';
import { memfdContextOf, memfdHandlerOf, type MemfdContext, type ShmemHuge } from '../handlers/index.ts';
import { boolParam, parseCmdline, type Cmdline } from './cmdline.ts';
import { KernelLog, type LogLevel } from './log.ts';
import type { Machine } from './machine.ts';

export { DEFAULT_BUILD, type KernelBuild } from './build.ts';

/** What the boot protocol hands a kernel. */
export interface BootParams {
  readonly cmdline: string;
  readonly kho?: KhoBootData;
  /** Where the image was placed (x86 loads at 16 MiB on a cold boot; kexec_file puts it in scratch). */
  readonly image?: { readonly addr: bigint; readonly size: bigint };
}

/** Runs an early-boot step: an errno there is a panic (nothing can be allocated or placed yet). */
function earlyBoot(step: () => void): void {
  try {
    step();
  } catch (e) {
    if (e instanceof LuoError) throw new KernelPanic(`early boot: ${e.message}`, { cause: e });
    throw e;
  }
}

/** x86_64 LOAD_PHYSICAL_ADDR. */
const COLD_IMAGE_ADDR = 0x1000000n;
/** sizeof(struct page) on x86_64: the memmap memblock reserves for every page of RAM. */
const STRUCT_PAGE_SIZE = 64n;
const SZ_64K = 0x10000n;

export interface KexecImage {
  readonly build: KernelBuild;
  readonly cmdline: string;
  readonly image: { addr: bigint; size: bigint };
  /** The kexec segment holding a copy of the scratch array (kho_fill_kimage). */
  readonly scratchSeg?: { addr: bigint; size: bigint };
}

/** Called on the reboot path before anything is torn down; an error refuses the reboot. */
export type RebootHook = (k: Kernel) => void;

export type KernelState = 'running' | 'kexeced';

/** Phases of the kexec that booted a kernel: the blackout as the machine saw it. */
export interface KexecStats {
  /** Reboot hooks: LUO freezing files and serializing sessions. */
  readonly serializeMs: number;
  /** Writing the scratch segment and poisoning memory nobody preserved. */
  readonly handoverMs: number;
  /** The new kernel's boot: memblock, the KHO tracker walk and reserve, LUO early startup. */
  readonly bootMs: number;
  readonly preservedPages: number;
  readonly trackerPages: number;
  readonly keptRanges: number;
}

/** What prepareKexec leaves for the next kernel: its build, boot parameters and the memory it needs. */
export interface KexecHandover {
  readonly build: KernelBuild;
  readonly params: BootParams;
  /** Physical ranges that must survive (preserved blocks, tracker pages, scratch segment). */
  readonly keep: ReadonlyArray<{ readonly start: bigint; readonly end: bigint }>;
  readonly stats: Omit<KexecStats, 'bootMs'>;
}

export class Kernel {
  readonly log: KernelLog;
  readonly cmdline: Cmdline;
  readonly memblock: Memblock;
  readonly alloc: PageAllocator;
  readonly kho: Kho | undefined;
  /** The Live Update Orchestrator (absent when `liveupdate` is off). */
  readonly luo: Luo | undefined;
  /** What memfd_create needs in this kernel (its memory and page allocator, the shmem THP mode). */
  memfd: MemfdContext;
  readonly scratch: readonly ScratchArea[];
  /** The previous kernel's hand-over was found and its memory reserved. */
  readonly handover: boolean;
  private loaded: KexecImage | undefined;
  private readonly rebootHooks: RebootHook[] = [];
  state: KernelState = 'running';
  readonly bootTimeMs: number;
  /** How the kexec that booted this kernel went (absent after a cold boot). */
  kexecStats: KexecStats | undefined;

  private constructor(readonly machine: Machine, readonly build: KernelBuild, readonly params: BootParams, echo?: (l: string) => void) {
    const t0 = performance.now();
    this.log = new KernelLog(echo);
    this.cmdline = parseCmdline(params.cmdline);
    this.print('notice', `Linux version ${build.release} (luo simulated kernel, ${abiLabel(build.abi)})`);
    this.print('info', `Command line: ${this.cmdline.raw}`);
    const mem = machine.memory;
    const ramPages = mem.nrPages;
    const khoOn = boolParam(this.cmdline, 'kho', build.khoEnableDefault);

    // --- early boot: memblock ---
    const mb = new Memblock();
    mb.addMemory(0n, mem.size);
    mb.reserve(0n, 0x100000n); // the first 1 MiB (real-mode and BIOS areas on x86)
    let populated: Populated | undefined;
    if (khoOn && params.kho) {
      populated = khoPopulate(mem, ramPages, params.kho, build.abi.kho, (l, m) => this.print(l, `KHO: ${m}`));
      if (populated) {
        mb.markScratch(populated.scratch);
        mb.reserve(params.kho.scratchAddr, params.kho.scratchSize);
        mb.setScratchOnly(true);
      }
    } else if (params.kho) {
      this.print('info', 'KHO: disabled on the command line; ignoring the hand-over');
    }
    const image = params.image ?? { addr: COLD_IMAGE_ADDR, size: BigInt(build.imageSize) };
    // A kernel that cannot place itself or its memmap dies in early boot, whatever LUO's policy:
    // memblock_alloc failures there panic ("Failed to allocate ... for mem_map").
    earlyBoot(() => {
      if (image.size <= 0n || image.addr < 0n || image.addr + image.size > mem.size) {
        throw new LuoError('EINVAL', `kernel image 0x${image.addr.toString(16)}+0x${image.size.toString(16)} is not inside RAM`);
      }
      mb.reserve(image.addr, image.size, MEMBLOCK_RSRV_KERN);
      // The memmap (struct page array) is the bulk of early kernel memory.
      mb.alloc(BigInt(ramPages) * STRUCT_PAGE_SIZE, BigInt(PAGE_SIZE));
    });

    // --- kho_memory_init ---
    let incoming: { magic: PageStamps; blocks: number } | undefined;
    let scratch: ScratchArea[] = [];
    if (populated) {
      scratch = populated.scratch;
      incoming = khoMemoryInit(mem, ramPages, populated, khoProfileOf(build), (l, m) => this.print(l, `KHO: ${m}`));
      if (incoming) {
        // memblock_reserve + memblock_reserved_mark_noinit for every preserved block.
        mb.reservePageBlocks(incoming.magic.pfns, incoming.magic.orders, incoming.magic.count, MEMBLOCK_RSRV_NOINIT);
        this.print('info', `KHO: reserved ${incoming.blocks} preserved block(s)`);
      }
    } else if (khoOn) {
      let cfg: ScratchConfig = DEFAULT_SCRATCH_CONFIG;
      const arg = this.cmdline.params.get('kho_scratch');
      if (arg !== undefined) {
        try {
          cfg = parseKhoScratch(arg);
        } catch (e) {
          this.print('warn', `Malformed early option 'kho_scratch': ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      try {
        scratch = reserveScratch(mb, cfg).areas;
      } catch (e) {
        this.print('warn', `KHO: ${e instanceof Error ? e.message : String(e)}; disabling kexec handover`);
      }
    }
    mb.setScratchOnly(false);
    this.memblock = mb;
    this.scratch = scratch;

    // --- memblock_free_all: the page allocator takes over ---
    this.alloc = PageAllocator.fromMemblock(mb);

    // --- kho_init (fs_initcall) ---
    let kho: Kho | undefined;
    try {
      kho = khoOn && scratch.length > 0
        ? new Kho(mem, this.alloc, { profile: khoProfileOf(build), compatible: build.abi.kho.compatible, scratch, release: build.release, ramPages, log: (l, m) => this.print(l, `KHO: ${m}`) },
          populated && incoming ? { root: populated.root, fdtPa: populated.fdtPa, scratchPa: populated.scratchPa, magic: incoming.magic, blocks: incoming.blocks } : undefined)
        : undefined;
    } catch (e) {
      // kho_init: an allocation failure disables KHO (and with it LUO); the boot goes on.
      if (!(e instanceof LuoError)) throw e;
      this.print('err', `KHO: failed to initialize: ${e.errno} (${e.message}); kexec handover disabled`);
      kho = undefined;
    }
    this.kho = kho;
    this.handover = incoming !== undefined && kho !== undefined;

    // --- LUO: early startup (may panic under the default policy), then late init ---
    const luoOn = boolParam(this.cmdline, 'liveupdate', false);
    const policyArg = this.cmdline.params.get('luo.restore_fail');
    const policy: RestoreFailPolicy = policyArg === 'disable' ? 'disable' : 'panic';
    this.luo = luoOn
      ? new Luo(this.kho, mem, { enabled: true, policy, ramPages, abi: build.abi.luo, uapi: build.abi.uapi, testFlbs: build.liveupdateTest === true, log: (l, m) => this.print(l, m) })
      : undefined;
    if (this.luo?.enabled) {
      this.onReboot(() => this.luo!.reboot());
      // mm/memfd_luo.c registers its handler in a late initcall.
      this.luo.registerFileHandler(memfdHandlerOf(this, { compatible: build.abi.memfd, log: (l, m) => this.print(l, `memfd_luo: ${m}`) }));
      if (build.handlers?.length && this.kho) {
        registerPlugins(build.handlers, { luo: this.luo, kho: this.kho, memory: mem, release: build.release, print: (l, m) => this.print(l, m) });
      }
      for (const d of build.subsystems ?? []) this.luo.subsystems.register(declaredSubsystem(d, (m) => this.print('info', m)));
    }
    this.memfd = memfdContextOf(this);
    this.bootTimeMs = performance.now() - t0;
  }

  /** Boots a kernel on `machine` (a cold boot when `params.kho` is absent). */
  static boot(machine: Machine, build: KernelBuild, params: BootParams, echo?: (l: string) => void): Kernel {
    return new Kernel(machine, build, params, echo);
  }

  print(level: LogLevel | 'err' | 'warn' | 'info', msg: string): void {
    this.log.print(level, msg);
  }

  /**
   * `echo MODE > /sys/kernel/mm/transparent_hugepage/shmem_enabled`: whether new memfd pages come
   * as 2 MiB folios. Returns the previous mode.
   */
  setShmemEnabled(mode: ShmemHuge): ShmemHuge {
    const prev = this.memfd.shmemHuge ?? 'never';
    this.memfd = { ...this.memfd, shmemHuge: mode };
    return prev;
  }

  onReboot(hook: RebootHook): void {
    this.rebootHooks.push(hook);
  }

  private assertRunning(): void {
    if (this.state !== 'running') throw new LuoError('EINVAL', 'this kernel has been replaced by kexec');
  }

  /**
   * kexec_file_load: the image goes into a KHO scratch area (kho_locate_mem_hole); with KHO on, a
   * copy of the scratch array becomes its own segment, 64 KiB aligned, top-down (kho_fill_kimage).
   * Allowed at any time: the root FDT's address is stable from boot.
   */
  kexecLoad(opts: { build?: KernelBuild; cmdline?: string; handover?: boolean } = {}): KexecImage {
    this.assertRunning();
    const build = opts.build ?? this.build;
    const size = BigInt(build.imageSize);
    const areas = this.scratch.filter((s) => s.size > 0n);
    let image: { addr: bigint; size: bigint } | undefined;
    let seg: { addr: bigint; size: bigint } | undefined;
    // handover: false is a kexec that hands nothing over (no KHO segment): the next kernel starts as after a cold boot
    if (this.kho && opts.handover !== false) {
      const segSize = BigInt(this.scratch.length * KhoScratch.size);
      // Largest scratch area: image at its bottom (2 MiB aligned), scratch array at its top.
      const area = [...areas].sort((a, b) => (a.size < b.size ? 1 : -1))[0];
      if (!area || area.size < size + SZ_64K * 2n) throw new LuoError('ENOMEM', 'kexec_file_load: no KHO scratch area can hold the image');
      image = { addr: area.addr, size };
      seg = { addr: ((area.addr + area.size - segSize) / SZ_64K) * SZ_64K, size: segSize };
    } else {
      image = { addr: COLD_IMAGE_ADDR, size };
    }
    this.loaded = { build, cmdline: opts.cmdline ?? this.cmdline.raw, image, ...(seg ? { scratchSeg: seg } : {}) };
    this.print('info', `kexec_file: loaded ${build.release} (${abiLabel(build.abi)}) at 0x${image.addr.toString(16)}`);
    return this.loaded;
  }

  get kexecLoaded(): KexecImage | undefined {
    return this.loaded;
  }

  /**
   * reboot(LINUX_REBOOT_CMD_KEXEC): runs the reboot hooks (LUO freezes and serializes there; an
   * error refuses the reboot and changes nothing), then hands over and boots the loaded image.
   */
  kexec(echo?: (l: string) => void): Kernel {
    const h = this.prepareKexec();
    const next = Kernel.boot(this.machine, h.build, h.params, echo);
    next.kexecStats = { ...h.stats, bootMs: next.bootTimeMs };
    this.machine.kernel = next;
    return next;
  }

  /**
   * The reboot path up to the jump into the new kernel: hooks, the scratch segment, poisoning of
   * everything not kept. Returns what the next kernel is booted with (kexec() boots it here; the
   * daemon saves `keep` as an image and boots it in a new process). This kernel is gone after it.
   */
  prepareKexec(): KexecHandover {
    this.assertRunning();
    const img = this.loaded;
    if (!img) throw new LuoError('EINVAL', 'kexec: no image loaded (kexec_file_load first)');
    const t0 = performance.now();
    for (const hook of this.rebootHooks) hook(this);
    const t1 = performance.now();
    this.print('info', 'kexec_core: Starting new kernel');
    const mem = this.machine.memory;
    let boot: KhoBootData | undefined;
    const keep: Array<{ start: bigint; end: bigint }> = [];
    if (this.kho && img.scratchSeg) {
      const arr = new Uint8Array(Number(img.scratchSeg.size));
      this.scratch.forEach((s, i) => KhoScratch.encode({ addr: s.addr, size: s.size }, arr, i * KhoScratch.size));
      mem.write(img.scratchSeg.addr, arr);
      for (const r of this.handoverRanges()) keep.push(r);
      keep.push({ start: img.scratchSeg.addr, end: img.scratchSeg.addr + img.scratchSeg.size });
      boot = { fdtAddr: this.kho.rootFdtPa, fdtSize: BigInt(PAGE_SIZE), scratchAddr: img.scratchSeg.addr, scratchSize: img.scratchSeg.size };
    }
    mem.poisonExcept(keep);
    const t2 = performance.now();
    this.state = 'kexeced';
    return {
      build: img.build,
      params: { cmdline: img.cmdline, image: img.image, ...(boot ? { kho: boot } : {}) },
      keep,
      stats: {
        serializeMs: t1 - t0,
        handoverMs: t2 - t1,
        preservedPages: this.kho?.preservedPages ?? 0,
        trackerPages: this.kho?.metadataPfns().length ?? 0,
        keptRanges: keep.length,
      },
    };
  }

  /** Physical ranges the next kernel needs: preserved blocks and the tracker's pages, merged. */
  handoverRanges(): Array<{ start: bigint; end: bigint }> {
    if (!this.kho) return [];
    const { starts, ends } = this.kho.sortedBlockRanges();
    const out: Array<{ start: bigint; end: bigint }> = [];
    for (let i = 0; i < starts.length;) {
      const s = starts[i]!;
      let e = ends[i]!;
      for (i++; i < starts.length && starts[i]! <= e; i++) if (ends[i]! > e) e = ends[i]!;
      out.push({ start: BigInt(s) * 4096n, end: BigInt(e) * 4096n });
    }
    return out;
  }
}
