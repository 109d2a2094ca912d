#!/usr/bin/env node
// Builds the JavaScript users run: tsc (tsconfig.build.json) compiles src/ into dist/ with
// declarations, relative ".ts" imports rewritten to ".js"; the declarations get the same rewrite
// (tsc keeps ".ts" there), the dashboard's static files are copied, and dist/.build records when.
import { spawnSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

const walk = (dir) => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
for (const f of walk(dist)) {
  if (!f.endsWith('.d.ts')) continue;
  const text = readFileSync(f, 'utf8');
  const fixed = text.replace(/(from\s+|import\()(['"])(\.{1,2}\/[^'"]+)\.ts\2/g, '$1$2$3.js$2');
  if (fixed !== text) writeFileSync(f, fixed);
}
cpSync(join(root, 'src/web/static'), join(dist, 'web/static'), { recursive: true });
writeFileSync(join(dist, '.build'), `${new Date().toISOString()}\n`);
