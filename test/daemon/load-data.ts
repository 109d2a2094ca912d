/** The contents each load-test client keeps across the kexec (shared by load.test.ts and its workers). */
export const pagesOf = (pid: number): number => (pid % 4) + 1;
export const contentOf = (pid: number): Uint8Array => {
  const b = new Uint8Array(pagesOf(pid) * 4096 - 100);
  for (let i = 0; i < b.length; i++) b[i] = (pid * 31 + i) & 0xff;
  return b;
};
