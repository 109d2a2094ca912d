/**
 * Group commit of independent etcd transactions (a host runner's `updating` and result writes):
 * the transactions asked for during one turn of the event loop go to etcd together at its end
 * (setImmediate), up to MAX_BATCH per etcd transaction, several batches in flight at once — a
 * runner computing a burst of updates asks for their writes in one turn, and never waits for an
 * earlier batch to send the next. A batch is all or none, so one whose compares do not all hold is
 * tried again transaction by transaction, each with its own failure ops: the outcome of every
 * transaction is the one it would have had alone. An etcd whose --max-txn-ops is lower than a
 * batch needs gets one transaction each from then on (said once).
 */
import { type Compare, type FleetStore, type Op, type TxnResult, txnTooLarge } from './store.ts';

/** Transactions per batch: 16 result writes are 64 operations, half etcd's default limit (128). */
export const MAX_BATCH = 16;

export interface TxnRequest {
  readonly compares: readonly Compare[];
  readonly success: readonly Op[];
  readonly failure?: readonly Op[];
}

interface Pending {
  readonly req: TxnRequest;
  readonly resolve: (r: TxnResult) => void;
  readonly reject: (e: unknown) => void;
}

const opKey = (o: Op): string => ('put' in o ? o.put : o.del);

export class TxnBatcher {
  private readonly queue: Pending[] = [];
  private scheduled = false;
  private refused = false;
  /** etcd transactions sent, and the transactions asked for (for tests and the status line). */
  sent = 0;
  asked = 0;

  constructor(private readonly store: FleetStore, private readonly log?: (msg: string) => void) {}

  /** The transaction, alone or in a batch: resolves as store.txn would have. */
  txn(req: TxnRequest): Promise<TxnResult> {
    this.asked++;
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  /** Sends everything asked for so far, in batches, all at once. */
  private flush(): void {
    this.scheduled = false;
    while (this.queue.length) void this.run(this.next());
  }

  /** The next batch: in order, up to MAX_BATCH, stopping before an op on a key the batch writes already (etcd refuses that). */
  private next(): Pending[] {
    const batch: Pending[] = [];
    const written = new Set<string>();
    while (this.queue.length && batch.length < (this.refused ? 1 : MAX_BATCH)) {
      const keys = this.queue[0]!.req.success.map(opKey);
      if (batch.length && keys.some((k) => written.has(k))) break;
      for (const k of keys) written.add(k);
      batch.push(this.queue.shift()!);
    }
    return batch;
  }

  private async run(batch: Pending[]): Promise<void> {
    if (batch.length > 1) {
      try {
        this.sent++;
        const r = await this.store.txn(batch.flatMap((p) => p.req.compares), batch.flatMap((p) => p.req.success));
        if (r.succeeded) {
          for (const p of batch) p.resolve(r);
          return;
        }
      } catch (e) {
        const why = txnTooLarge(e);
        if (why !== undefined) {
          this.refused = true;
          this.log?.(`etcd refused ${batch.length} transactions in one (${why}): one transaction each from now on`);
        }
        // anything else (etcd away): each is tried alone and reports its own error
      }
    }
    await Promise.all(batch.map(async (p) => {
      try {
        this.sent++;
        p.resolve(await this.store.txn(p.req.compares, p.req.success, p.req.failure ?? []));
      } catch (e) {
        p.reject(e);
      }
    }));
  }
}
