/**
 * Reading a scenario file: YAML checked with the zod schemas of schema.ts (schema/yaml-file.ts places
 * every problem at its file:line:column and field), the steps given their lines. Also the file
 * format as JSON Schema (draft 2020-12) for editors.
 */
import { isMap, isScalar, isSeq } from 'yaml';
import { type Scenario, scenarioSchema, ScenarioSyntaxError, STEP_KINDS, type Step } from './schema.ts';
import { size, type JsonSchema } from '../schema/values.ts';
import { checkYaml, loadYaml, startOf, toJsonSchema } from '../schema/yaml-file.ts';

const fail = (file: string, issues: ConstructorParameters<typeof ScenarioSyntaxError>[1]): Error => new ScenarioSyntaxError(file, issues);

/** Parses and validates a scenario; throws ScenarioSyntaxError listing every problem. */
export function parseScenario(text: string, file = '<scenario>'): Scenario {
  const y = loadYaml(text, file, fail);
  const { doc, lc, raw } = y;
  // data specs are checked against the machine's RAM, so the RAM is read first (its own errors come later)
  const ram = size.safeParse((raw as { machine?: { ram?: unknown } }).machine?.ram);
  const body = checkYaml(y, scenarioSchema(ram.success && ram.data !== undefined ? ram.data : 4 * 2 ** 30), file, fail);
  const stepsNode = isMap(doc.contents) ? doc.contents.get('steps', true) : undefined;
  const steps = body.steps.map((s, i): Step => {
    const node = isSeq(stepsNode) ? stepsNode.items[i] : undefined;
    const kindKey = isMap(node) ? node.items.find((p) => isScalar(p.key) && (STEP_KINDS as string[]).includes(String(p.key.value)))?.key : undefined;
    return { index: i + 1, ...lc.linePos(startOf(kindKey) ?? startOf(node) ?? 0), ...s };
  });
  const name = body.name ?? file.replace(/^.*\//, '').replace(/\.ya?ml$/, '');
  return { file, name, ...(body.description !== undefined ? { description: body.description } : {}), machine: body.machine, steps };
}

/** The scenario format as JSON Schema (draft 2020-12), for editors' YAML validation. */
export function scenarioJsonSchema(): JsonSchema {
  return toJsonSchema(scenarioSchema(Infinity), {
    id: 'https://github.com/luo/luo/docs/scenario.schema.json',
    title: 'luo scenario',
    description: 'A scripted live-update scenario for `luo scenario FILE.yaml` (docs/scenario-format.md).',
  });
}
