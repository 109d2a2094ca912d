#!/usr/bin/env node
// After `npm install luo` (from the registry or a tarball): builds the LD_PRELOAD shim into
// native/build/ with the machine's gcc. A source checkout builds it in `prepare` instead. Never
// fails the install: without gcc the shim is missing and `luo` says how to build it later.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
if (existsSync(new URL('../src', import.meta.url))) process.exit(0);
const r = spawnSync('bash', ['scripts/build-native.sh'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  process.stderr.write(`luo: the LD_PRELOAD shim was not built (${(r.stderr || String(r.error ?? '')).trim().split('\n')[0]}); build it later with: bash ${root}scripts/build-native.sh\n`);
}
