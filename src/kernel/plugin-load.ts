/**
 * Imports a file handler plugin from a module file (`luo serve --handler PATH`, a scenario's
 * `machine.handlers`, the TypeScript API): its default export (or an export named `plugin`) must
 * be a HandlerPlugin. `.js`/`.mjs` modules load as they are; a `.ts` module needs tsx (luo's own
 * development dependency) to be installed, or to be compiled first. Every problem is a LuoError
 * naming the file: ENOENT for a missing one, EINVAL for one that is not a plugin.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as z from 'zod';
import { LuoError } from '../errno.ts';
import { LIVEUPDATE_HNDL_COMPAT_LENGTH } from '../abi/luo.ts';
import type { HandlerPlugin } from '../luo/plugin.ts';

const fn = z.custom<(...a: unknown[]) => unknown>((v) => typeof v === 'function', 'expected a function');

const PluginShape = z.object({
  compatible: z.string().min(1).refine((s) => Buffer.byteLength(s, 'latin1') < LIVEUPDATE_HNDL_COMPAT_LENGTH && !s.includes('\0'), {
    message: `at most ${LIVEUPDATE_HNDL_COMPAT_LENGTH - 1} bytes, no NUL`,
  }),
  create: fn,
  open: fn.optional(),
  describe: fn.optional(),
});

let tsxRegistered: Promise<void> | undefined;

async function importModule(file: string): Promise<Record<string, unknown>> {
  if (/\.[cm]?ts$/.test(file)) {
    tsxRegistered ??= import('tsx/esm/api').then(
      (m: { register: () => unknown }) => void m.register(),
      () => {
        throw new LuoError('EINVAL', `handler plugin ${file}: a TypeScript module needs tsx (npm install tsx), or compile it to .js`);
      },
    );
    await tsxRegistered;
  }
  return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
}

/** The plugin a module file exports. */
export async function loadHandlerPlugin(path: string): Promise<HandlerPlugin> {
  const file = resolve(path);
  if (!existsSync(file)) throw new LuoError('ENOENT', `handler plugin ${path}: no such file`);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(file);
  } catch (e) {
    if (e instanceof LuoError) throw e;
    throw new LuoError('EINVAL', `handler plugin ${path}: cannot be imported: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const candidate = mod['default'] ?? mod['plugin'];
  const r = PluginShape.safeParse(candidate);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join('.') || 'the export'}: ${i.message}`).join('; ');
    throw new LuoError('EINVAL', `handler plugin ${path}: its default export is not a handler plugin ({ compatible, create(kernel) }): ${why}`);
  }
  return { ...(candidate as HandlerPlugin), source: file };
}

/** Several plugins; two with the same compatible are refused (EEXIST), as registering them would be. */
export async function loadHandlerPlugins(paths: readonly string[]): Promise<HandlerPlugin[]> {
  const out: HandlerPlugin[] = [];
  for (const p of paths) {
    const plugin = await loadHandlerPlugin(p);
    if (out.some((x) => x.compatible === plugin.compatible)) throw new LuoError('EEXIST', `handler plugin ${p}: another plugin already has compatible "${plugin.compatible}"`);
    out.push(plugin);
  }
  return out;
}
