/** The live-update agent: a userspace program that carries workloads' memfds across kexecs (see agent.ts). */
export * from './agent.ts';
export * from './log.ts';
