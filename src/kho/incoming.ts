/**
 * How a freshly booted kernel finds KHO state: kho_populate (check the root FDT the boot protocol
 * pointed at, read the scratch array) and kho_memory_init (walk the preserved-memory tracker,
 * reserve every block, stamp the 'KHOP' magic). Anything wrong means a boot without hand-over,
 * logged with what and where — never a crash or a silently wrong restore.
 */
import { LuoError } from '../errno.ts';
import { KhoScratch, type KhoProfile, PAGE_SIZE } from '../abi/kho.ts';
import { walkIncomingChunks } from './bitmap-v1.ts';
import type { KhoLog, ScratchArea } from './kho.ts';
import type { KhoMemory } from './memory.ts';
import { walkIncomingTree } from './radix.ts';
import { type IncomingRoot, readIncomingRoot } from './root-fdt.ts';

/** What the x86 boot protocol carries (struct kho_data in setup_data type SETUP_KEXEC_KHO). */
export interface KhoBootData {
  readonly fdtAddr: bigint;
  readonly fdtSize: bigint;
  readonly scratchAddr: bigint;
  readonly scratchSize: bigint;
}

export interface Populated {
  readonly root: IncomingRoot;
  readonly fdtPa: bigint;
  readonly scratchPa: bigint;
  readonly scratch: ScratchArea[];
}

const MAX_SCRATCH_AREAS = 1026; // nodes (MAX_NUMNODES 1024) + 2

/** kho_populate: undefined (after logging why) when the hand-over cannot be used. */
export function khoPopulate(mem: KhoMemory, ramPages: number, boot: KhoBootData, profile: KhoProfile, log: KhoLog): Populated | undefined {
  try {
    const fdtPfn = pfnIn(boot.fdtAddr, ramPages, 'FDT');
    if (boot.fdtSize !== BigInt(PAGE_SIZE)) throw new LuoError('EINVAL', `FDT size ${boot.fdtSize} is not one page`);
    if (boot.fdtAddr % BigInt(PAGE_SIZE) !== 0n) throw new LuoError('EINVAL', `FDT address 0x${boot.fdtAddr.toString(16)} is not page aligned`);
    const root = readIncomingRoot(mem.page(fdtPfn), profile);
    const n = boot.scratchSize / BigInt(KhoScratch.size);
    if (boot.scratchSize % BigInt(KhoScratch.size) !== 0n || n === 0n || n > BigInt(MAX_SCRATCH_AREAS)) {
      throw new LuoError('EINVAL', `scratch array size ${boot.scratchSize} is not 1..${MAX_SCRATCH_AREAS} entries of ${KhoScratch.size} bytes`);
    }
    const bytes = readPhys(mem, ramPages, boot.scratchAddr, Number(boot.scratchSize));
    const scratch: ScratchArea[] = [];
    for (let i = 0; i < Number(n); i++) {
      const s = KhoScratch.decode(bytes, i * KhoScratch.size);
      if (s.addr % BigInt(PAGE_SIZE) !== 0n || s.size % BigInt(PAGE_SIZE) !== 0n || ((s.addr + s.size) >> 12n) > BigInt(ramPages)) {
        throw new LuoError('EINVAL', `scratch area ${i} 0x${s.addr.toString(16)}+0x${s.size.toString(16)} is not page aligned inside RAM`);
      }
      scratch.push({ addr: s.addr, size: s.size });
    }
    log('info', 'found kexec handover data.');
    return { root, fdtPa: boot.fdtAddr, scratchPa: boot.scratchAddr, scratch };
  } catch (e) {
    log('warn', `setup: ${e instanceof Error ? e.message : String(e)}`);
    log('warn', 'disabling KHO revival');
    return undefined;
  }
}

/**
 * kho_memory_init on a KHO boot: walks the tracker. Returns the stamped blocks, or undefined when
 * the tracker is corrupt (then nothing has been reserved: the caller boots without hand-over).
 */
export function khoMemoryInit(
  mem: KhoMemory,
  ramPages: number,
  p: Populated,
  profile: KhoProfile,
  log: KhoLog,
): { magic: Map<number, number>; blocks: number } | undefined {
  const magic = new Map<number, number>();
  const forbidden = p.scratch
    .filter((s) => s.size > 0n)
    .map((s, i) => ({ startPfn: Number(s.addr >> 12n), endPfn: Number((s.addr + s.size) >> 12n), what: `scratch area ${i}` }));
  const limits = { ramPages, forbidden };
  try {
    const stamp = (pfn: number, order: number): void => {
      if (magic.has(pfn)) throw new LuoError('EINVAL', `block 0x${(BigInt(pfn) << 12n).toString(16)} is listed twice`);
      magic.set(pfn, order);
    };
    const r = profile === 'kho-v4' ? walkIncomingTree(mem, p.root.memMapPa, limits, stamp) : walkIncomingChunks(mem, p.root.memMapPa, limits, stamp);
    checkOverlaps(magic);
    return { magic, blocks: r.blocks };
  } catch (e) {
    log('err', `failed to restore preserved memory: ${e instanceof Error ? e.message : String(e)}`);
    log('warn', 'booting without hand-over');
    return undefined;
  }
}

/** Two preserved blocks may not overlap (a corrupt tracker could claim that). */
function checkOverlaps(magic: Map<number, number>): void {
  const blocks = [...magic.entries()].sort((a, b) => a[0] - b[0]);
  let end = -1;
  for (const [pfn, order] of blocks) {
    if (pfn < end) throw new LuoError('EINVAL', `preserved block 0x${(BigInt(pfn) << 12n).toString(16)} order ${order} overlaps the block before it`);
    end = pfn + 2 ** order;
  }
}

function pfnIn(pa: bigint, ramPages: number, what: string): number {
  if (pa < 0n || pa >> 12n >= BigInt(ramPages)) throw new LuoError('EINVAL', `${what} address 0x${pa.toString(16)} is outside RAM`);
  return Number(pa >> 12n);
}

function readPhys(mem: KhoMemory, ramPages: number, pa: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const at = pa + BigInt(done);
    const pfn = pfnIn(at, ramPages, 'scratch array');
    const off = Number(at % BigInt(PAGE_SIZE));
    const n = Math.min(PAGE_SIZE - off, len - done);
    out.set(mem.page(pfn).subarray(off, off + n), done);
    done += n;
  }
  return out;
}
