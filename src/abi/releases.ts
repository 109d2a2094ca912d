/**
 * Kernel releases and their hand-over ABIs: for each stage of LUO/KHO history (spec kernel-abi.md
 * sections 0, 1, 4.4, 6.1-6.3), what its KHO, LUO and memfd code write and what they accept, its uAPI
 * and its limits. A live update always runs from one release to another; whether the new one can take
 * the old one's hand-over follows from these facts (src/releases/plan.ts). Pure data.
 */
import { blockCapacity } from './luo.ts';

/** How KHO records preserved memory and describes subtrees. */
export type KhoFamily = 'kho-v1' | 'kho-v2' | 'kho-v3' | 'kho-v4';

export interface KhoAbi {
  readonly family: KhoFamily;
  /** The root node's compatible string, matched exactly by the next kernel (fdt_node_check_compatible). */
  readonly compatible: string;
}

/** The LUO state under the KHO subtree "LUO". */
export type LuoAbi =
  | {
    /** An FDT: root `compatible`, `liveupdate-number`, a `luo-session` node (16-page session array, 2-page file arrays). */
    readonly format: 'fdt';
    readonly compatible: 'luo-v1';
    readonly sessionCompatible: 'luo-session-v2';
    /** A `luo-flb` node ("luo-flb-v1"). */
    readonly flb: boolean;
    /** A `subsystems` node ("subsystems-v1"), mandatory on the read side (the seeds' luo_subsystems.c). */
    readonly subsystems: boolean;
  }
  | {
    /** The transient FDT whose `luo-abi-header` points at {liveupdate_num, sessions_pa, flbs_pa}. */
    readonly format: 'fdt-header';
    readonly compatible: 'luo-v2';
  }
  | {
    /** A raw `struct luo_ser` blob with its compatible inside. */
    readonly format: 'raw';
    readonly compatible: string;
    /** Sessions and files: the FDT era's fixed arrays, or linked blocks. */
    readonly sessions: 'array' | 'blocks';
    readonly files: 'array' | 'blocks';
    /** Pages per linked block (1 in every release; the linked-block patch of the seeds used 2). */
    readonly blockPages: number;
  };

export interface UapiAbi {
  /** LIVEUPDATE_SESSION_GET_NAME (0x43). */
  readonly getName: boolean;
  /** Session ioctls refused on the wrong direction (outgoing/incoming), names validated. */
  readonly directionChecks: boolean;
}

export interface ReleaseLimits {
  /** Outgoing sessions before CREATE_SESSION fails. */
  readonly sessions: number;
  readonly sessionsErrno: 'ENOMEM' | 'ENOSPC';
  /** Files per session before PRESERVE_FD fails with ENOSPC. */
  readonly filesPerSession: number;
}

export interface ReleaseAbi {
  readonly kho: KhoAbi;
  readonly luo: LuoAbi;
  /** The memfd handler's compatible string. */
  readonly memfd: string;
  readonly uapi: UapiAbi;
  readonly limits: ReleaseLimits;
}

export interface Release {
  /** Kernel version where the sources show one, else the ABI. */
  readonly name: string;
  /** `uname -r` of the simulated kernel (kexec-metadata's previous_release). */
  readonly uname: string;
  readonly summary: string;
  /** Where the layouts come from (repository @ commit, or the mailing-list series). */
  readonly sources: readonly string[];
  readonly abi: ReleaseAbi;
}

const FDT_ERA_LIMITS: ReleaseLimits = {
  // LUO_SESSION_PGCNT 16 pages: (16 * 4096 - 8) / 80 (luo_session.c @7f790dd); LUO_FILE_PGCNT 2: 8192 / 64
  sessions: Math.floor((16 * 4096 - 8) / 80), sessionsErrno: 'ENOMEM', filesPerSession: (2 * 4096) / 64,
};
const BLOCK_LIMITS: ReleaseLimits = {
  // KHO_MAX_BLOCKS 10000 blocks of one page (kho_block.c @637315cb)
  sessions: blockCapacity(80) * 10000, sessionsErrno: 'ENOSPC', filesPerSession: blockCapacity(64) * 10000,
};
const OLD_UAPI: UapiAbi = { getName: false, directionChecks: false };
const NEW_UAPI: UapiAbi = { getName: true, directionChecks: true };
const fdtLuo = (flb: boolean, subsystems = false): LuoAbi => ({ format: 'fdt', compatible: 'luo-v1', sessionCompatible: 'luo-session-v2', flb, subsystems });
const rawLuo = (compatible: string, sessions: 'array' | 'blocks', files: 'array' | 'blocks', blockPages = 1): LuoAbi => ({ format: 'raw', compatible, sessions, files, blockPages });

/** Every release luo knows, oldest first. */
export const RELEASES: readonly Release[] = [
  {
    name: '6.19', uname: '6.19.0-luo',
    summary: 'the first merged LUO: 3 session ioctls, FDT "luo-v1" with a session array, KHO bitmaps finalized by LUO',
    sources: ['torvalds/linux @cc4adab (abi/luo.h)', 'torvalds/linux @7f790dd (luo_session.c)', 'torvalds/linux @dd03dd6 (kexec_handover.c)', 'sjp38/linux @ec4967c2 (memfd_luo.c)'],
    abi: { kho: { family: 'kho-v1', compatible: 'kho-v1' }, luo: fdtLuo(false), memfd: 'memfd-v1', uapi: OLD_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: '7.0', uname: '7.0.0-luo',
    summary: 'FLB: a "luo-flb" node in the LUO FDT; memfd-v2 keeps seals',
    sources: ['ColinIanKing/linux-next @6ab3af58 (luo-flb node)', 'torvalds/linux @cab056f2 (luo_core.c, luo_flb.c)', 'gregkh/linux @1d3ad694 (memfd-v2)'],
    abi: { kho: { family: 'kho-v1', compatible: 'kho-v1' }, luo: fdtLuo(true), memfd: 'memfd-v2', uapi: OLD_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: 'seed-subsystems', uname: '7.0.0-subsys',
    summary: 'the seeds\' subsystem registration on 7.0: a "subsystems" node (subsystems-v1, one u64 per subsystem) inside the LUO FDT, which the reader requires (panic without it)',
    sources: ['"luo_subsystems: add subsystem registration" (the seeds\' luo_subsystems.c: LUO_SUBSYSTEMS_NODE_NAME, luo_subsystems_startup)'],
    abi: { kho: { family: 'kho-v1', compatible: 'kho-v1' }, luo: fdtLuo(true, true), memfd: 'memfd-v2', uapi: OLD_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: 'kho-v2', uname: '7.1.0-kho-v2',
    summary: 'KHO tracks preserved memory in a radix tree; sub-FDTs by "preserved-data" alone (no blob-size); no finalize',
    sources: ['abi/kexec_handover.h with KHO_FDT_COMPATIBLE "kho-v2" (radix tracker, preserved-data)', 'kernel log: "kho: remove finalize state and clients" precedes "kho: adopt radix tree for preserved memory tracking"'],
    abi: { kho: { family: 'kho-v2', compatible: 'kho-v2' }, luo: fdtLuo(true), memfd: 'memfd-v2', uapi: OLD_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: 'kho-v3', uname: '7.1.0-kho-v3',
    summary: 'raw KHO subtrees ("blob-size") and kexec-metadata on the radix tracker; the LUO FDT by preserved-data and blob-size',
    sources: ['linux-mm @65660710 (kexec_handover.c)'],
    abi: { kho: { family: 'kho-v3', compatible: 'kho-v3' }, luo: fdtLuo(true), memfd: 'memfd-v2', uapi: OLD_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: 'luo-v2', uname: '7.2.0-luo-v2',
    summary: 'transient (v7 series patch 3): the LUO FDT root "luo-v2" points at a 24-byte luo_ser by "luo-abi-header"; session array from boot',
    sources: ['"liveupdate: centralize state management into struct luo_ser" (v7 03/13, applied as d376e4b5; kernel-abi.md 1, 4.4)'],
    abi: { kho: { family: 'kho-v3', compatible: 'kho-v3' }, luo: { format: 'fdt-header', compatible: 'luo-v2' }, memfd: 'memfd-v2', uapi: OLD_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: 'luo-v3', uname: '7.2.0-luo-v3',
    summary: 'the LUO state becomes a raw 32-byte luo_ser with its compatible inside; the session array is allocated at the first session; GET_NAME; direction checks',
    sources: ['"liveupdate: register luo_ser as KHO subtree" (v7 04/13, cf071b35)', '"kho: add support for linked-block serialization" (v7 07/13: kho-v4)', '"liveupdate: defer session block allocation and physical address setting" (v7 08/13)'],
    abi: { kho: { family: 'kho-v4', compatible: 'kho-v4' }, luo: rawLuo('luo-v3', 'array', 'array'), memfd: 'memfd-v2', uapi: NEW_UAPI, limits: FDT_ERA_LIMITS },
  },
  {
    name: 'luo-v4', uname: '7.2.0-luo-v4',
    summary: 'sessions in one-page linked blocks (files still in 2-page per-session arrays)',
    sources: ['"liveupdate: Remove limit on the number of sessions" (v7 09/13, 2a441a14)'],
    abi: { kho: { family: 'kho-v4', compatible: 'kho-v4' }, luo: rawLuo('luo-v4', 'blocks', 'array'), memfd: 'memfd-v2', uapi: NEW_UAPI, limits: { ...BLOCK_LIMITS, filesPerSession: FDT_ERA_LIMITS.filesPerSession } },
  },
  {
    name: '7.3.4', uname: '7.3.4-luo',
    summary: 'files in linked blocks too: luo-v5 on kho-v4 (what a real 7.3.4 wrote under QEMU)',
    sources: ['torvalds/linux @637315cb, @b2128290', 'include/linux/kho/abi/luo.h, block.h, kexec_handover.h'],
    abi: { kho: { family: 'kho-v4', compatible: 'kho-v4' }, luo: rawLuo('luo-v5', 'blocks', 'blocks'), memfd: 'memfd-v2', uapi: NEW_UAPI, limits: BLOCK_LIMITS },
  },
  {
    name: '7.3.5', uname: '7.3.5-luo',
    summary: "a stable update of 7.3: a new kernel whose hand-over ABI is 7.3.4's, string for string and byte for byte (the common case of a fleet upgrade)",
    sources: ['kernel-abi.md 1: luo-v5 on kho-v4 is the newest mainline ABI; a stable update changes none of it'],
    abi: { kho: { family: 'kho-v4', compatible: 'kho-v4' }, luo: rawLuo('luo-v5', 'blocks', 'blocks'), memfd: 'memfd-v2', uapi: NEW_UAPI, limits: BLOCK_LIMITS },
  },
  {
    name: 'mm-granular', uname: '7.4.0-rc1-mm',
    summary: 'the granular-compatibility RFC: composite strings, luo_ser of 40 bytes',
    sources: ['linux-mm @8c8e7930 (abi/compat.h)', 'linux-mm @a6d96598 (abi/luo.h "luo-v5;block-v1")', 'linux-mm @873e8b59 (abi/radix_tree.h, abi/vmalloc.h)'],
    abi: {
      kho: { family: 'kho-v4', compatible: 'kho-v4;radix-v1;vmalloc-v1' }, luo: rawLuo('luo-v5;block-v1', 'blocks', 'blocks'), memfd: 'memfd-v2;vmalloc-v1',
      uapi: NEW_UAPI, limits: BLOCK_LIMITS,
    },
  },
  {
    name: 'seed-2page-blocks', uname: '7.3.0-blocks2',
    summary: "the linked-block patch as the seeds show it: LUO_BLOCK_PGCNT 2 under the same compatible strings as 7.3.4",
    sources: ['the linked-block patch as the seeds quote it (LUO_BLOCK_PGCNT 2)'],
    abi: {
      kho: { family: 'kho-v4', compatible: 'kho-v4' }, luo: rawLuo('luo-v5', 'blocks', 'blocks', 2), memfd: 'memfd-v2', uapi: NEW_UAPI,
      limits: { sessions: blockCapacity(80, 2) * 10000, sessionsErrno: 'ENOSPC', filesPerSession: blockCapacity(64, 2) * 10000 },
    },
  },
];

export const DEFAULT_RELEASE = '7.3.4';

export function findRelease(name: string): Release | undefined {
  return RELEASES.find((r) => r.name === name || r.uname === name);
}
