/**
 * A watched copy of a key prefix: one range read, then every change from etcd's watch applied in
 * revision order (an informer, as Kubernetes calls it). Readers get keys and their JSON values parsed
 * once per change, grouped in buckets (a campaign's keys, the hosts, the assignments) so a reconcile
 * costs what changed and what it looks at, not a read of the whole fleet. The copy may lag etcd:
 * whoever writes from it compares the revisions it read in the transaction, as before. Should etcd
 * end the watch (compacted past it), the copy is read again in full and the owner told to reset.
 */
import { type FleetStore, type Kv, retryWithBackoff, type WatchEvent } from './store.ts';

interface Entry {
  readonly kv: Kv;
  parsed?: unknown;
}

/** What a mirror tells its owner. */
export interface MirrorHandlers {
  /** After each applied change; `replayed`: a key of a full read (as a put), not a change seen live. */
  readonly change: (e: WatchEvent, m: KeyMirror, replayed: boolean) => void;
  /** Before a full read replaces the copy (etcd ended the watch: see FleetStore.watch). */
  readonly reset?: () => void;
}

export class KeyMirror {
  private readonly buckets = new Map<string, Map<string, Entry>>();
  private stopWatch: (() => Promise<void>) | undefined;
  private stopped = false;
  /** The highest revision applied. */
  revision = 0n;
  /** Full reads after the first (each after etcd ended a watch). */
  resyncs = 0;

  private constructor(private readonly store: FleetStore, private readonly root: string, private readonly bucketOf: (rest: string) => string, private readonly on: MirrorHandlers) {}

  /** Mirrors everything under `root`; `bucketOf` names the bucket of a key (given without the root). */
  static async start(store: FleetStore, root: string, bucketOf: (rest: string) => string, on: MirrorHandlers): Promise<KeyMirror> {
    const m = new KeyMirror(store, root, bucketOf, on);
    await m.load();
    return m;
  }

  /** One full read, then a watch from its revision. */
  private async load(): Promise<void> {
    const { kvs, revision } = await this.store.range(this.root);
    if (this.stopped) return;
    if (this.resyncs > 0) {
      this.buckets.clear();
      this.on.reset?.();
    }
    for (const kv of kvs) this.apply({ type: 'put', kv }, true);
    this.revision = revision;
    this.stopWatch = await this.store.watch(this.root, revision, (e) => this.apply(e, false), () => void this.resync());
  }

  /** etcd ended the watch: read everything again (retrying while etcd does not answer). */
  private async resync(): Promise<void> {
    this.resyncs++;
    await retryWithBackoff(() => this.load(), () => this.stopped);
  }

  private bucket(key: string, create: boolean): Map<string, Entry> | undefined {
    const name = this.bucketOf(key.slice(this.root.length));
    let b = this.buckets.get(name);
    if (!b && create) this.buckets.set(name, (b = new Map()));
    return b;
  }

  private set(kv: Kv): void {
    this.bucket(kv.key, true)!.set(kv.key, { kv });
  }

  private apply(e: WatchEvent, replayed: boolean): void {
    if (e.type === 'put') this.set(e.kv);
    else {
      const b = this.bucket(e.kv.key, false);
      b?.delete(e.kv.key);
      if (b && b.size === 0) this.buckets.delete(this.bucketOf(e.kv.key.slice(this.root.length)));
    }
    if (e.kv.modRevision > this.revision) this.revision = e.kv.modRevision;
    this.on.change(e, this, replayed);
  }

  get(key: string): Kv | undefined {
    return this.bucket(key, false)?.get(key)?.kv;
  }

  /** The key's value as JSON, parsed once per change. */
  value<T>(key: string): T | undefined {
    const e = this.bucket(key, false)?.get(key);
    if (!e) return undefined;
    if (e.parsed === undefined) e.parsed = JSON.parse(e.kv.value);
    return e.parsed as T;
  }

  /** Names of the buckets that hold keys. */
  bucketNames(): string[] {
    return [...this.buckets.keys()];
  }

  /** Every key of a bucket (unordered). */
  keysOf(bucket: string): IterableIterator<string> {
    return (this.buckets.get(bucket) ?? new Map<string, Entry>()).keys();
  }

  size(bucket: string): number {
    return this.buckets.get(bucket)?.size ?? 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopWatch?.();
  }
}
