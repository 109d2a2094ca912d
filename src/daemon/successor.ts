/**
 * The successor's end of a kexec's channel (fd 3, a socket pair; docs/protocol.md 6): a daemon
 * started ahead of the freeze says `loaded`, then learns which image to boot. Two ways:
 *
 *   image PATH          the image is complete at PATH (every luo build understands this);
 *   stream TMP          the image is being written to TMP: `written N` lines follow as the file
 *                       grows, then `image PATH` once it is complete and renamed into place.
 *
 * `abort` (or the channel closing) before the image is complete means the kexec is off. Streaming
 * lets the new daemon read and check the image on one core while the old one writes it on another.
 * A parent offers streaming by starting the successor with LUO_IMAGE_STREAM=1; the successor then
 * says `loaded stream` (a parent that does not set it gets the plain `loaded` it expects).
 */
import { Socket } from 'node:net';
import { LuoError } from '../errno.ts';
import type { ImageStream } from '../machine/image.ts';

export const STREAM_ENV = 'LUO_IMAGE_STREAM';

/** What the channel said before the image could be read. */
export type ImageOrder =
  | { kind: 'image'; path: string; channel: Socket }
  | { kind: 'stream'; tmpPath: string; stream: ChannelStream; channel: Socket }
  | { kind: 'abort'; channel: Socket }
  /** Not a kexec speaking, or it went away: why. */
  | { kind: 'gone'; channel: Socket | undefined; why: string };

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

/**
 * The parent's offer to stream (LUO_IMAGE_STREAM=1), read once and removed from the environment:
 * it is for this daemon only. An operator's LUO_IMAGE_STREAM=0 stays, and every daemon started
 * from this one keeps it (as LUO_KEXEC_PRESTART=0 does).
 */
export function takeStreamOffer(): boolean {
  const offered = process.env[STREAM_ENV] === '1';
  if (offered) delete process.env[STREAM_ENV];
  return offered;
}

/**
 * Opens the channel on fd 3, says `loaded` (`loaded stream` when the parent offered streaming)
 * once `beforeLoaded` settles, and waits for the parent's order.
 */
export function awaitImageOrder(beforeLoaded: () => Promise<void>, canStream: boolean): Promise<ImageOrder> {
  let channel: Socket;
  try {
    channel = new Socket({ fd: 3, readable: true, writable: true });
  } catch (e) {
    return Promise.resolve({ kind: 'gone', channel: undefined, why: `no channel on fd 3 (${(e as Error).message})` });
  }
  return new Promise((resolve) => {
    let text = '';
    let stream: ChannelStream | undefined;
    let settled = false;
    const settle = (o: ImageOrder): void => {
      if (!settled) resolve(o);
      settled = true;
    };
    channel.on('data', (b: Buffer) => {
      text += b.toString();
      let nl: number;
      while ((nl = text.indexOf('\n')) >= 0) {
        const l = text.slice(0, nl);
        text = text.slice(nl + 1);
        if (stream) {
          stream.line(l);
          continue;
        }
        const m = /^(image|stream) (.+)$/.exec(l);
        if (m?.[1] === 'image') return settle({ kind: 'image', path: m[2]!, channel });
        if (m?.[1] === 'stream' && canStream) {
          stream = new ChannelStream();
          settle({ kind: 'stream', tmpPath: m[2]!, stream, channel });
        } else if (l === 'abort') return settle({ kind: 'abort', channel });
        else return settle({ kind: 'gone', channel, why: `the kexec's channel said ${JSON.stringify(l.slice(0, 80))}` });
      }
      if (text.length > MAX_LINE) {
        stream?.fail('the kexec\'s channel sent a line longer than 8 KiB');
        settle({ kind: 'gone', channel, why: 'the kexec\'s channel sent a line longer than 8 KiB' });
      }
    });
    const gone = (why: string): void => {
      stream?.fail(why);
      settle({ kind: 'gone', channel, why });
    };
    channel.on('error', (e) => gone(`the kexec's channel failed: ${e.message}`));
    channel.on('end', () => gone('the kexec that started this daemon went away before handing over its image'));
    void beforeLoaded().then(() => channel.write(canStream ? 'loaded stream\n' : 'loaded\n'));
  });
}
