/**
 * A file handler for tests, in the spirit of the kernel's CONFIG_LIVEUPDATE_TEST module: its files
 * carry a u64 payload kept in a preserved page, and any callback can be made to fail on demand.
 */
import { LuoError, type ErrnoName } from '../../src/errno.ts';
import type { FileHandler, FileOpArgs, KernelFile } from '../../src/luo/file-handler.ts';
import type { Kernel } from '../../src/kernel/kernel.ts';

export class TestFile implements KernelFile {
  readonly kind = 'luo-test';
  pos = 0;
  luoRefs?: number;
  constructor(public payload: bigint, readonly id: number = TestFile.nextId++) {}
  static nextId = 1;
}

export type Stage = 'preserve' | 'freeze' | 'retrieve' | 'finish' | 'canFinish';

export interface TestHandler extends FileHandler {
  /** Make the next call of `stage` on files whose payload matches (or any) fail with `errno`. */
  failOn: Map<Stage, { errno: ErrnoName; payload?: bigint; times: number }>;
  calls: string[];
}

export function createTestHandler(kernel: Kernel, compatible = 'luo-test-v1'): TestHandler {
  const mem = kernel.machine.memory;
  const kho = () => kernel.kho!;
  const failOn = new Map<Stage, { errno: ErrnoName; payload?: bigint; times: number }>();
  const calls: string[] = [];
  const maybeFail = (stage: Stage, payload: bigint | undefined): void => {
    const f = failOn.get(stage);
    if (!f || (f.payload !== undefined && f.payload !== payload)) return;
    if (--f.times <= 0) failOn.delete(stage);
    throw new LuoError(f.errno, `injected ${stage} failure`);
  };
  const payloadOf = (a: FileOpArgs): bigint | undefined => (a.file instanceof TestFile ? a.file.payload : undefined);
  const h: TestHandler = {
    compatible,
    failOn,
    calls,
    ops: {
      canPreserve: (_h, f) => f instanceof TestFile,
      preserve(a) {
        calls.push(`preserve ${payloadOf(a)}`);
        maybeFail('preserve', payloadOf(a));
        const pa = kho().allocPreserve(16);
        mem.writeU64(pa, (a.file as TestFile).payload);
        a.serializedData = pa;
      },
      unpreserve(a) {
        calls.push(`unpreserve ${payloadOf(a)}`);
        kho().unpreserveFree(a.serializedData);
      },
      freeze(a) {
        calls.push(`freeze ${payloadOf(a)}`);
        maybeFail('freeze', payloadOf(a));
        mem.writeU64(a.serializedData, (a.file as TestFile).payload); // capture the latest value
        mem.writeU64(a.serializedData + 8n, 1n); // frozen marker
      },
      unfreeze(a) {
        calls.push(`unfreeze ${payloadOf(a)}`);
        mem.writeU64(a.serializedData + 8n, 0n);
      },
      retrieve(a) {
        const payload = mem.readU64(a.serializedData);
        calls.push(`retrieve ${payload}`);
        maybeFail('retrieve', payload);
        a.file = new TestFile(payload);
      },
      canFinish(a) {
        const payload = a.file instanceof TestFile ? a.file.payload : mem.readU64(a.serializedData);
        try {
          maybeFail('canFinish', payload);
          return true;
        } catch {
          return false;
        }
      },
      finish(a) {
        calls.push(`finish ${a.file instanceof TestFile ? a.file.payload : 'unretrieved'} status=${a.retrieveStatus}`);
        kho().restoreFree(a.serializedData);
      },
      getId: (f) => (f instanceof TestFile ? `test:${f.id}` : f),
    },
  };
  return h;
}
