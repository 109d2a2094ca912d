/**
 * The `luo` package: the Node client of the luo daemon (docs/protocol.md) and the error type
 * every API throws. The simulator's layers are imported from their own modules (see README).
 */
export { connect, LuoClient, LuoDevice, LuoSession, type ClientOptions, type DaemonStatus, type KexecReply, type PreserveSource, type RetrievedFile, defaultSocketPath } from './client/index.ts';
export { ERRNO, errnoName, isLuoError, LuoError, type ErrnoName } from './errno.ts';
