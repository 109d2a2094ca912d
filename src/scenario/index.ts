/** Scripted live-update scenarios: the YAML schema (schema.ts), the runner, fault injection. */
export * from './schema.ts';
export * from './runner.ts';
export * from './faults.ts';
export * from './data.ts';
