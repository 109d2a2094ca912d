/**
 * The inspection report: what was decoded from a hand-over artefact (root FDT, subtrees, tracker,
 * luo_ser, sessions, files, FLBs) and every problem found, each with a severity and a location.
 * u64 values stay bigint here; the JSON printer turns every bigint into a "0x..." string.
 */

export type Severity = 'error' | 'warning' | 'info';

export interface Problem {
  severity: Severity;
  /** Where: e.g. "session block 1 @0x3f83e000", "ELF program header 2 @offset 0xb0". */
  where: string;
  message: string;
}

/** Collects problems; bounded so a pathological input cannot grow the report without limit. */
export class Problems {
  readonly list: Problem[] = [];
  private dropped = 0;
  static readonly MAX = 10000;
  add(severity: Severity, where: string, message: string): void {
    if (this.list.length >= Problems.MAX) { this.dropped++; return; }
    this.list.push({ severity, where, message });
  }
  error(where: string, message: string): void { this.add('error', where, message); }
  warn(where: string, message: string): void { this.add('warning', where, message); }
  info(where: string, message: string): void { this.add('info', where, message); }
  finish(): Problem[] {
    if (this.dropped) this.list.push({ severity: 'warning', where: 'report', message: `${this.dropped} further problem(s) not listed` });
    return this.list;
  }
}

/** True when a problem counts against the exit code (info notes do not). */
export const isFault = (p: Problem): boolean => p.severity !== 'info';

export interface InputInfo {
  kind: InputKind;
  path: string;
  /** What the memory view holds, e.g. "ELF core: 3 PT_LOAD segments, 1 GiB". */
  description: string;
  /** Physical ranges the view holds (at most a few hundred listed). */
  ranges: { start: bigint; end: bigint }[];
}

/** 'raw': physical memory from address 0 as one flat file (QEMU pmemsave); never auto-detected. */
export type InputKind = 'fdt' | 'elf' | 'image' | 'pages' | 'raw' | 'blob';

export interface SubtreeInfo {
  name: string;
  /** kho-v2+: preserved-data; kho-v1: the "fdt" property. */
  preservedData?: bigint;
  blobSize?: bigint;
  fdt?: bigint;
  /** Root compatible of an FDT-format blob (memblock-v1, subsystems-v1, luo-v1...). */
  compatible?: string;
}

export interface RootInfo {
  pa?: bigint;
  size: number;
  foundBy: 'argument' | 'image metadata' | 'scan' | 'file';
  compatible: string;
  profile?: string;
  preservedMemoryMap?: bigint;
}

export interface TrackerBlock { pa: bigint; order: number; key: bigint }

export interface TrackerInfo {
  format: 'radix' | 'chunks';
  rootPa: bigint;
  /** Radix tree nodes, or kho-v1 chunk plus bitmap pages. */
  nodes: number;
  blocks: number;
  perOrder: Record<string, number>;
  totalBytes: bigint;
  /** The blocks in walk order (at most MAX_LISTED_BLOCKS). */
  list: TrackerBlock[];
  listTruncated: boolean;
}

export interface KexecMetadataInfo { pa?: bigint; size: bigint; version: number; previousRelease: string; kexecCount: number }

export interface LuoSerInfo {
  pa?: bigint; size: bigint; compatible: string; liveupdateNum: bigint; sessionsPa: bigint; flbsPa: bigint;
  /** luo-v2: where its luo-abi-header points (the LUO FDT is at `pa`). */
  header?: bigint;
  /** luo-v1 with the seeds' "subsystems" node: its name -> u64 properties. */
  subsystemsNode?: Record<string, bigint>;
}

export interface BlockInfo { index: number; pa: bigint; next: bigint; count: bigint; capacity: number }

export interface FolioInfo { index: bigint; pfn: bigint; flags: number; firstBytes?: string }

export interface VmallocChunkInfo { pa: bigint; next: bigint; runs: bigint[] }

export interface MemfdInfo {
  version: 'memfd-v2' | 'memfd-v1';
  pos: bigint;
  size: bigint;
  seals?: number;
  flags?: number;
  nrFolios: bigint;
  folios: { first: bigint; totalPages: number; flags: number; order: number };
  chunks: VmallocChunkInfo[];
  folioList: FolioInfo[];
  /** SHA-256 of the file's logical content [0, size) as retrieve would present it (when readable). */
  sha256?: string;
}

export interface FileInfo { index: number; slotPa: bigint; compatible: string; token: bigint; data: bigint; memfd?: MemfdInfo }

export interface SessionInfo {
  index: number;
  slotPa: bigint;
  name: string;
  filesPa: bigint;
  count: bigint;
  fileBlocks: BlockInfo[];
  files: FileInfo[];
}

export interface FlbRecordInfo { name: string; data: bigint; count: bigint }
export interface FlbInfo { pa: bigint; pgcnt: bigint; count: bigint; records: FlbRecordInfo[] }

export interface Report {
  input: InputInfo;
  root: RootInfo | null;
  subtrees: SubtreeInfo[];
  tracker: TrackerInfo | null;
  kexecMetadata: KexecMetadataInfo | null;
  luo: LuoSerInfo | null;
  sessionBlocks: BlockInfo[];
  sessions: SessionInfo[];
  flbs: FlbInfo | null;
  subsystems: Record<string, bigint> | null;
  /** Releases of the catalogue (luo releases) whose ABI strings match what was decoded; null: nothing to match. */
  writtenBy: string[] | null;
  problems: Problem[];
}

export const hex = (v: bigint | number): string => (v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);
