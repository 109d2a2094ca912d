/** Scripted live-update scenarios: the schema (schema.ts, values.ts), reading files (parse.ts), the runner, fault injection. */
export * from './schema.ts';
export { parseScenario, scenarioJsonSchema } from './parse.ts';
export * from './runner.ts';
export * from './faults.ts';
export * from './data.ts';
export { loadScenarioPlugins } from './plugins.ts';
