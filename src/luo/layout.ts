/**
 * Where each release's LUO keeps its serialized entries, from its ABI (kernel-abi.md 4.2-4.4 and
 * the v7 "Remove limits on sessions and files" series):
 * - luo-v1 (FDT era, luo_session.c @7f790dd): a 16-page session array allocated at boot, 2-page
 *   file arrays; a file no handler claims is dropped (the session deserialize ignored the error).
 * - luo-v2 (patch 3): the same arrays; luo_ser points at the session array from boot; from here on
 *   a file set's error fails the whole deserialization (patches 5-6 only moved that code).
 * - luo-v3 (patches 4-8): the session array allocated at the first session and published only
 *   when sessions exist ("defer session block allocation"), never freed while the kernel runs.
 * - luo-v4 (patch 9): sessions in linked blocks; luo-v5 (patch 10): files too.
 * - the seeds' linked-block patch: blocks of LUO_BLOCK_PGCNT 2 pages.
 */
import type { LuoAbi } from '../abi/releases.ts';
import { type ArrayShape, FILE_ARRAY, SESSION_ARRAY } from './entry-array.ts';

/** How one kind of entry is kept. */
export type StoreLayout =
  | { readonly kind: 'array'; readonly shape: ArrayShape }
  | { readonly kind: 'blocks'; readonly pages: number };

export interface EntryLayout {
  readonly sessions: StoreLayout;
  readonly files: StoreLayout;
  /** luo-v1: a file without a handler ends its session's file list quietly instead of failing. */
  readonly dropUnclaimedFiles: boolean;
}

/** luo-v3's session array: allocated on the first CREATE_SESSION, kept when sessions go. */
export const SESSION_ARRAY_DEFERRED: ArrayShape = { ...SESSION_ARRAY, lazy: true, freeWhenEmpty: false };

const array = (shape: ArrayShape): StoreLayout => ({ kind: 'array', shape });

export function entryLayoutOf(abi: LuoAbi): EntryLayout {
  if (abi.format !== 'raw') return { sessions: array(SESSION_ARRAY), files: array(FILE_ARRAY), dropUnclaimedFiles: abi.format === 'fdt' };
  const of = (k: 'array' | 'blocks', arr: ArrayShape): StoreLayout => (k === 'blocks' ? { kind: 'blocks', pages: abi.blockPages } : array(arr));
  return { sessions: of(abi.sessions, SESSION_ARRAY_DEFERRED), files: of(abi.files, FILE_ARRAY), dropUnclaimedFiles: false };
}
