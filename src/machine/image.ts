/**
 * The on-disk memory image a kexec hands to a new process: the preserved ranges of physical memory
 * (DATA pages as bytes, ZERO/POISON pages as runs), the RAM size and a JSON blob of boot
 * parameters, sealed by a checksum. Plays the role of the memory a real kexec leaves in place.
 *
 * The seal is an integrity check only — the file stays on this host, written and read by luo
 * processes of the same user; whoever can write it can also write a valid one — so version 2 seals
 * with CRC-32 (zlib's, the IEEE polynomial): it catches torn writes, truncation and random damage
 * (every burst up to 32 bits, anything else but 1 in 2^32) at a tenth of sha256's cost on a 50 MB
 * image. Version 1 (sha256) is still read.
 *
 * Layout (little-endian), versions 1 to 3:
 *   0  magic "LUOPMEM\0"      8  version u32         12 page size u32
 *   16 RAM size u64           24 meta length u32     28 range count u32
 *   32 run count u64          40 DATA page count u64 48 file length u64
 *   56 versions 1-2: reserved u64 (0); version 3: length of the base block (0: none)
 *   64 meta JSON (UTF-8), zero-padded to 8 bytes
 *   version 3, if it has a base: the base block { base file length u64, the base's seal (8 bytes),
 *        name length u32, reserved u32 (0), name (UTF-8) zero-padded to 8 bytes }
 *   then range count x { start pfn u64, end pfn u64 }
 *   then run count x { state u32 (0 zero, 1 poison, 2 data, 3 base), reserved u32, pfn u64, count u64 },
 *        a DATA run followed by count x 4096 bytes
 *   then the seal of everything before it: version 1 sha256 (32 bytes); versions 2-3 CRC-32 as a
 *   u32 followed by a zero u32 (8 bytes).
 *
 * Version 3 lets a kexec write most pages ahead of its freeze: the base is a version 2 image in the
 * same directory, named in the base block and pinned by its length and seal; a BASE run's pages are
 * that image's DATA pages at the same pfns. Only pages changed since the base was written are DATA.
 */
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LuoError, isLuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import type { PageRun, PhysRange, PhysicalMemory } from './memory.ts';
import { IntervalSet, hex } from './ranges.ts';

export const IMAGE_MAGIC = 'LUOPMEM\0';
/** The version written: 2 (CRC-32) when this Node has zlib.crc32 (20.15 on), else 1 (sha256). */
export const IMAGE_VERSION = typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? 2 : 1;
export const IMAGE_HEADER_SIZE = 64;
const RANGE_SIZE = 16;
const RUN_SIZE = 24;

/** A running checksum over the bytes before the trailer. */
interface Summer {
  update(b: Uint8Array): void;
  /** The trailer's bytes. */
  digest(): Uint8Array;
}

interface Seal {
  readonly name: string;
  /** Bytes of the trailer. */
  readonly size: number;
  make(): Summer;
}

const SHA256: Seal = {
  name: 'sha256', size: 32,
  make() {
    const h = createHash('sha256');
    return { update: (b) => void h.update(b), digest: () => new Uint8Array(h.digest()) };
  },
};

const CRC32: Seal = {
  name: 'crc32', size: 8,
  make() {
    const crc32 = (zlib as unknown as { crc32(data: Uint8Array, value?: number): number }).crc32;
    let v = 0;
    return {
      update: (b) => {
        v = crc32(b, v);
      },
      digest: () => {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setUint32(0, v >>> 0, true);
        return out;
      },
    };
  },
};

/** The seal of each version this build reads (undefined: not readable here). */
function sealOf(version: number): Seal | undefined {
  if (version === 1) return SHA256;
  if ((version === 2 || version === 3) && typeof (zlib as { crc32?: unknown }).crc32 === 'function') return CRC32;
  return undefined;
}
const CHUNK = 1 << 20;
const STATE_CODE = { zero: 0, poison: 1, data: 2, base: 3 } as const;
const CODE_STATE = ['zero', 'poison', 'data', 'base'] as const;
/** A page the writer finds dropped while it writes a live memory (a pre-copy): any bytes do. */
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
/** The fixed part of a base block (before the name). */
const BASE_FIXED = 24;
const MAX_BASE_NAME = 255;

/** Which image a version 3 image takes its BASE pages from: its file name (in the same directory), length and seal. */
export interface BaseRef {
  readonly name: string;
  readonly length: number;
  /** The base's trailer (CRC-32 u32 + zero u32). */
  readonly seal: Uint8Array;
}

/** A base image already loaded (a kexec's successor reads it ahead of the freeze). */
export interface LoadedBase extends BaseRef {
  readonly memory: PhysicalMemory;
}

/** A file name fit for a base block: one path component, no NUL, at most 255 bytes. */
function checkBaseName(name: string, what: string): void {
  const n = new TextEncoder().encode(name).length;
  if (n === 0 || n > MAX_BASE_NAME || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw new LuoError('EINVAL', `${what}: base name ${JSON.stringify(name)} is not a file name of 1 to ${MAX_BASE_NAME} bytes`);
  }
}

export interface ImageOptions {
  /** Physical ranges to save (rounded outwards to pages); everything else will load as POISON. */
  ranges: readonly PhysRange[];
  /** Boot parameters, stored as JSON. */
  meta?: unknown;
  /**
   * Survive a power loss (default): fsync the file before the rename and the directory after. A
   * kexec does without: the memory a real kexec hands over does not survive a power loss either;
   * a killed process leaves the page cache intact, and a file torn by a power loss fails its
   * checksum and is refused, never booted.
   */
  durable?: boolean;
  /** The format version to write (default IMAGE_VERSION; 1 for a luo that reads only sha256-sealed images). */
  version?: 1 | 2;
  /** Told as the file is written, so another process can read it while it grows (see ImageStream). */
  progress?: WriteProgress;
  /**
   * Write version 3 over a base image: DATA pages in `pages` (the base holds them unchanged) are
   * written as BASE runs, without their bytes.
   */
  base?: BaseRef & { pages: IntervalSet };
}

/** What writeImage wrote: the file's length, its seal, and the pages it wrote as DATA. */
export interface WrittenImage extends Omit<BaseRef, 'name'> {
  readonly dataPages: IntervalSet;
  /** Pages written as BASE runs (taken from the base). */
  readonly basePages: number;
}

/** The writer's side of a streamed image: where the file is, and how many bytes of it are written. */
export interface WriteProgress {
  /** The temporary file was created (it is renamed to the final path once complete). */
  opened(tmpPath: string): void;
  /** The first `bytes` bytes of the file are written (called with growing values). */
  written(bytes: number): void;
}

/**
 * The reader's side of an image another process is still writing: reads wait until the bytes they
 * need are written. Both functions reject when the writer gives up (its error is the reason).
 */
export interface ImageStream {
  /** Resolves once the first `bytes` bytes are written, or the writer has finished. */
  until(bytes: number): Promise<void>;
  /** Resolves, with the file's final path, once the writer has finished it and renamed it there. */
  complete(): Promise<string>;
}

export interface LoadedImage {
  memory: PhysicalMemory;
  meta: unknown;
  /** The file's length and seal (a version 3 image names its base by them). */
  length: number;
  seal: Uint8Array;
  /** The base image a version 3 image was written over (its file name), if any. */
  base?: string;
}


/** Writes a file may have in flight while the next chunk fills (the copying overlaps the I/O). */
const WRITES_IN_FLIGHT = 2;

/** Writes all of `b` at `pos` (a regular file may take it in more than one write). */
async function writeAt(fh: FileHandle, b: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < b.length) {
    const { bytesWritten } = await fh.write(b, done, b.length - done, pos + done);
    if (bytesWritten === 0) throw new Error(`no progress writing at offset ${pos + done}`);
    done += bytesWritten;
  }
}

/**
 * Buffers writes into 1 MiB chunks and sums each chunk as it goes to the file; up to
 * WRITES_IN_FLIGHT chunks are being written while the next one fills. Progress is told in file
 * order, for the prefix that is written.
 */
class ImageWriter {
  private buf: Uint8Array = new Uint8Array(CHUNK);
  private used = 0;
  private readonly hash: Summer;
  /** Bytes put so far (the file offset of the next byte). */
  offset = 0;
  /** Bytes handed to writes so far. */
  private queued = 0;
  private readonly inFlight: { done: Promise<void>; end: number; buf: Uint8Array | undefined }[] = [];
  private readonly spare: Uint8Array[] = [];
  constructor(private readonly fh: FileHandle, seal: Seal, private readonly progress: WriteProgress | undefined) {
    this.hash = seal.make();
  }

  /** Starts writing `b` after everything queued; `own` buffers are reused once written. */
  private send(b: Uint8Array, own: Uint8Array | undefined): void {
    const done = writeAt(this.fh, b, this.queued);
    done.catch(() => undefined); // awaited in order by retire(); a failure is reported there
    this.queued += b.length;
    this.inFlight.push({ done, end: this.queued, buf: own });
  }

  /** Sums `b`, starts writing it, and waits while too many writes are in flight. */
  private async queue(b: Uint8Array, own: Uint8Array | undefined): Promise<void> {
    this.hash.update(b);
    this.send(b, own);
    while (this.inFlight.length >= WRITES_IN_FLIGHT) await this.retire();
  }

  /** Waits for the oldest write in flight. */
  private async retire(): Promise<void> {
    const w = this.inFlight.shift()!;
    await w.done;
    if (w.buf) this.spare.push(w.buf);
    this.progress?.written(w.end);
  }

  /** Copies `bytes` into the buffer; returns a promise to await only when the buffer had to be flushed. */
  put(bytes: Uint8Array): Promise<void> | undefined {
    if (this.used + bytes.length <= CHUNK) {
      this.buf.set(bytes, this.used);
      this.used += bytes.length;
      this.offset += bytes.length;
      return undefined;
    }
    return this.flush().then(async () => {
      if (bytes.length > CHUNK) {
        await this.queue(bytes, undefined);
        this.offset += bytes.length;
      } else this.put(bytes);
    });
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    const full = this.buf;
    const chunk = full.subarray(0, this.used);
    this.buf = this.spare.pop() ?? new Uint8Array(CHUNK);
    this.used = 0;
    await this.queue(chunk, full);
  }

  /** Flushes, then appends the seal of everything written so far (not itself summed), waits for every write, and returns the seal. */
  async seal(): Promise<Uint8Array> {
    await this.flush();
    const digest = this.hash.digest();
    this.send(digest, undefined);
    this.offset += digest.length;
    while (this.inFlight.length) await this.retire();
    return digest;
  }

  /** Waits for every write in flight, ignoring their outcome (after a failure, before closing). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.inFlight.map((w) => w.done));
  }
}

/** A run as an image records it: a memory run, or pages the base image holds. */
type ImageRun = PageRun | { state: 'base'; pfn: number; count: number };

function runRecord(run: ImageRun): Uint8Array {
  const b = new Uint8Array(RUN_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, STATE_CODE[run.state], true);
  v.setBigUint64(8, BigInt(run.pfn), true);
  v.setBigUint64(16, BigInt(run.count), true);
  return b;
}

/** The runs of the spans; with a base, DATA runs split where the base holds the pages unchanged. */
function* allRuns(mem: PhysicalMemory, spans: IntervalSet, base: ImageOptions['base']): Generator<ImageRun> {
  for (const s of spans) {
    for (const r of mem.runs(s.start, s.end)) {
      if (r.state !== 'data' || !base) {
        yield r;
        continue;
      }
      let cur = r.pfn;
      const end = r.pfn + r.count;
      for (const b of base.pages.within(cur, end)) {
        if (b.start > cur) yield { state: 'data', pfn: cur, count: b.start - cur };
        yield { state: 'base', pfn: b.start, count: b.end - b.start };
        cur = b.end;
      }
      if (cur < end) yield { state: 'data', pfn: cur, count: end - cur };
    }
  }
}

/** The base block of a version 3 image. */
function baseBlock(base: BaseRef): Uint8Array {
  const name = new TextEncoder().encode(base.name);
  const b = new Uint8Array(BASE_FIXED + Math.ceil(name.length / 8) * 8);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(base.length), true);
  b.set(base.seal, 8);
  v.setUint32(16, name.length, true);
  b.set(name, BASE_FIXED);
  return b;
}

export async function writeImage(mem: PhysicalMemory, path: string, opts: ImageOptions): Promise<WrittenImage> {
  const spans = mem.pageSpans(opts.ranges, 'saveImage');
  const metaJson = JSON.stringify(opts.meta ?? null);
  const meta = new TextEncoder().encode(metaJson);
  const metaPadded = Math.ceil(meta.length / 8) * 8;
  const version = opts.base ? 3 : opts.version ?? IMAGE_VERSION;
  if (opts.base) {
    if (opts.version !== undefined) throw new LuoError('EINVAL', `saveImage: an image over a base is version 3, not ${opts.version}`);
    checkBaseName(opts.base.name, 'saveImage');
    if (opts.base.seal.length !== CRC32.size) throw new LuoError('EINVAL', `saveImage: a base's seal is ${CRC32.size} bytes, not ${opts.base.seal.length}`);
  }
  const block = opts.base ? baseBlock(opts.base) : new Uint8Array(0);
  // The runs first, so the header can state the file length.
  const runs = [...allRuns(mem, spans, opts.base)];
  const runCount = runs.length;
  let dataPages = 0;
  let basePages = 0;
  const written = new IntervalSet();
  for (const r of runs) {
    if (r.state === 'base') basePages += r.count;
    if (r.state !== 'data') continue;
    dataPages += r.count;
    written.add(r.pfn, r.pfn + r.count);
  }
  const seal = sealOf(version);
  if (!seal) throw new LuoError('EINVAL', `saveImage: this Node cannot write image format version ${version} (zlib.crc32 needs Node 20.15 or later)`);
  const fileLength = IMAGE_HEADER_SIZE + metaPadded + block.length + spans.count * RANGE_SIZE + runCount * RUN_SIZE + dataPages * PAGE_SIZE + seal.size;

  const header = new Uint8Array(IMAGE_HEADER_SIZE);
  const hv = new DataView(header.buffer);
  header.set(new TextEncoder().encode(IMAGE_MAGIC), 0);
  hv.setUint32(8, version, true);
  hv.setUint32(12, PAGE_SIZE, true);
  hv.setBigUint64(16, mem.size, true);
  hv.setUint32(24, meta.length, true);
  hv.setUint32(28, spans.count, true);
  hv.setBigUint64(32, BigInt(runCount), true);
  hv.setBigUint64(40, BigInt(dataPages), true);
  hv.setBigUint64(48, BigInt(fileLength), true);
  hv.setBigUint64(56, BigInt(block.length), true);

  const tmp = `${path}.tmp`;
  let fh: FileHandle | undefined;
  let w: ImageWriter | undefined;
  try {
    fh = await open(tmp, 'w', 0o600);
    opts.progress?.opened(tmp);
    w = new ImageWriter(fh, seal, opts.progress);
    await w.put(header);
    const metaBuf = new Uint8Array(metaPadded);
    metaBuf.set(meta);
    await w.put(metaBuf);
    if (block.length) await w.put(block);
    for (const s of spans) {
      const b = new Uint8Array(RANGE_SIZE);
      const v = new DataView(b.buffer);
      v.setBigUint64(0, BigInt(s.start), true);
      v.setBigUint64(8, BigInt(s.end), true);
      await w.put(b);
    }
    for (const r of runs) {
      const p = w.put(runRecord(r));
      if (p) await p;
      if (r.state !== 'data') continue;
      for (let i = 0; i < r.count; i++) {
        // a page dropped since the runs were listed: only a live memory (a pre-copy, which tracks
        // changes and rewrites it later) changes under the writer
        const q = w.put(mem.storedPage(r.pfn + i) ?? ZERO_PAGE);
        if (q) await q;
      }
    }
    const digest = await w.seal();
    if (w.offset !== fileLength) throw new LuoError('EIO', `saveImage: wrote ${w.offset} bytes, expected ${fileLength}`);
    const durable = opts.durable ?? true;
    if (durable) await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
    if (durable) {
      const dir = await open(dirname(path), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }
    return { length: fileLength, seal: digest, dataPages: written, basePages };
  } catch (e) {
    await w?.settle();
    if (fh) await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    if (isLuoError(e)) throw e;
    throw new LuoError('EIO', `saveImage: writing ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Streams a file in 1 MiB chunks, the next one read while the current one is parsed, and tracks
 * the byte offset. Every byte before the trailing seal is summed as its chunk is reached, so the
 * digest is ready when the parser reaches the trailer.
 */
class ImageReader {
  private buf: Uint8Array = new Uint8Array(0);
  private pos = 0;
  /** The chunk after buf, being read while buf is used. */
  private ahead: Promise<Uint8Array> | undefined;
  private fileOffset = 0; // offset of buf[0] in the file
  private readonly hash: Summer;
  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    readonly length: number,
    seal: Seal,
    /** Bytes from this offset on are not summed. */
    private readonly hashEnd: number,
    /** Set when another process is still writing the file: reads wait for their bytes. */
    private readonly stream?: ImageStream,
  ) {
    this.hash = seal.make();
  }

  get offset(): number {
    return this.fileOffset + this.pos;
  }

  /** The next n bytes if they are buffered already (no await: the per-page path), else undefined. */
  takeBuffered(n: number): Uint8Array | undefined {
    if (this.pos + n > this.buf.length) return undefined;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Reads the chunk at `from` (up to CHUNK bytes, no further than the length), waiting on a stream. */
  private readChunk(from: number): Promise<Uint8Array> {
    const p = (async () => {
      const want = Math.min(CHUNK, this.length - from);
      if (this.stream) await this.stream.until(from + want);
      const b = new Uint8Array(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await this.fh.read(b, got, want - got, from + got);
        if (bytesRead === 0) throw new LuoError('EIO', `loadImage ${this.path}: file shrank while reading at offset ${from + got}`);
        got += bytesRead;
      }
      return b;
    })();
    p.catch(() => undefined); // awaited by advance(), which reports a failure
    return p;
  }

  /** Moves to the next chunk (read while this one was used), sums it, and starts reading the one after. */
  private async advance(): Promise<void> {
    const from = this.fileOffset + this.buf.length;
    const chunk = await (this.ahead ?? this.readChunk(from));
    const hashed = Math.max(0, Math.min(chunk.length, this.hashEnd - from));
    if (hashed > 0) this.hash.update(hashed === chunk.length ? chunk : chunk.subarray(0, hashed));
    this.fileOffset = from;
    this.buf = chunk;
    this.pos = 0;
    const after = from + chunk.length;
    this.ahead = after < this.length ? this.readChunk(after) : undefined;
  }

  /** The next n bytes, as a view that stays valid (buffers are never reused). */
  async take(n: number, what: string): Promise<Uint8Array> {
    if (this.offset + n > this.length) {
      throw new LuoError('EIO', `loadImage ${this.path}: truncated: ${what} needs ${n} byte(s) at offset ${this.offset}, file has ${this.length}`);
    }
    if (this.pos === this.buf.length && n > 0) await this.advance();
    if (this.pos + n <= this.buf.length) {
      const out = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      return out;
    }
    // across chunks: gathered into a buffer of its own
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.pos === this.buf.length) await this.advance();
      const k = Math.min(n - filled, this.buf.length - this.pos);
      out.set(this.buf.subarray(this.pos, this.pos + k), filled);
      filled += k;
      this.pos += k;
    }
    return out;
  }

  /** Waits for a read still in flight (before the file is closed). */
  async settle(): Promise<void> {
    await this.ahead?.catch(() => undefined);
  }

  /** The seal of bytes [0, hashEnd); valid once they have all been read. */
  digest(): Uint8Array {
    return this.hash.digest();
  }
}

/** The length a streamed image's header states, once its header is written (0 when it says nothing usable). */
async function streamedLength(fh: FileHandle, stream: ImageStream): Promise<number> {
  await stream.until(IMAGE_HEADER_SIZE);
  const head = new Uint8Array(IMAGE_HEADER_SIZE);
  const { bytesRead } = await fh.read(head, 0, IMAGE_HEADER_SIZE, 0);
  if (bytesRead < IMAGE_HEADER_SIZE) return bytesRead;
  const stated = new DataView(head.buffer).getBigUint64(48, true);
  return stated > BigInt(Number.MAX_SAFE_INTEGER) ? IMAGE_HEADER_SIZE : Number(stated);
}

function u64num(v: DataView, off: number, what: string, path: string, base: number): number {
  const x = v.getBigUint64(off, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new LuoError('EIO', `loadImage ${path}: ${what} ${hex(x)} at offset ${base + off} is too large`);
  return Number(x);
}

/**
 * The base a version 3 image names: the one already loaded when it is the same file (name, length
 * and seal), else read from the image's directory (a version 2 image, checked the same way).
 */
async function resolveBase(
  path: string, ref: BaseRef, ramSize: bigint, makeMemory: (size: bigint) => PhysicalMemory, loaded: LoadedBase | undefined,
): Promise<PhysicalMemory> {
  const same = (b: BaseRef): boolean => b.name === ref.name && b.length === ref.length && b.seal.every((x, i) => x === ref.seal[i]);
  if (loaded && same(loaded) && loaded.memory.size === ramSize) return loaded.memory;
  const file = join(dirname(path), ref.name);
  let got: LoadedImage;
  try {
    got = await readImage(file, makeMemory, { expectSize: ramSize, baseAllowed: false });
  } catch (e) {
    const why = isLuoError(e) ? e.detail : (e as Error).message;
    throw new LuoError(isLuoError(e) && e.errno === 'ENOENT' ? 'ENOENT' : 'EIO', `loadImage ${path}: its base image ${ref.name} (written by the same kexec, kept beside it) cannot be used: ${why}`, { cause: e });
  }
  if (!same({ name: ref.name, length: got.length, seal: got.seal })) {
    throw new LuoError('EIO', `loadImage ${path}: its base image ${file} is not the one it was written over (length ${got.length}, expected ${ref.length}, or another seal)`);
  }
  return got.memory;
}

export async function readImage(
  path: string,
  makeMemory: (size: bigint) => PhysicalMemory,
  opts: { expectSize?: bigint; stream?: ImageStream; base?: LoadedBase; baseAllowed?: boolean } = {},
): Promise<LoadedImage> {
  const stream = opts.stream;
  let fh: FileHandle;
  try {
    try {
      fh = await open(path, 'r');
    } catch (e) {
      // a streamed image finished and renamed before this reader came to open it: read it whole
      if (!stream || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fh = await open(await stream.complete(), 'r');
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new LuoError(code === 'ENOENT' ? 'ENOENT' : 'EIO', `loadImage: cannot open ${path}: ${(e as Error).message}`, { cause: e });
  }
  let reader: ImageReader | undefined;
  try {
    // a streamed image is as long as its header says (checked against the file once it is complete)
    const length = stream ? await streamedLength(fh, stream) : (await fh.stat()).size;
    // Magic first, even on a short file, so a foreign file is never reported as a truncated image;
    // then the version, which says how the file is sealed.
    const peek = new Uint8Array(Math.min(length, 12));
    if (peek.length) await fh.read(peek, 0, peek.length, 0);
    const magic = new TextEncoder().encode(IMAGE_MAGIC);
    for (let i = 0; i < Math.min(peek.length, magic.length); i++) {
      if (peek[i] !== magic[i]) throw new LuoError('EINVAL', `loadImage ${path}: not a luo memory image (bad magic at offset ${i})`);
    }
    if (length < IMAGE_HEADER_SIZE) {
      throw new LuoError('EIO', `loadImage ${path}: truncated: file is ${length} bytes, the header needs ${IMAGE_HEADER_SIZE}`);
    }
    const version = new DataView(peek.buffer).getUint32(8, true);
    const seal = sealOf(version);
    if (!seal) {
      throw new LuoError('EINVAL', `loadImage ${path}: unsupported image format version ${version} at offset 8 (this build reads ${[1, 2, 3].filter((v) => sealOf(v)).join(', ')})`);
    }
    const r = (reader = new ImageReader(fh, path, length, seal, length - seal.size, stream));
    const head = await r.take(IMAGE_HEADER_SIZE, 'header');
    const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const pageSize = hv.getUint32(12, true);
    if (pageSize !== PAGE_SIZE) throw new LuoError('EINVAL', `loadImage ${path}: page size ${pageSize} at offset 12, expected ${PAGE_SIZE}`);
    const ramSize = hv.getBigUint64(16, true);
    if (ramSize === 0n || ramSize % BigInt(PAGE_SIZE) !== 0n || ramSize > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new LuoError('EIO', `loadImage ${path}: corrupt RAM size ${hex(ramSize)} at offset 16`);
    }
    if (opts.expectSize !== undefined && ramSize !== opts.expectSize) {
      throw new LuoError('EINVAL', `loadImage ${path}: RAM size mismatch: image has ${hex(ramSize)} (offset 16), machine has ${hex(opts.expectSize)}`);
    }
    const metaLen = hv.getUint32(24, true);
    const rangeCount = hv.getUint32(28, true);
    const runCount = u64num(hv, 32, 'run count', path, 0);
    const dataPages = u64num(hv, 40, 'DATA page count', path, 0);
    const fileLength = u64num(hv, 48, 'file length', path, 0);
    const blockLen = version === 3 ? u64num(hv, 56, 'base block length', path, 0) : 0;
    if (version < 3 && hv.getBigUint64(56, true) !== 0n) throw new LuoError('EIO', `loadImage ${path}: reserved header field at offset 56 is not zero`);
    if (blockLen !== 0 && (blockLen < BASE_FIXED + 8 || blockLen > BASE_FIXED + MAX_BASE_NAME + 1 || blockLen % 8 !== 0)) {
      throw new LuoError('EIO', `loadImage ${path}: corrupt header: base block length ${blockLen} at offset 56`);
    }
    if (blockLen !== 0 && opts.baseAllowed === false) throw new LuoError('EINVAL', `loadImage ${path}: a base image is written over no other (it names a base itself)`);
    const metaPadded = Math.ceil(metaLen / 8) * 8;
    const expected = IMAGE_HEADER_SIZE + metaPadded + blockLen + rangeCount * RANGE_SIZE + runCount * RUN_SIZE + dataPages * PAGE_SIZE + seal.size;
    if (fileLength !== expected) {
      throw new LuoError('EIO', `loadImage ${path}: corrupt header: file length ${fileLength} at offset 48 disagrees with the counts (${expected})`);
    }
    if (length < fileLength) throw new LuoError('EIO', `loadImage ${path}: truncated: file is ${length} bytes, header at offset 48 says ${fileLength}`);
    if (length > fileLength) throw new LuoError('EIO', `loadImage ${path}: ${length - fileLength} unexpected byte(s) after offset ${fileLength}`);

    const metaOff = r.offset;
    const metaBytes = await r.take(metaPadded, 'meta');
    let meta: unknown;
    try {
      meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(metaBytes.subarray(0, metaLen)));
    } catch (e) {
      throw new LuoError('EIO', `loadImage ${path}: corrupt meta JSON at offset ${metaOff}: ${(e as Error).message}`, { cause: e });
    }

    let base: PhysicalMemory | undefined;
    let baseName: string | undefined;
    if (blockLen) {
      const at = r.offset;
      const b = await r.take(blockLen, 'base block');
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const nameLen = v.getUint32(16, true);
      let name = '';
      try {
        if (v.getUint32(12, true) !== 0 || v.getUint32(20, true) !== 0 || Math.ceil(nameLen / 8) * 8 !== blockLen - BASE_FIXED) throw new Error('bad lengths or reserved fields');
        if (b.subarray(BASE_FIXED + nameLen).some((x) => x !== 0)) throw new Error('padding is not zero');
        name = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(BASE_FIXED, BASE_FIXED + nameLen));
        checkBaseName(name, 'base block');
      } catch (e) {
        throw new LuoError('EIO', `loadImage ${path}: corrupt base block at offset ${at}: ${isLuoError(e) ? e.detail : (e as Error).message}`);
      }
      const ref = { name, length: u64num(v, 0, 'base length', path, at), seal: b.slice(8, 16) };
      baseName = name;
      // (a streamed image's temporary name is in the same directory as its final one)
      base = await resolveBase(path, ref, ramSize, makeMemory, opts.base);
    }
    const memory = makeMemory(ramSize);
    memory.poisonExcept([]);
    const nrPages = memory.nrPages;
    const ranges: { start: number; end: number }[] = [];
    let prevEnd = 0;
    for (let i = 0; i < rangeCount; i++) {
      const at = r.offset;
      const b = await r.take(RANGE_SIZE, `range ${i}`);
      const v = new DataView(b.buffer, b.byteOffset, RANGE_SIZE);
      const start = u64num(v, 0, `range ${i} start`, path, at);
      const end = u64num(v, 8, `range ${i} end`, path, at);
      if (start < prevEnd || end <= start || end > nrPages) {
        throw new LuoError('EIO', `loadImage ${path}: corrupt range ${i} at offset ${at}: pfns [${start}, ${end}) (previous end ${prevEnd}, RAM ${nrPages} pages)`);
      }
      ranges.push({ start, end });
      prevEnd = end;
    }
    // Runs must tile the ranges exactly, in order.
    let ri = 0;
    let cursor = ranges[0]?.start ?? 0;
    let seenData = 0;
    for (let i = 0; i < runCount; i++) {
      const at = r.offset;
      const b = await r.take(RUN_SIZE, `run ${i}`);
      const v = new DataView(b.buffer, b.byteOffset, RUN_SIZE);
      const code = v.getUint32(0, true);
      const state = CODE_STATE[code];
      const pfn = u64num(v, 8, `run ${i} pfn`, path, at);
      const count = u64num(v, 16, `run ${i} count`, path, at);
      if (ri < ranges.length && cursor === ranges[ri]!.end) {
        ri++;
        cursor = ranges[ri]?.start ?? cursor;
      }
      const range = ranges[ri];
      if (state === undefined || (state === 'base' && !base) || v.getUint32(4, true) !== 0 || count === 0 || range === undefined || pfn !== cursor || pfn + count > range.end) {
        throw new LuoError('EIO', `loadImage ${path}: corrupt run ${i} at offset ${at}: state ${code}, pfns [${pfn}, ${pfn + count}), expected to start at pfn ${cursor}`);
      }
      if (state === 'data') {
        seenData += count;
        if (seenData > dataPages) throw new LuoError('EIO', `loadImage ${path}: run ${i} at offset ${at} has more DATA pages than the header's ${dataPages}`);
        // zero-copy: each page keeps a view of the chunk it was read into (chunks are never reused)
        for (let p = 0; p < count; p++) {
          const page = r.takeBuffered(PAGE_SIZE) ?? (await r.take(PAGE_SIZE, `page ${pfn + p}`));
          memory.setPageData(pfn + p, page, { adopt: true });
        }
      } else if (state === 'base') {
        // the base's pages themselves (its chunks are never reused): nothing is copied
        for (let p = pfn; p < pfn + count; p++) {
          const page = base!.storedPage(p);
          if (!page) throw new LuoError('EIO', `loadImage ${path}: corrupt run ${i} at offset ${at}: pfn ${p} is not a DATA page of its base image`);
          memory.setPageData(p, page, { adopt: true });
        }
      } else {
        memory.setRunState(pfn, count, state);
      }
      cursor = pfn + count;
    }
    if (ri < ranges.length && cursor === ranges[ri]!.end) ri++;
    if (ri !== ranges.length || seenData !== dataPages) {
      throw new LuoError('EIO', `loadImage ${path}: corrupt image: runs end at pfn ${cursor} (offset ${r.offset}) before covering every saved range`);
    }
    const hashAt = r.offset;
    const stored = await r.take(seal.size, seal.name);
    const digest = r.digest();
    for (let i = 0; i < seal.size; i++) {
      if (stored[i] !== digest[i]) throw new LuoError('EIO', `loadImage ${path}: checksum mismatch: ${seal.name} at offset ${hashAt} does not match the contents`);
    }
    if (stream) {
      await stream.complete();
      const size = (await fh.stat()).size;
      if (size !== fileLength) throw new LuoError('EIO', `loadImage ${path}: the finished file is ${size} bytes, its header at offset 48 says ${fileLength}`);
    }
    return { memory, meta, length: fileLength, seal: stored.slice(), ...(baseName !== undefined ? { base: baseName } : {}) };
  } catch (e) {
    if (isLuoError(e)) throw e;
    throw new LuoError('EIO', `loadImage ${path}: ${(e as Error).message}`, { cause: e });
  } finally {
    await reader?.settle();
    await fh.close();
  }
}
