/**
 * `luo scenario FILE.yaml`: runs a scripted live-update scenario (schema: src/scenario/schema.ts,
 * `--schema` prints its documentation, `--json-schema` the JSON Schema) and reports pass/fail per step with the reason. Exit status: 0 when every
 * step passed, 1 when a step failed, 2 when the file cannot be read or is not a valid scenario
 * (each problem named with file:line:column and the field).
 */
import { readFileSync } from 'node:fs';
import { parseScenario, runScenario, scenarioJsonSchema, ScenarioSyntaxError, type StepResult } from '../scenario/index.ts';
import { loadScenarioPlugins } from '../scenario/plugins.ts';
import { isLuoError } from '../errno.ts';
import { join } from 'node:path';

export interface ScenarioCliOptions {
  readonly json?: boolean;
  readonly verbose?: boolean;
  readonly schema?: boolean;
  readonly jsonSchema?: boolean;
}

export interface CliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}

let stdoutGuarded = false;
const defaultIo: CliIo = {
  out: (s) => {
    // A closed pipe (| head) ends the output quietly.
    if (!stdoutGuarded) {
      stdoutGuarded = true;
      process.stdout.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EPIPE') throw e;
      });
    }
    process.stdout.write(`${s}\n`);
  },
  err: (s) => process.stderr.write(`${s}\n`),
};

/** The scenario format's documentation (docs/scenario-format.md, shipped with the package). */
export function schemaText(): string {
  return readFileSync(new URL('../../docs/scenario-format.md', import.meta.url), 'utf8').trim();
}

function line(r: StepResult): string {
  const tag = r.status === 'pass' ? 'PASS' : 'FAIL';
  return `${tag}  ${String(r.index).padStart(3)}  line ${String(r.line).padEnd(4)} ${r.title}: ${r.reason}`;
}

const plain = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v);

export async function runScenarioCli(file: string | undefined, opts: ScenarioCliOptions, io: CliIo = defaultIo): Promise<number> {
  if (opts.schema) {
    io.out(schemaText());
    return 0;
  }
  if (opts.jsonSchema) {
    io.out(JSON.stringify(scenarioJsonSchema(), null, 2));
    return 0;
  }
  if (!file) {
    io.err('luo scenario: a scenario file is required (see luo scenario --schema)');
    return 2;
  }
  let text: string;
  try {
    const bytes = readFileSync(file === '-' ? 0 : file);
    // a scenario is YAML text: binary input is refused, never echoed back into the terminal
    const nul = bytes.indexOf(0);
    let bad = nul;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      text = '';
      if (bad < 0) bad = 0;
    }
    if (bad >= 0) {
      io.err(`luo scenario: ${file} is not a text file (${nul >= 0 ? `a NUL byte at offset ${nul}` : 'not UTF-8'}): a scenario is YAML text (see luo scenario --schema)`);
      return 2;
    }
  } catch (e) {
    io.err(`luo scenario: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  let sc;
  try {
    sc = parseScenario(text, file);
  } catch (e) {
    if (!(e instanceof ScenarioSyntaxError)) throw e;
    if (opts.json) io.out(JSON.stringify({ file, ok: false, valid: false, errors: e.issues }, null, 2));
    else {
      io.err(`luo scenario: ${file} is not a valid scenario (${e.issues.length} problem(s)):`);
      io.err(e.message);
    }
    return 2;
  }
  let plugins;
  try {
    plugins = await loadScenarioPlugins(sc, file === '-' ? join(process.cwd(), 'stdin.yaml') : file);
  } catch (e) {
    if (!isLuoError(e)) throw e;
    io.err(`luo scenario: ${file}: machine.handlers: ${e.message}`);
    return 2;
  }
  if (!opts.json) io.out(`scenario: ${sc.name} (${file}, ${sc.steps.length} steps)`);
  const result = runScenario(sc, {
    plugins,
    ...(opts.json ? {} : { onStep: (r: StepResult) => io.out(line(r)) }),
    ...(opts.verbose && !opts.json ? { console: (l: string) => io.out(`        | ${l}`), agentLog: (l: string) => io.out(`        agent ${l}`) } : {}),
  });
  if (opts.json) io.out(JSON.stringify({ ...result, valid: true }, plain, 2));
  else io.out(`${result.ok ? 'PASSED' : 'FAILED'}: ${result.passed} of ${result.steps.length} steps passed${result.failed ? `, ${result.failed} failed` : ''}`);
  return result.ok ? 0 : 1;
}
