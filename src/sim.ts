/**
 * `luo/sim`: the simulated machine as a library — a Machine whose memory is real bytes, the kernel
 * that boots on it (KHO, LUO, the memfd handler), processes with the kernel's file syscalls and
 * ioctls, the live-update agent and scenarios, and the file handler plugin contract
 * (docs/handlers.md). What the README's TypeScript example uses.
 */
export { DEFAULT_CMDLINE, Machine, type MachineOptions } from './kernel/machine.ts';
export { DEFAULT_BUILD, Kernel, type BootParams, type KernelBuild, type KexecStats } from './kernel/kernel.ts';
export { KernelPanic, Luo, type RestoreFailPolicy } from './luo/core.ts';
export * from './handlers/memfd-file.ts';
export * from './uapi/index.ts';
export { LiveUpdateAgent } from './agent/agent.ts';
export { loadScenarioPlugins, parseScenario, runScenario } from './scenario/index.ts';
export { buildForRelease, withHandlers } from './kernel/build.ts';
export { loadHandlerPlugin, loadHandlerPlugins } from './kernel/plugin-load.ts';
export type { HandlerKernel, HandlerPlugin, PluginInstance, PluginKho } from './luo/plugin.ts';
export type { FileHandlerOps, FileOpArgs, KernelFile } from './luo/file-handler.ts';
export type { Flb, FlbOpArgs, FlbOps } from './luo/flb.ts';
export { ERRNO, errnoName, isLuoError, LuoError, type ErrnoName } from './errno.ts';
