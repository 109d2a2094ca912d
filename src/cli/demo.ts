/** `luo demo`: the main job. For now it builds and prints a small KHO-shaped FDT. */
export async function runDemo(): Promise<number> {
  console.log('luo demo: the FDT library is being built; see README.md');
  return 0;
}
