/**
 * The contract between LUO and file handlers (include/linux/liveupdate.h: struct
 * liveupdate_file_handler, liveupdate_file_ops, liveupdate_file_op_args). A handler turns one
 * kind of open file into a u64 of serialized data at preserve/freeze time and back into a new
 * open file in the next kernel. Callbacks that fail throw a LuoError carrying the errno.
 */
/**
 * An open file description (struct file): what fds point at. Several fds may share one, and so
 * share its position. `kind` says what is behind it; handlers recognise their own kinds.
 */
export interface KernelFile {
  readonly kind: string;
  /** f_pos: the file position shared by every fd of this open file. */
  pos: number;
  /** Set by LUO while the file is preserved: the kernel holds its own reference then. */
  luoRefs?: number;
}

/** liveupdate_file_op_args: one bundle passed to every callback but canPreserve/getId. */
export interface FileOpArgs {
  readonly handler: FileHandler;
  /** 0: retrieve never attempted; 1: retrieved; negative: the -errno of a failed retrieve. */
  retrieveStatus: number;
  /** In: the file operated on. Out (retrieve): the new file. */
  file: KernelFile | undefined;
  /** The only thing that reaches the next kernel (luo_file_ser.data). */
  serializedData: bigint;
  /** Runtime state set by preserve and released by unpreserve; never handed over. */
  privateData: unknown;
}

export interface FileHandlerOps {
  canPreserve(handler: FileHandler, file: KernelFile): boolean;
  preserve(args: FileOpArgs): void;
  unpreserve(args: FileOpArgs): void;
  freeze?(args: FileOpArgs): void;
  unfreeze?(args: FileOpArgs): void;
  retrieve(args: FileOpArgs): void;
  canFinish?(args: FileOpArgs): boolean;
  finish(args: FileOpArgs): void;
  /** A key identifying the underlying object, for the "already preserved" (EBUSY) check. */
  getId?(file: KernelFile): unknown;
}

export interface FileHandler {
  /** At most 47 bytes plus NUL (LIVEUPDATE_HNDL_COMPAT_LENGTH = 48). */
  readonly compatible: string;
  readonly ops: FileHandlerOps;
}
