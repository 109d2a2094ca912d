#!/usr/bin/env node
// Entry point of the `luo` command: runs the compiled CLI in dist/. In a source checkout whose
// dist/ is missing or older than src/ (an edit not yet built), it runs the TypeScript sources
// through tsx instead, so what runs is always what the sources say.
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const src = new URL('src/', root);

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const u = new URL(e.name + (e.isDirectory() ? '/' : ''), dir);
    t = Math.max(t, e.isDirectory() ? newest(u) : statSync(u).mtimeMs);
  }
  return t;
}

let fromSources = false;
if (existsSync(src)) {
  const stamp = new URL('dist/.build', root);
  fromSources = !existsSync(stamp) || newest(src) > statSync(stamp).mtimeMs;
}
let main;
if (fromSources) {
  let tsx;
  try {
    tsx = await import('tsx/esm/api');
  } catch {
    process.stderr.write('luo: dist/ is missing or older than src/, and tsx is not installed: run `npm run build`\n');
    process.exit(1);
  }
  tsx.register();
  ({ main } = await import('../src/cli/main.ts'));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv);
