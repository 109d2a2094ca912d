/**
 * The successor's end of a kexec's channel (fd 3, a socket pair; docs/protocol.md 6): a daemon
 * started ahead of the freeze says `loaded`, then learns which image to boot. Two ways:
 *
 *   image PATH          the image is complete at PATH (every luo build understands this);
 *   stream TMP          the image is being written to TMP: `written N` lines follow as the file
 *                       grows, then `image PATH` once it is complete and renamed into place.
 *
 * Before either, still ahead of the freeze, a parent may pre-copy: `base TMP`, `written N` lines
 * and `image PATH` stream a base image (the preserved pages as they are now); the successor loads
 * it and answers `based` (or `nobase WHY`, and the kexec goes on without it). The image that
 * follows then names that base and carries only the pages changed since.
 *
 * `abort` (or the channel closing) before the image is complete means the kexec is off. Streaming
 * lets the new daemon read and check the image on one core while the old one writes it on another.
 * A parent offers streaming by starting the successor with LUO_IMAGE_STREAM=1, and pre-copy with
 * LUO_IMAGE_PRECOPY=1 as well; the successor says `loaded stream` or `loaded stream precopy` (a
 * parent that offers neither gets the plain `loaded` it expects).
 */
import { Socket } from 'node:net';
import { LuoError } from '../errno.ts';
import type { ImageStream } from '../machine/image.ts';

export const STREAM_ENV = 'LUO_IMAGE_STREAM';
export const PRECOPY_ENV = 'LUO_IMAGE_PRECOPY';

/** What the channel said before the image could be read. */
export type ImageOrder =
  | { kind: 'image'; path: string }
  | { kind: 'stream'; tmpPath: string; stream: ChannelStream }
  /** A base image to load ahead of the freeze (then `answer`, and wait for the next order). */
  | { kind: 'base'; tmpPath: string; stream: ChannelStream }
  | { kind: 'abort' }
  /** Not a kexec speaking, or it went away: why. */
  | { kind: 'gone'; why: string };

/** Longest line a parent sends (a path and a word). */
const MAX_LINE = 8192;

/**
 * An image another process writes, as its `written`/`image` lines tell: reads wait for their
 * bytes; the end of the channel before `image` fails every wait with EIO.
 */
export class ChannelStream implements ImageStream {
  private written = 0;
  private finalPath: string | undefined;
  private failure: LuoError | undefined;
  private waiters: { bytes: number; ok: (path: string) => void; fail: (e: LuoError) => void }[] = [];

  /** The path of the finished image (after `image PATH`). */
  get path(): string | undefined {
    return this.finalPath;
  }

  /** The writer gave up or the channel failed. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** One line of the channel after `stream`. */
  line(l: string): void {
    if (this.finalPath !== undefined || this.failure) return;
    const w = /^written (\d{1,16})$/.exec(l);
    const img = /^image (.+)$/.exec(l);
    if (w && Number(w[1]) >= this.written) this.written = Number(w[1]);
    else if (w) this.fail(`the kexec's channel said ${w[1]} bytes were written after ${this.written}`);
    else if (img) this.finalPath = img[1]!;
    else if (l === 'abort') this.fail('the kexec was called off while its image was being written');
    else this.fail(`the kexec's channel said ${JSON.stringify(l.slice(0, 80))} while the image was being written`);
    this.wake();
  }

  fail(why: string): void {
    if (this.finalPath !== undefined || this.failure) return;
    this.failure = new LuoError('EIO', why);
    this.wake();
  }

  private wake(): void {
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (this.failure) w.fail(this.failure);
      else if (this.finalPath !== undefined || this.written >= w.bytes) w.ok(this.finalPath ?? '');
      else keep.push(w);
    }
    this.waiters = keep;
  }

  /** Resolves once `bytes` are written or the file is finished (with its final path, else ''). */
  private wait(bytes: number): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.finalPath !== undefined || this.written >= bytes) return Promise.resolve(this.finalPath ?? '');
    return new Promise((ok, fail) => this.waiters.push({ bytes, ok, fail }));
  }

  async until(bytes: number): Promise<void> {
    await this.wait(bytes);
  }

  complete(): Promise<string> {
    return this.wait(Number.POSITIVE_INFINITY);
  }
}

/** What the parent offered (read once and removed from the environment: it is for this daemon only). */
export interface KexecOffers {
  readonly stream: boolean;
  readonly precopy: boolean;
}

/**
 * The parent's offers (LUO_IMAGE_STREAM=1, LUO_IMAGE_PRECOPY=1), read once and removed. An
 * operator's `0` stays, and every daemon started from this one keeps it (as LUO_KEXEC_PRESTART=0 does).
 */
export function takeKexecOffers(): KexecOffers {
  const take = (name: string): boolean => {
    const offered = process.env[name] === '1';
    if (offered) delete process.env[name];
    return offered;
  };
  const stream = take(STREAM_ENV);
  const precopy = take(PRECOPY_ENV);
  return { stream, precopy: stream && precopy };
}

/**
 * The successor's end of the channel on fd 3: says `loaded` once `beforeLoaded` settles, then
 * hands out the parent's orders one by one (next()); answer() writes a line back.
 */
export class KexecChannel {
  private text = '';
  /** The image being streamed (base or final): the lines after its order go to it until it completes. */
  private stream: ChannelStream | undefined;
  private readonly orders: ImageOrder[] = [];
  private waiter: ((o: ImageOrder) => void) | undefined;
  private ended: string | undefined;

  private constructor(readonly socket: Socket, private readonly offers: KexecOffers) {}

  /** Opens fd 3 (an order of kind `gone` when there is none) and says `loaded` when ready. */
  static open(beforeLoaded: () => Promise<void>, offers: KexecOffers): KexecChannel | { kind: 'gone'; why: string } {
    let socket: Socket;
    try {
      socket = new Socket({ fd: 3, readable: true, writable: true });
    } catch (e) {
      return { kind: 'gone', why: `no channel on fd 3 (${(e as Error).message})` };
    }
    return KexecChannel.attach(socket, offers, beforeLoaded);
  }

  /** The channel over a connected socket (fd 3 in a successor; any socket in tests). */
  static attach(socket: Socket, offers: KexecOffers, beforeLoaded: () => Promise<void>): KexecChannel {
    const ch = new KexecChannel(socket, offers);
    socket.on('data', (b: Buffer) => ch.data(b.toString()));
    socket.on('error', (e) => ch.gone(`the kexec's channel failed: ${e.message}`));
    socket.on('end', () => ch.gone('the kexec that started this daemon went away before handing over its image'));
    const word = offers.stream ? (offers.precopy ? 'loaded stream precopy' : 'loaded stream') : 'loaded';
    void beforeLoaded().then(() => socket.write(`${word}\n`));
    return ch;
  }

  /** The parent's next order (after `gone`, every call answers `gone`). */
  next(): Promise<ImageOrder> {
    const o = this.orders.shift();
    if (o) return Promise.resolve(o);
    if (this.ended !== undefined) return Promise.resolve({ kind: 'gone', why: this.ended });
    return new Promise((r) => (this.waiter = r));
  }

  /** Writes one line to the parent. */
  answer(line: string): void {
    this.socket.write(`${line.replace(/\n/g, ' ').slice(0, MAX_LINE - 1)}\n`);
  }

  private push(o: ImageOrder): void {
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w(o);
    else this.orders.push(o);
  }

  private gone(why: string): void {
    if (this.ended !== undefined) return;
    this.ended = why;
    this.stream?.fail(why);
    this.push({ kind: 'gone', why });
  }

  private data(chunk: string): void {
    if (this.ended !== undefined) return;
    this.text += chunk;
    let nl: number;
    while ((nl = this.text.indexOf('\n')) >= 0) {
      const l = this.text.slice(0, nl);
      this.text = this.text.slice(nl + 1);
      if (this.stream && this.stream.path === undefined && !this.stream.failed) {
        this.stream.line(l);
        if (l === 'abort') this.push({ kind: 'abort' });
        continue;
      }
      const m = /^(image|stream|base) (.+)$/.exec(l);
      if (m?.[1] === 'image') this.push({ kind: 'image', path: m[2]! });
      else if ((m?.[1] === 'stream' && this.offers.stream) || (m?.[1] === 'base' && this.offers.precopy)) {
        this.stream = new ChannelStream();
        this.push({ kind: m[1] as 'stream' | 'base', tmpPath: m[2]!, stream: this.stream });
      } else if (l === 'abort') this.push({ kind: 'abort' });
      else return this.gone(`the kexec's channel said ${JSON.stringify(l.slice(0, 80))}`);
    }
    if (this.text.length > MAX_LINE) this.gone('the kexec\'s channel sent a line longer than 8 KiB');
  }
}
