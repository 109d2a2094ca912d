/**
 * Userspace on the simulated kernel: processes with fd tables, the file syscalls, and ioctl on
 * /dev/liveupdate and LUO session fds, with the kernel's errnos (include/uapi/linux/liveupdate.h).
 */
export * from './file.ts';
export * from './fdtable.ts';
export * from './usercopy.ts';
export * from './luo-files.ts';
export * from './ioctl.ts';
export * from './process.ts';
export * from './libliveupdate.ts';
