/**
 * The file handler plugins a scenario's `machine.handlers` names, loaded from paths relative to
 * the scenario file (an absolute path as it is). runScenario takes the result as `plugins`.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { loadHandlerPlugins } from '../kernel/plugin-load.ts';
import type { HandlerPlugin } from '../luo/plugin.ts';
import type { Scenario } from './schema.ts';

export async function loadScenarioPlugins(sc: Scenario, file: string): Promise<Map<string, HandlerPlugin>> {
  const names = sc.machine.handlers ?? [];
  const plugins = await loadHandlerPlugins(names.map((n) => (isAbsolute(n) ? n : resolve(dirname(file), n))));
  return new Map(names.map((n, i) => [n, plugins[i]!]));
}
