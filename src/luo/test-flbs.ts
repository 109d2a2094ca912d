/**
 * CONFIG_LIVEUPDATE_TEST (lib/tests/liveupdate.c): three FLBs, "liveupdate-test-flb-v0" to "-v2",
 * linked to every file handler as it registers. Their preserve hands over 0xFEEDF00DCAFEBEE0 + i,
 * their retrieve checks it came back (EINVAL otherwise); they hold nothing else. With N memfds
 * preserved, the FLB page then holds three records of count N (kernel-abi.md 4.3, 7.6).
 */
import { LuoError } from '../errno.ts';
import type { Flb } from './flb.ts';

export const LIVEUPDATE_TEST_FLB_COUNT = 3;
export const LIVEUPDATE_TEST_FLB_DATA = 0xfeedf00dcafebee0n;
export const testFlbCompatible = (i: number): string => `liveupdate-test-flb-v${i}`;

/** The test module's FLBs of one kernel (one set, linked to every handler). */
export function testFlbs(): Flb[] {
  return Array.from({ length: LIVEUPDATE_TEST_FLB_COUNT }, (_, i): Flb => {
    const want = LIVEUPDATE_TEST_FLB_DATA + BigInt(i);
    return {
      compatible: testFlbCompatible(i),
      ops: {
        preserve(a) {
          a.data = want;
        },
        unpreserve() {},
        retrieve(a) {
          if (a.data !== want) throw new LuoError('EINVAL', `test FLB ${i}: data 0x${a.data.toString(16)}, expected 0x${want.toString(16)}`);
          a.obj = { index: i };
        },
        finish() {},
      },
    };
  });
}
