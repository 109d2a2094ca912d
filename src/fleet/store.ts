/**
 * The fleet's one door to etcd: keys, ranges by prefix, transactions with compares, leases that keep
 * themselves alive, and watches from a revision. Everything else in src/fleet speaks these types,
 * never the etcd3 client (CommonJS, lightly maintained): this module is where it is contained.
 */
import { Etcd3, type IKeyValue, type Lease } from 'etcd3';
import { LuoError } from '../errno.ts';

export interface Kv {
  readonly key: string;
  readonly value: string;
  readonly createRevision: bigint;
  readonly modRevision: bigint;
  /** The lease the key is attached to ("0": none). */
  readonly lease: string;
}

/** One condition of a transaction: a key's create/mod revision, value or lease compared to `value`. */
export interface Compare {
  readonly key: string;
  readonly target: 'create' | 'mod' | 'value' | 'lease';
  readonly op: '==' | '!=' | '<' | '>';
  readonly value: string | number | bigint;
}

export type Op = { readonly put: string; readonly value: string; readonly lease?: string } | { readonly del: string };

export interface TxnResult {
  readonly succeeded: boolean;
  readonly revision: bigint;
}

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly kv: Kv;
}

export interface LeaseHandle {
  readonly id: string;
  /** Resolves when etcd says the lease is gone (expired or revoked) or keep-alive failed for good. */
  readonly lost: Promise<void>;
  revoke(): Promise<void>;
}

const TARGET = { create: 'Create', mod: 'Mod', value: 'Value', lease: 'Lease' } as const;

function kvOf(kv: IKeyValue): Kv {
  return { key: kv.key.toString(), value: kv.value.toString(), createRevision: BigInt(kv.create_revision), modRevision: BigInt(kv.mod_revision), lease: String(kv.lease) };
}

/** Wraps a client error: UNAVAILABLE and friends become ECONNREFUSED naming the endpoints. */
function storeError(e: unknown, what: string, endpoints: readonly string[]): LuoError {
  const msg = e instanceof Error ? e.message : String(e);
  return new LuoError('ECONNREFUSED', `etcd ${endpoints.join(',')}: ${what}: ${msg}`, { cause: e });
}

/**
 * The message of an error by which etcd refused a transaction as larger than its --max-txn-ops
 * allows (undefined for any other error): batching callers then go one transaction at a time.
 */
export function txnTooLarge(e: unknown): string | undefined {
  const why = e instanceof Error ? e.message : String(e);
  return /too many operations/i.test(why) ? why : undefined;
}

export class FleetStore {
  private constructor(private readonly client: Etcd3, readonly endpoints: readonly string[]) {}

  /** Connects (lazily, as the client does) and checks that a member answers. */
  static async connect(endpoints: readonly string[]): Promise<FleetStore> {
    if (!endpoints.length) throw new LuoError('EINVAL', 'no etcd endpoints (give --etcd URL,... or set LUO_ETCD)');
    const client = new Etcd3({ hosts: [...endpoints], dialTimeout: 3000 });
    const s = new FleetStore(client, endpoints);
    try {
      await client.get('luo/fleet/probe').string();
    } catch (e) {
      client.close();
      throw storeError(e, 'no member answers', endpoints);
    }
    return s;
  }

  /** Connects once a member answers (a cluster just started): up to `attempts` tries 100 ms apart. */
  static async connectWhenReady(endpoints: readonly string[], attempts: number): Promise<FleetStore> {
    for (let i = 1; ; i++) {
      try {
        return await FleetStore.connect(endpoints);
      } catch (e) {
        if (i >= attempts) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw storeError(e, what, this.endpoints);
    }
  }

  async get(key: string): Promise<Kv | undefined> {
    const r = await this.call(`get ${key}`, () => this.client.get(key).exec());
    return r.kvs[0] ? kvOf(r.kvs[0]) : undefined;
  }

  /** Every key under `prefix`, sorted by key, and the store revision they were read at. */
  async range(prefix: string): Promise<{ kvs: Kv[]; revision: bigint }> {
    const r = await this.call(`range ${prefix}`, () => this.client.getAll().prefix(prefix).sort('Key', 'Ascend').exec());
    return { kvs: r.kvs.map(kvOf), revision: BigInt(r.header.revision) };
  }

  /** How many keys are under `prefix` (counted by etcd; no values sent). */
  async count(prefix: string): Promise<number> {
    return this.call(`count ${prefix}`, () => this.client.getAll().prefix(prefix).count());
  }

  async put(key: string, value: string, lease?: string): Promise<bigint> {
    const r = await this.call(`put ${key}`, () => {
      const b = this.client.put(key).value(value);
      return (lease ? b.lease(lease) : b).exec();
    });
    return BigInt(r.header.revision);
  }

  async delete(key: string): Promise<void> {
    await this.call(`delete ${key}`, () => this.client.delete().key(key).exec());
  }

  /** All compares true: the success ops, atomically; else the failure ops. */
  async txn(compares: readonly Compare[], success: readonly Op[], failure: readonly Op[] = []): Promise<TxnResult> {
    if (!compares.length) throw new LuoError('EINVAL', 'a transaction needs at least one compare');
    const op = (o: Op) => ('put' in o ? (o.lease ? this.client.put(o.put).value(o.value).lease(o.lease) : this.client.put(o.put).value(o.value)) : this.client.delete().key(o.del));
    const [first, ...rest] = compares;
    const val = (c: Compare): string | number => (typeof c.value === 'bigint' ? Number(c.value) : c.value);
    const r = await this.call('txn', () => {
      let b = this.client.if(first!.key, TARGET[first!.target], first!.op, val(first!));
      for (const c of rest) b = b.and(c.key, TARGET[c.target], c.op, val(c));
      return b.then(...success.map(op)).else(...failure.map(op)).commit();
    });
    return { succeeded: r.succeeded, revision: BigInt(r.header.revision) };
  }

  /** A lease of `ttl` seconds kept alive until revoked or lost. */
  async grantLease(ttl: number): Promise<LeaseHandle> {
    const lease: Lease = this.client.lease(ttl);
    let onLost!: () => void;
    const lost = new Promise<void>((r) => (onLost = r));
    lease.on('lost', () => onLost());
    const id = await this.call('lease grant', () => lease.grant());
    return {
      id,
      lost,
      revoke: async () => {
        try {
          await lease.revoke();
        } finally {
          onLost();
        }
      },
    };
  }

  /**
   * Calls `on` for every change under `prefix` after `revision` (in order); resolves to a stop
   * function. The client re-establishes a broken stream by itself from the last revision seen; when
   * etcd ends the watch instead (the revisions it needs were compacted away while it was behind),
   * `lost` is called once and no more events come: the caller reads again and watches anew.
   */
  async watch(prefix: string, revision: bigint, on: (e: WatchEvent) => void, lost?: (err: LuoError) => void): Promise<() => Promise<void>> {
    const w = await this.call(`watch ${prefix}`, () => this.client.watch().prefix(prefix).startRevision(String(revision + 1n)).create());
    w.on('put', (kv) => on({ type: 'put', kv: kvOf(kv) }));
    w.on('delete', (kv) => on({ type: 'delete', kv: kvOf(kv) }));
    let ended = false;
    w.on('error', (e: unknown) => {
      if (ended) return;
      ended = true;
      lost?.(new LuoError('ESTALE', `etcd ${this.endpoints.join(',')}: the watch of ${prefix} ended: ${e instanceof Error ? e.message : String(e)}`));
    });
    return async () => {
      ended = true;
      await w.cancel();
    };
  }

  close(): void {
    this.client.close();
  }
}

/**
 * Runs `attempt` until it succeeds or `stopped` says to give up, waiting 100 ms, then twice as long
 * each time up to 5 s: for reading again after etcd ended a watch, while etcd may be away.
 */
export async function retryWithBackoff(attempt: () => Promise<void>, stopped: () => boolean): Promise<void> {
  for (let delay = 100; !stopped(); delay = Math.min(delay * 2, 5000)) {
    try {
      await attempt();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Endpoints from --etcd, else LUO_ETCD (comma-separated URLs). */
export function etcdEndpoints(flag: string | undefined): string[] {
  return (flag ?? process.env['LUO_ETCD'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}
