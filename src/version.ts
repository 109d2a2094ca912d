/** This luo build's version (package.json), as `luo --version` and hand-over images record it. */
import { readFileSync } from 'node:fs';

export function luoVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
