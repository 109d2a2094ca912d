/**
 * A watched copy of a key prefix: one range read, then every change from etcd's watch applied in
 * revision order (an informer, as Kubernetes calls it). Readers get keys and their JSON values parsed
 * once per change, grouped in buckets (a campaign's keys, the hosts, the assignments) so a reconcile
 * costs what changed and what it looks at, not a read of the whole fleet. The copy may lag etcd:
 * whoever writes from it compares the revisions it read in the transaction, as before.
 */
import type { FleetStore, Kv, WatchEvent } from './store.ts';

interface Entry {
  readonly kv: Kv;
  parsed?: unknown;
}

export class KeyMirror {
  private readonly buckets = new Map<string, Map<string, Entry>>();
  private stopWatch: (() => Promise<void>) | undefined;
  /** The highest revision applied. */
  revision = 0n;

  private constructor(private readonly root: string, private readonly bucketOf: (rest: string) => string, private readonly onChange: (e: WatchEvent, m: KeyMirror) => void) {}

  /**
   * Mirrors everything under `root`; `bucketOf` names the bucket of a key (given without the root);
   * `onChange` runs after each applied change, the keys of the first read included (as puts).
   */
  static async start(store: FleetStore, root: string, bucketOf: (rest: string) => string, onChange: (e: WatchEvent, m: KeyMirror) => void): Promise<KeyMirror> {
    const m = new KeyMirror(root, bucketOf, onChange);
    const { kvs, revision } = await store.range(root);
    for (const kv of kvs) m.apply({ type: 'put', kv });
    m.revision = revision;
    m.stopWatch = await store.watch(root, revision, (e) => m.apply(e));
    return m;
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

  private apply(e: WatchEvent): void {
    if (e.type === 'put') this.set(e.kv);
    else {
      const b = this.bucket(e.kv.key, false);
      b?.delete(e.kv.key);
      if (b && b.size === 0) this.buckets.delete(this.bucketOf(e.kv.key.slice(this.root.length)));
    }
    if (e.kv.modRevision > this.revision) this.revision = e.kv.modRevision;
    this.onChange(e, this);
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
    await this.stopWatch?.();
  }
}
