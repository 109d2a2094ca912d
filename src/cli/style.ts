/**
 * Terminal styling for the CLI: ANSI attributes only when stdout is a terminal and NO_COLOR
 * (https://no-color.org) is not set; FORCE_COLOR forces them.
 */
export function colorOn(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env['NO_COLOR']) return false;
  if (process.env['FORCE_COLOR'] && process.env['FORCE_COLOR'] !== '0') return true;
  return stream.isTTY === true;
}

const sgr = (code: string) => (s: string): string => (colorOn() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const bold = sgr('1');
export const dim = sgr('2');
export const green = sgr('32');
export const yellow = sgr('33');
export const red = sgr('31');
