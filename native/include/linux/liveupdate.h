/* SPDX-License-Identifier: MIT */
/*
 * luo's own description of the Live Update Orchestrator userspace ABI (/dev/liveupdate), written
 * from the facts in shared/spec/kernel-abi.md §2.2-2.4 (newest mainline). It is source-compatible
 * with programs written for the kernel's <linux/liveupdate.h>: same macro names, ioctl numbers,
 * struct names, field names, offsets and sizes. It does not carry the kernel header's text.
 *
 * All commands are _IO(0xBA, nr): no size or direction is encoded in the number; the size of the
 * argument travels in the first u32 of every struct, which the caller sets to sizeof(struct).
 */
#ifndef _UAPI_LINUX_LIVEUPDATE_H
#define _UAPI_LINUX_LIVEUPDATE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define LIVEUPDATE_IOCTL_TYPE 0xBA

/* A session name is at most 63 characters plus its terminating NUL. */
#define LIVEUPDATE_SESSION_NAME_LENGTH 64

/* ioctl numbers (_IOC_NR) on /dev/liveupdate. */
enum {
	LIVEUPDATE_CMD_BASE = 0x00,
	LIVEUPDATE_CMD_CREATE_SESSION = LIVEUPDATE_CMD_BASE,
	LIVEUPDATE_CMD_RETRIEVE_SESSION = 0x01,
};

/* ioctl numbers (_IOC_NR) on a session fd. */
enum {
	LIVEUPDATE_CMD_SESSION_BASE = 0x40,
	LIVEUPDATE_CMD_SESSION_PRESERVE_FD = LIVEUPDATE_CMD_SESSION_BASE,
	LIVEUPDATE_CMD_SESSION_RETRIEVE_FD = 0x41,
	LIVEUPDATE_CMD_SESSION_FINISH = 0x42,
	LIVEUPDATE_CMD_SESSION_GET_NAME = 0x43,
};

/* CREATE_SESSION (0xBA00, on /dev/liveupdate), 72 bytes: returns a new outgoing session fd. */
struct liveupdate_ioctl_create_session {
	__u32 size;                                  /* in: sizeof(struct) */
	__s32 fd;                                    /* out: the session fd (O_CLOEXEC) */
	__u8 name[LIVEUPDATE_SESSION_NAME_LENGTH];   /* in: 1..63 characters, NUL-terminated */
};
#define LIVEUPDATE_IOCTL_CREATE_SESSION \
	_IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_CREATE_SESSION)

/* RETRIEVE_SESSION (0xBA01, on /dev/liveupdate), 72 bytes: an incoming session by name. */
struct liveupdate_ioctl_retrieve_session {
	__u32 size;                                  /* in */
	__s32 fd;                                    /* out */
	__u8 name[LIVEUPDATE_SESSION_NAME_LENGTH];   /* in */
};
#define LIVEUPDATE_IOCTL_RETRIEVE_SESSION \
	_IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_RETRIEVE_SESSION)

/* PRESERVE_FD (0xBA40, outgoing session), 16 bytes. */
struct liveupdate_session_preserve_fd {
	__u32 size;                                  /* in */
	__s32 fd;                                    /* in: the file to preserve (e.g. a memfd) */
	__aligned_u64 token;                         /* in: any value, unique within the session */
};
#define LIVEUPDATE_SESSION_PRESERVE_FD \
	_IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_PRESERVE_FD)

/* RETRIEVE_FD (0xBA41, incoming session), 16 bytes. */
struct liveupdate_session_retrieve_fd {
	__u32 size;                                  /* in */
	__s32 fd;                                    /* out: a new fd (O_CLOEXEC) */
	__aligned_u64 token;                         /* in */
};
#define LIVEUPDATE_SESSION_RETRIEVE_FD \
	_IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_RETRIEVE_FD)

/* FINISH (0xBA42, incoming session), 8 bytes; `reserved` must be 0 (EINVAL, and nothing is finished). */
struct liveupdate_session_finish {
	__u32 size;                                  /* in */
	__u32 reserved;
};
#define LIVEUPDATE_SESSION_FINISH \
	_IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_FINISH)

/* GET_NAME (0xBA43, any session), 72 bytes; `reserved` must be 0 (EINVAL otherwise). */
struct liveupdate_session_get_name {
	__u32 size;                                  /* in */
	__u32 reserved;                              /* in: 0 */
	__u8 name[LIVEUPDATE_SESSION_NAME_LENGTH];   /* out: NUL-terminated */
};
#define LIVEUPDATE_SESSION_GET_NAME \
	_IO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_GET_NAME)

#endif /* _UAPI_LINUX_LIVEUPDATE_H */
