/**
 * The /dev/liveupdate uAPI (include/uapi/linux/liveupdate.h): ioctl numbers and the size-prefixed
 * argument structs, exactly as userspace lays them out.
 */
import { cstr, defineStruct, s32, u32, u64 } from '../bytes/struct.ts';

export const LIVEUPDATE_IOCTL_TYPE = 0xba;
/** All commands are _IO(0xBA, nr): no size or direction bits, so cmd = 0xBA00 | nr. */
export const LIVEUPDATE_IOCTL = {
  CREATE_SESSION: 0xba00,
  RETRIEVE_SESSION: 0xba01,
  SESSION_PRESERVE_FD: 0xba40,
  SESSION_RETRIEVE_FD: 0xba41,
  SESSION_FINISH: 0xba42,
  SESSION_GET_NAME: 0xba43,
} as const;

export const LIVEUPDATE_SESSION_NAME_LENGTH = 64;

export const CreateSessionArg = defineStruct('liveupdate_ioctl_create_session', 'le', { size: u32, fd: s32, name: cstr(64) }, 72);
export const RetrieveSessionArg = defineStruct('liveupdate_ioctl_retrieve_session', 'le', { size: u32, fd: s32, name: cstr(64) }, 72);
export const PreserveFdArg = defineStruct('liveupdate_session_preserve_fd', 'le', { size: u32, fd: s32, token: u64 }, 16);
export const RetrieveFdArg = defineStruct('liveupdate_session_retrieve_fd', 'le', { size: u32, fd: s32, token: u64 }, 16);
export const SessionFinishArg = defineStruct('liveupdate_session_finish', 'le', { size: u32, reserved: u32 }, 8);
export const SessionGetNameArg = defineStruct('liveupdate_session_get_name', 'le', { size: u32, reserved: u32, name: cstr(64) }, 72);
