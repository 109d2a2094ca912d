/**
 * The Live Update Orchestrator of one kernel (kernel/liveupdate/luo_core.c): early startup reads
 * the incoming `luo_ser` blob (KHO raw subtree "LUO", compat "luo-v5"), late init registers the
 * outgoing one, the reboot path serializes sessions and FLBs, and the /dev/liveupdate device
 * (exclusive open, deserialization on first open with a cached result) gates userspace.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { compatLen, LUO_ABI_COMPATIBLE, LUO_SUBTREE_NAME, LuoFlbHeaderSer, LuoSerV2, luoSerLayout } from '../abi/luo.ts';
import type { Kho } from '../kho/kho.ts';
import type { LuoAbi, UapiAbi } from '../abi/releases.ts';
import { type LuoFdtV1, readLuoFdtV1, readLuoFdtV2, readSubsystemsNode, SUBSYSTEMS_NODE, type SubsystemsNode, writeLuoFdtV1, writeLuoFdtV2 } from './fdt-v1.ts';
import type { KhoMemory } from '../kho/memory.ts';
import type { FileHandler, KernelFile } from './file-handler.ts';
import type { FileContext } from './file.ts';
import { type Flb, FlbRegistry, readFlbPage } from './flb.ts';
import { testFlbs } from './test-flbs.ts';
import { entryLayoutOf } from './layout.ts';
import { type LuoSession, SessionManager } from './session.ts';
import { decodeSubsystemsFdt, SUBSYSTEMS_COMPATIBLE, SUBSYSTEMS_SUBTREE, Subsystems, type SubsystemsOut, subtreeOut } from './subsystems.ts';

/** What a kernel does when the incoming LUO state cannot be restored. */
export type RestoreFailPolicy = 'panic' | 'disable';

/** Raised on a restore failure under the `panic` policy: the boot fails, a cold boot is needed. */
export class KernelPanic extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`Kernel panic - not syncing: ${message}`, options);
    this.name = 'KernelPanic';
  }
}

export interface LuoOptions {
  readonly enabled: boolean;
  readonly policy: RestoreFailPolicy;
  readonly ramPages: number;
  readonly log: (level: 'info' | 'warn' | 'err', msg: string) => void;
  /** The LUO format this kernel writes and accepts (default: a raw "luo-v5" luo_ser). */
  readonly abi?: LuoAbi;
  /** The uAPI of /dev/liveupdate and session fds (default: with GET_NAME and direction checks). */
  readonly uapi?: UapiAbi;
  /** CONFIG_LIVEUPDATE_TEST: the test module's three FLBs are linked to every handler that registers. */
  readonly testFlbs?: boolean;
}

const LUO_V5: LuoAbi = { format: 'raw', compatible: LUO_ABI_COMPATIBLE, sessions: 'blocks', files: 'blocks', blockPages: 1 };

export class Luo {
  private readonly handlers: FileHandler[] = [];
  readonly sessions: SessionManager;
  readonly flbs: FlbRegistry;
  readonly subsystems: Subsystems;
  private enabledFlag: boolean;
  /** The misc device is registered (late init succeeded and LUO is enabled). */
  deviceRegistered = false;
  private deviceOpen = false;
  /** liveupdate_num of the incoming kernel state (0 on a cold boot). */
  readonly incomingNum: number;
  /** Physical address of the incoming FLB header page (0 when none). */
  readonly incomingFlbsPa: bigint;
  private outSerPa = 0n;
  private flbPagePa = 0n;
  /** What the FDT era's outgoing LUO FDT holds (rewritten when the seeds' subsystems node changes). */
  private fdtOut: LuoFdtV1 | undefined;
  readonly restoreFailure: LuoError | undefined;
  /** The LUO format of this kernel's code. */
  readonly abi: LuoAbi;
  /** CONFIG_LIVEUPDATE_TEST's FLBs, made with the first handler. */
  private testFlbSet: Flb[] | undefined;
  readonly uapi: UapiAbi;

  constructor(private readonly kho: Kho | undefined, private readonly mem: KhoMemory, private readonly opts: LuoOptions) {
    this.abi = opts.abi ?? LUO_V5;
    this.uapi = opts.uapi ?? { getName: true, directionChecks: true };
    // a raw luo_ser needs raw KHO subtrees (blob-size), which kho-v1 and kho-v2 roots cannot describe;
    // the FDT era's LUO is a sub-FDT, which every KHO can (kho-v1 by "fdt", later by preserved-data)
    const fits = kho !== undefined && (this.abi.format !== 'raw' || kho.profile === 'kho-v4');
    this.enabledFlag = opts.enabled && fits;
    if (opts.enabled && !kho) opts.log('warn', 'luo: KHO is disabled, disabling live update');
    if (opts.enabled && kho && !fits) opts.log('warn', `luo: ${this.abi.compatible} needs raw KHO subtrees (kho-v3 or later); live update disabled`);
    let subsystemData = new Map<string, bigint>();
    this.flbs = new FlbRegistry(() => this.enabledFlag, (h) => this.handlers.includes(h));
    const ctx: FileContext = {
      kho: {
        allocPreserve: (n) => kho!.allocPreserve(n),
        unpreserveFree: (pa) => kho!.unpreserveFree(pa),
        restoreFree: (pa) => kho!.restoreFree(pa),
      },
      mem,
      ramPages: opts.ramPages,
      handlers: () => this.handlers,
      preservedIds: new Map<unknown, KernelFile>(),
      flb: this.flbs,
      log: (m) => opts.log('warn', `luo: ${m}`),
      layout: entryLayoutOf(this.abi),
    };
    this.sessions = new SessionManager(ctx);
    let num = 0;
    let flbs = 0n;
    let failure: LuoError | undefined;
    if (this.enabledFlag) {
      try {
        const r = this.earlyStartup();
        num = r.num;
        flbs = r.flbs;
        if (flbs !== 0n) this.flbs.setIncoming(readFlbPage(mem, flbs, opts.ramPages));
        subsystemData = r.subsystems ?? this.readSubsystems();
      } catch (e) {
        if (e instanceof KernelPanic) throw e;
        failure = e instanceof LuoError ? e : new LuoError('EIO', String(e));
      }
    }
    this.incomingNum = num;
    this.incomingFlbsPa = flbs;
    this.subsystems = new Subsystems(() => this.enabledFlag, kho ? this.subsystemsOut(kho) : undefined, subsystemData, (m) => opts.log('warn', `luo: ${m}`));
    this.restoreFailure = failure;
    if (failure) {
      opts.log('err', `luo: failed to restore the incoming live-update state: ${failure.message}`);
      if (opts.policy === 'panic') throw new KernelPanic(`The incoming tree failed to initialize properly [-${failure.code}]`, { cause: failure });
      opts.log('warn', 'luo: live update disabled (luo.restore_fail=disable); /dev/liveupdate is not registered');
      this.enabledFlag = false;
    }
    if (this.enabledFlag) this.lateInit();
  }

  /** Where subsystem data goes at the freeze: the LUO FDT's node (the seeds' variant) or luo's own subtree. */
  private subsystemsOut(kho: Kho): SubsystemsOut {
    if (this.abi.format !== 'fdt' || !this.abi.subsystems) {
      return subtreeOut({ allocPreserve: (n) => kho.allocPreserve(n), unpreserveFree: (pa) => kho.unpreserveFree(pa), addSubtree: (n, pa, sz) => kho.addSubtree(n, pa, sz), removeSubtree: (pa) => kho.removeSubtree(pa), page: (pfn) => this.mem.page(pfn) });
    }
    // the FDT keeps its page (kho-v1 records no size); a cancel leaves the names with zero data
    let names: string[] = [];
    const rewrite = (records: ReadonlyArray<readonly [string, bigint]>): void => {
      if (this.fdtOut) writeLuoFdtV1(this.mem.page(Number(this.outSerPa >> 12n)), { ...this.fdtOut, subsystems: records });
    };
    return {
      publish: (records) => {
        names = records.map(([n]) => n);
        rewrite(records);
      },
      withdraw: () => rewrite(names.map((n) => [n, 0n] as const)),
    };
  }

  /** The LUO compatible of this kernel's code. */
  get compatible(): string {
    return this.abi.compatible;
  }

  get enabled(): boolean {
    return this.enabledFlag;
  }

  /** luo_early_startup: ENOENT from KHO means a cold boot; anything else wrong is a failure. */
  private earlyStartup(): { num: number; flbs: bigint; subsystems?: Map<string, bigint> } {
    const sub = this.incomingSubtree();
    if (!sub) return { num: 0, flbs: 0n };
    if (this.abi.format === 'fdt') return this.earlyStartupFdt(sub);
    if (this.abi.format === 'fdt-header') return this.earlyStartupFdtHeader(sub);
    const LuoSer = luoSerLayout(this.compatible);
    if (sub.size < LuoSer.size) throw new LuoError('EINVAL', `"LUO" blob is ${sub.size} bytes, struct luo_ser needs ${LuoSer.size}`);
    const { page, off } = this.structAt(sub.pa, LuoSer.size, '"LUO" blob');
    const len = compatLen(this.compatible);
    const compat = page.subarray(off, off + len);
    const want = new TextEncoder().encode(this.compatible);
    // strncmp over LUO_ABI_COMPAT_LEN bytes: equal up to and including the first NUL.
    for (let i = 0; i < len; i++) {
      const w = want[i] ?? 0;
      if (compat[i] !== w) {
        const found = new TextDecoder('latin1').decode(compat).replace(/\0.*$/s, '');
        throw new LuoError('EINVAL', `"LUO" blob compatible is "${found}", this kernel speaks "${this.compatible}"`);
      }
      if (w === 0) break;
    }
    const ser = LuoSer.decode(page, off);
    this.sessions.setupIncoming(ser.sessions_pa);
    if (ser.liveupdate_num > BigInt(Number.MAX_SAFE_INTEGER)) throw new LuoError('EINVAL', `liveupdate_num ${ser.liveupdate_num} is impossible`);
    // The incoming luo_ser page is given back as soon as it has been read.
    this.kho!.restoreFree(sub.pa - BigInt(off));
    this.opts.log('info', `luo: live update #${ser.liveupdate_num} (sessions at 0x${ser.sessions_pa.toString(16)})`);
    return { num: Number(ser.liveupdate_num), flbs: ser.flbs_pa };
  }

  /** The incoming "LUO" subtree; undefined after a cold boot (KHO's ENOENT). */
  private incomingSubtree(): { pa: bigint; size: number } | undefined {
    try {
      return this.kho!.retrieveSubtree(LUO_SUBTREE_NAME);
    } catch (e) {
      if (e instanceof LuoError && e.errno === 'ENOENT') {
        this.opts.log('info', 'luo: no incoming live-update state (cold boot)');
        return undefined;
      }
      throw e;
    }
  }

  /**
   * luo_early_startup of the FDT era: the "LUO" sub-FDT, its session node, (7.0 on) its FLB node and
   * (the seeds' variant) its subsystems node, whose absence luo_subsystems_startup answers with
   * panic() whatever luo.restore_fail says.
   */
  private earlyStartupFdt(sub: { pa: bigint; size: number }): { num: number; flbs: bigint; subsystems?: Map<string, bigint> } {
    if (sub.pa % BigInt(PAGE_SIZE) !== 0n || sub.pa >> 12n >= BigInt(this.opts.ramPages)) throw new LuoError('EINVAL', `"LUO" FDT address 0x${sub.pa.toString(16)} is not a page inside RAM`);
    const blob = this.mem.page(Number(sub.pa >> 12n));
    const abi = this.abi as Extract<LuoAbi, { format: 'fdt' }>;
    const v = readLuoFdtV1(blob, abi.flb);
    if (v.liveupdateNum > BigInt(Number.MAX_SAFE_INTEGER)) throw new LuoError('EINVAL', `liveupdate-number ${v.liveupdateNum} is impossible`);
    this.opts.log('info', `luo: Retrieved live update data, liveupdate number: ${v.liveupdateNum}`);
    this.sessions.setupIncoming(v.sessionHeaderPa);
    const out = { num: Number(v.liveupdateNum), flbs: v.flbHeaderPa ?? 0n };
    if (!abi.subsystems) return out;
    const node = readSubsystemsNode(blob);
    const fatal = node.kind === 'absent' ? 'Failed to find /subsystems node' : node.kind === 'incompatible' ? `FDT '${SUBSYSTEMS_NODE}' is incompatible with '${SUBSYSTEMS_COMPATIBLE}' [-1]` : undefined;
    if (fatal) {
      this.opts.log('err', `luo: ${fatal}`);
      throw new KernelPanic(fatal);
    }
    return { ...out, subsystems: (node as Extract<SubsystemsNode, { kind: 'ok' }>).data };
  }

  /** luo_early_startup of luo-v2: the "LUO" sub-FDT names the 24-byte luo_ser that holds the rest. */
  private earlyStartupFdtHeader(sub: { pa: bigint; size: number }): { num: number; flbs: bigint } {
    if (sub.pa % BigInt(PAGE_SIZE) !== 0n || sub.pa >> 12n >= BigInt(this.opts.ramPages)) throw new LuoError('EINVAL', `"LUO" FDT address 0x${sub.pa.toString(16)} is not a page inside RAM`);
    const serPa = readLuoFdtV2(this.mem.page(Number(sub.pa >> 12n)));
    const { page, off } = this.structAt(serPa, LuoSerV2.size, 'luo-abi-header');
    const ser = LuoSerV2.decode(page, off);
    if (ser.liveupdate_num > BigInt(Number.MAX_SAFE_INTEGER)) throw new LuoError('EINVAL', `liveupdate_num ${ser.liveupdate_num} is impossible`);
    this.opts.log('info', `luo: Retrieved live update data, liveupdate number: ${ser.liveupdate_num}`);
    this.sessions.setupIncoming(ser.sessions_pa);
    return { num: Number(ser.liveupdate_num), flbs: ser.flbs_pa };
  }

  /**
   * The page and offset of a `size`-byte struct at `pa`. The kernel trusts the address; luo checks
   * (EINVAL) that it is 8-aligned, inside RAM and within one page, so a corrupt one cannot fault.
   */
  private structAt(pa: bigint, size: number, what: string): { page: Uint8Array; off: number } {
    if (pa % 8n !== 0n || pa >> 12n >= BigInt(this.opts.ramPages)) throw new LuoError('EINVAL', `${what} address 0x${pa.toString(16)} is not inside RAM`);
    const off = Number(pa % BigInt(PAGE_SIZE));
    if (off + size > PAGE_SIZE) throw new LuoError('EINVAL', `${what} at 0x${pa.toString(16)} crosses a page`);
    return { page: this.mem.page(Number(pa >> 12n)), off };
  }

  /** The incoming "subsystems" subtree: absent is fine, broken is a restore failure. */
  private readSubsystems(): Map<string, bigint> {
    let sub: { pa: bigint; size: number };
    try {
      sub = this.kho!.retrieveSubtree(SUBSYSTEMS_SUBTREE);
    } catch (e) {
      if (e instanceof LuoError && e.errno === 'ENOENT') return new Map();
      throw e;
    }
    if (sub.size > PAGE_SIZE || sub.pa % BigInt(PAGE_SIZE) !== 0n || sub.pa >> 12n >= BigInt(this.opts.ramPages)) {
      throw new LuoError('EINVAL', `subsystems subtree at 0x${sub.pa.toString(16)} (${sub.size} bytes) is not one page inside RAM`);
    }
    const data = decodeSubsystemsFdt(this.mem.page(Number(sub.pa >> 12n)).slice(0, sub.size));
    this.kho!.restoreFree(sub.pa);
    return data;
  }

  /** Late initcall: the outgoing luo_ser and FLB page, the "LUO" subtree, the device. */
  private lateInit(): void {
    const kho = this.kho!;
    if (this.abi.format === 'fdt') {
      // luo_fdt_setup: the FDT page, the session array, the FLB page (from 7.0), then the subtree
      this.outSerPa = kho.allocPreserve(PAGE_SIZE);
      const sessionHeaderPa = this.sessions.allocateOutgoingArray();
      if (this.abi.flb) this.flbPagePa = this.allocFlbPage();
      this.fdtOut = { liveupdateNum: BigInt(this.incomingNum + 1), sessionHeaderPa, ...(this.abi.flb ? { flbHeaderPa: this.flbPagePa } : {}), ...(this.abi.subsystems ? { subsystems: [] } : {}) };
      const size = writeLuoFdtV1(this.mem.page(Number(this.outSerPa >> 12n)), this.fdtOut);
      kho.addSubtree(LUO_SUBTREE_NAME, this.outSerPa, size);
      this.deviceRegistered = true;
      return;
    }
    if (this.abi.format === 'fdt-header') {
      // luo_fdt_setup of luo-v2: the FDT page, luo_ser, the session array, the FLB page, then the subtree
      this.outSerPa = kho.allocPreserve(PAGE_SIZE);
      const serPa = kho.allocPreserve(LuoSerV2.size);
      const sessionsPa = this.sessions.allocateOutgoingArray();
      this.flbPagePa = this.allocFlbPage();
      LuoSerV2.encode({ liveupdate_num: BigInt(this.incomingNum + 1), sessions_pa: sessionsPa, flbs_pa: this.flbPagePa }, this.mem.page(Number(serPa >> 12n)));
      kho.addSubtree(LUO_SUBTREE_NAME, this.outSerPa, writeLuoFdtV2(this.mem.page(Number(this.outSerPa >> 12n)), serPa));
      this.deviceRegistered = true;
      return;
    }
    const LuoSer = luoSerLayout(this.compatible);
    this.outSerPa = kho.allocPreserve(LuoSer.size);
    this.flbPagePa = this.allocFlbPage();
    this.writeSer(0n);
    kho.addSubtree(LUO_SUBTREE_NAME, this.outSerPa, LuoSer.size);
    this.deviceRegistered = true;
  }

  /** luo_flb_setup_outgoing: the FLB header page, {pgcnt 1, count 0}. */
  private allocFlbPage(): bigint {
    const pa = this.kho!.allocPreserve(PAGE_SIZE);
    LuoFlbHeaderSer.encode({ pgcnt: 1n, count: 0n }, this.mem.page(Number(pa >> 12n)));
    return pa;
  }

  private writeSer(sessionsPa: bigint): void {
    luoSerLayout(this.compatible).encode(
      { compatible: this.compatible, liveupdate_num: BigInt(this.incomingNum + 1), sessions_pa: sessionsPa, flbs_pa: this.flbPagePa },
      this.mem.page(Number(this.outSerPa >> 12n)),
    );
  }

  get outgoingSerPa(): bigint {
    return this.outSerPa;
  }
  get flbHeaderPa(): bigint {
    return this.flbPagePa;
  }

  // ------------------------------------------------------------ file handlers

  /** liveupdate_register_file_handler. */
  registerFileHandler(h: FileHandler): void {
    if (!this.enabledFlag) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    const o = h.ops as Partial<FileHandler['ops']>;
    if (!o.preserve || !o.unpreserve || !o.retrieve || !o.finish || !o.canPreserve) throw new LuoError('EINVAL', `handler "${h.compatible}" lacks a required callback`);
    if (this.handlers.some((x) => x.compatible === h.compatible)) throw new LuoError('EEXIST', `a handler with compatible "${h.compatible}" is already registered`);
    this.handlers.push(h);
    if (this.opts.testFlbs) for (const flb of (this.testFlbSet ??= testFlbs())) this.flbs.register(h, flb);
  }

  unregisterFileHandler(h: FileHandler): void {
    if (!this.enabledFlag) throw new LuoError('EOPNOTSUPP', 'live update is disabled');
    const i = this.handlers.indexOf(h);
    if (i < 0) throw new LuoError('ENOENT', `handler "${h.compatible}" is not registered`);
    if (this.flbs.hasLinks(h)) throw new LuoError('EBUSY', `handler "${h.compatible}" still has FLBs linked`);
    this.handlers.splice(i, 1);
  }

  get fileHandlers(): readonly FileHandler[] {
    return this.handlers;
  }

  // ------------------------------------------------------------ /dev/liveupdate

  /**
   * open(/dev/liveupdate): ENOENT when the device is not registered, EBUSY while open, EIO
   * forever after a failed deserialization of the incoming sessions.
   */
  open(): void {
    if (!this.deviceRegistered) throw new LuoError('ENOENT', '/dev/liveupdate does not exist (live update disabled)');
    if (this.deviceOpen) throw new LuoError('EBUSY', '/dev/liveupdate is already open');
    try {
      this.sessions.deserialize();
    } catch (e) {
      throw new LuoError('EIO', `incoming sessions could not be restored: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    this.deviceOpen = true;
  }

  /** Closing the device frees it again; sessions live as long as their own fds. */
  close(): void {
    this.deviceOpen = false;
  }

  get isOpen(): boolean {
    return this.deviceOpen;
  }

  createSession(name: string): LuoSession {
    return this.sessions.create(name, this.uapi.directionChecks);
  }

  retrieveSession(name: string): LuoSession {
    return this.sessions.retrieve(name);
  }

  // ------------------------------------------------------------ reboot

  /**
   * liveupdate_reboot, from kernel_kexec(): serialize sessions (freezing files) and FLBs into
   * the preserved luo_ser. An error refuses the reboot and leaves everything as it was.
   */
  reboot(): void {
    if (!this.enabledFlag) return;
    this.subsystems.freeze();
    let sessionsPa: bigint;
    try {
      sessionsPa = this.sessions.serialize();
    } catch (e) {
      this.subsystems.cancel();
      throw e;
    }
    if (this.abi.format !== 'raw') {
      // liveupdate_reboot of the FDT era: the FLBs, then LUO asks KHO to finalize (its failure is
      // EAGAIN) — on kho-v1; later KHOs have no finalize, their tree is always live
      if (this.flbPagePa !== 0n) this.flbs.serialize(this.mem.page(Number(this.flbPagePa >> 12n)));
      if (this.kho!.profile !== 'kho-v1') return;
      try {
        this.kho!.finalize();
      } catch (e) {
        this.opts.log('err', `luo: kho_finalize failed ${e instanceof LuoError ? e.errno : String(e)}`);
        throw new LuoError('EAGAIN', `kho_finalize failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      return;
    }
    this.writeSer(sessionsPa);
    this.flbs.serialize(this.mem.page(Number(this.flbPagePa >> 12n)));
  }
}
