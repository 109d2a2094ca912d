// SPDX-License-Identifier: MIT
/*
 * libluo-preload.so: makes luo's simulated /dev/liveupdate (served by `luo serve`, docs/protocol.md)
 * look like the kernel's to an unmodified C program:
 *
 *     LUO_SOCKET=/path/to/luo.sock LD_PRELOAD=/path/to/libluo-preload.so ./program
 *
 * - open/openat("/dev/liveupdate") connects a unix socket to the daemon (HELLO, OPEN_DEVICE); the
 *   socket fd is the program's fd, so close/dup/fork/exec/O_CLOEXEC behave like struct file refs.
 * - ioctl on such a socket sends the bytes the kernel would read (the accessible part of the user's
 *   struct, found with process_vm_readv on ourselves, so a bad pointer is EFAULT, not a crash) and
 *   copies back what the kernel would write (process_vm_writev: a read-only struct is EFAULT).
 * - CREATE_SESSION / RETRIEVE_SESSION reserve the new fd first (a new connection, SOCK_CLOEXEC);
 *   RETRIEVE_FD reserves a memfd first and fills it with the handed-over contents, size, position
 *   and seals.
 * - PRESERVE_FD names the memfd by (pid, fd) so the daemon holds its own reference; the shim keeps
 *   a hidden dup (same open file description) far above the program's fds so the daemon can read
 *   the position at kexec, and freezes the size as the kernel does (seals GROW|SHRINK that it hides
 *   from F_GET_SEALS, or, for a memfd that cannot be sealed, by refusing growing writes/truncates
 *   made through libc in this process).
 * - close of the last reference this process knows of is synchronous (CLOSE), as the kernel's is.
 *
 * Every gap against the real kernel is listed in native/preload/README.md.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#define ALL_SEALS_ (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC)
#ifndef FIOQSIZE
#define FIOQSIZE 0x5460
#endif
#ifndef FIGETBSZ
#define FIGETBSZ 2
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

#define EXPORT __attribute__((visibility("default")))

/* ---------------------------------------------------------------- protocol constants */

enum {
	MSG_HELLO = 1, MSG_OPEN_DEVICE = 2, MSG_IOCTL = 3, MSG_CLOSE = 4, MSG_READ_FILE = 5,
	MSG_RELEASE_FILE = 6, MSG_STATUS = 16, MSG_KEXEC = 17, MSG_SHUTDOWN = 18,
	MSG_OPEN_PLUGIN = 22, MSG_FILE_READ = 23, MSG_FILE_WRITE = 24, MSG_ATTACH = 25,
};
#define REPLY_BIT 0x80000000u
#define ERROR_TYPE 0xFFFFFFFFu
#define MAX_ARG 65536u
#define MAX_READ (8u << 20)
#define IOCTL_ARG_FAULT 1u
#define IOCTL_NO_FD 2u          /* the new fd could not be reserved (protocol 5.6) */
#define IOCTL_TAIL_ZERO 4u      /* bytes [arg_len, size) are accessible zeros (protocol 4.3) */
#define IOCTL_TAIL_NONZERO 8u   /* past arg_len a nonzero byte comes before any fault */
#define HELLO_ENDS_AT_KEXEC 1u /* HELLO flag: whoever holds this connection belongs to the old kernel */
#define FEATURE_IOCTL_NO_FD 1u  /* HELLO reply features: the daemon understands IOCTL_NO_FD */
#define FEATURE_IOCTL_TAIL 2u   /* ... and IOCTL_TAIL_ZERO / IOCTL_TAIL_NONZERO */
#define FEATURE_PLUGIN_FILES 8u /* ... and plugin files: OPEN_PLUGIN, FILE_READ/WRITE, ATTACH, SRC_CONN (4.11) */
#define TMPFS_MAGIC_ 0x01021994
#define REPLY_FILE 1u
#define REPLY_AGAIN 2u
#define REPLY_CONN 4u
#define SRC_PROC_FD 1u
#define SRC_CONN 4u
#define PLUGIN_NAME_MAX 255
#define SEALS_UNKNOWN 0xFFFFFFFFu

#define CMD_CREATE_SESSION 0xBA00u
#define CMD_RETRIEVE_SESSION 0xBA01u
#define CMD_PRESERVE_FD 0xBA40u
#define CMD_RETRIEVE_FD 0xBA41u
#define CMD_FINISH 0xBA42u
#define CMD_GET_NAME 0xBA43u

/* ---------------------------------------------------------------- real functions */

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real___open_2)(const char *, int);
static int (*real___open64_2)(const char *, int);
static int (*real___openat_2)(int, const char *, int);
static int (*real___openat64_2)(int, const char *, int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fallocate64)(int, int, off64_t, off64_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static int (*real_posix_fallocate64)(int, off64_t, off64_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off64_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);

#define RESOLVE(name) ({ if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name); real_##name; })

static void resolve_all(void)
{
	RESOLVE(open), RESOLVE(open64), RESOLVE(openat), RESOLVE(openat64);
	RESOLVE(__open_2), RESOLVE(__open64_2), RESOLVE(__openat_2), RESOLVE(__openat64_2);
	RESOLVE(ioctl), RESOLVE(close), RESOLVE(dup), RESOLVE(dup2), RESOLVE(dup3);
	RESOLVE(fcntl), RESOLVE(fcntl64);
	RESOLVE(ftruncate), RESOLVE(ftruncate64), RESOLVE(fallocate), RESOLVE(fallocate64);
	RESOLVE(posix_fallocate), RESOLVE(posix_fallocate64);
	RESOLVE(read), RESOLVE(pread), RESOLVE(pread64), RESOLVE(readv);
	RESOLVE(write), RESOLVE(pwrite), RESOLVE(pwrite64), RESOLVE(writev), RESOLVE(pwritev), RESOLVE(pwritev64);
}

/* Raw syscalls for the shim's own I/O: never re-enter our wrappers. */
static int sys_close(int fd) { return (int)syscall(SYS_close, fd); }
static int sys_fcntl(int fd, int cmd, long arg) { return (int)syscall(SYS_fcntl, fd, cmd, arg); }

static int debug_on;
#define DBG(...) do { if (debug_on) { fprintf(stderr, "luo-preload[%d]: ", (int)getpid()); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* ---------------------------------------------------------------- state */

/*
 * What this process knows of its luo connections, keyed by the socket's inode. The table lives in
 * memory, so a fork inherits it (and marks everything shared) and an exec loses it (connections
 * are then recognised by their peer address and treated as shared).
 */
enum conn_kind { K_UNKNOWN = 0, K_DEVICE = 1, K_SESSION = 2, K_PLUGIN = 3 };

struct conn {
	ino_t ino;
	uint32_t conn_id;
	int kind;
	int accmode;     /* O_RDONLY/O_WRONLY/O_RDWR the file was opened with (sessions: O_RDWR) */
	int shared;      /* may have other references (fork, dup, exec): close is asynchronous */
	int dead;        /* the daemon went away (kexec): every request fails with EIO */
};

/* A memfd this process preserved: its hidden dup, the seals we added, and the session. */
struct preserved {
	dev_t dev;
	ino_t ino;
	ino_t session;   /* session socket inode */
	int hidden;      /* hidden dup (same open file description), or -1 */
	unsigned added;  /* seals the shim added to freeze the size (hidden from F_GET_SEALS) */
	int guard;       /* 1: not sealable, the shim refuses growth/truncation itself */
	off_t frozen_size;
	int active;      /* still preserved as far as we know */
};

/* A file RETRIEVE_FD handed out, so a repeated retrieve shares its open file description. */
struct retrieved {
	uint64_t file_id;
	ino_t session;
	int hidden;
};

static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static struct conn *conns;
static size_t nconns, capconns;
static struct preserved *pres;
static size_t npres, cappres;
static size_t nguards;      /* preserved entries with guard && active */
static size_t nactive;      /* preserved entries still active */
static size_t nmasked;      /* preserved entries with added seals */
static struct retrieved *retr;
static size_t nretr, capretr;
static uint32_t seq_counter;
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static uint32_t daemon_features; /* from the last HELLO of this process image */

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap * 2 : 16;
	while (n < need)
		n *= 2;
	void *q = realloc(p, n * elem);
	if (!q)
		return NULL;
	*cap = n;
	return q;
}

static struct conn *conn_by_ino(ino_t ino)
{
	for (size_t i = 0; i < nconns; i++)
		if (conns[i].ino == ino)
			return &conns[i];
	return NULL;
}

static struct conn *conn_add(ino_t ino, uint32_t id, int kind, int shared)
{
	struct conn *c = conn_by_ino(ino);

	if (!c) {
		struct conn *n = grow(conns, &capconns, nconns + 1, sizeof(*conns));
		if (!n)
			return NULL;
		conns = n;
		c = &conns[nconns++];
	}
	c->ino = ino, c->conn_id = id, c->kind = kind, c->shared = shared, c->dead = 0, c->accmode = O_RDWR;
	return c;
}

static void conn_del(ino_t ino)
{
	for (size_t i = 0; i < nconns; i++)
		if (conns[i].ino == ino) {
			conns[i] = conns[--nconns];
			return;
		}
}

static void socket_path_init(void)
{
	const char *p = getenv("LUO_SOCKET"), *x = getenv("XDG_RUNTIME_DIR");

	if (p && *p)
		snprintf(sock_path, sizeof(sock_path), "%s", p);
	else if (x && *x)
		snprintf(sock_path, sizeof(sock_path), "%s/luo/luo.sock", x);
	else
		snprintf(sock_path, sizeof(sock_path), "/tmp/luo-%u/luo.sock", (unsigned)getuid());
}

/* A peer address of a daemon: the socket path, or `<path>.<pid>.new` a taken-over daemon bound. */
static int is_daemon_path(const char *p)
{
	size_t n = strlen(sock_path);

	if (strncmp(p, sock_path, n))
		return 0;
	if (!p[n])
		return 1;
	if (p[n] != '.')
		return 0;
	p += n + 1;
	while (*p >= '0' && *p <= '9')
		p++;
	return !strcmp(p, ".new");
}

/* Is fd one of our connections? Fills *out (a table entry, added if the table did not know it). */
static struct conn *our_conn(int fd)
{
	struct stat st;
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	struct conn *c;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return NULL;
	c = conn_by_ino(st.st_ino);
	if (c)
		return c;
	memset(&sa, 0, sizeof(sa));
	if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX || len <= sizeof(sa.sun_family))
		return NULL;
	sa.sun_path[sizeof(sa.sun_path) - 1] = 0;
	if (!is_daemon_path(sa.sun_path))
		return NULL;
	/* inherited across exec: kind unknown, references unknown */
	return conn_add(st.st_ino, 0, K_UNKNOWN, 1);
}

/* ---------------------------------------------------------------- framing */

static int wait_fd(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;

	do
		r = poll(&p, 1, -1);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int send_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };
		ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int e = wait_fd(fd, POLLOUT);
				if (e)
					return e;
				continue;
			}
			return -errno;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= iov->iov_len;
			iov++, n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= w;
		}
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = recv(fd, (char *)buf + got, len - got, 0);
		if (r == 0)
			return -EPIPE;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int e = wait_fd(fd, POLLIN);
				if (e)
					return e;
				continue;
			}
			return -errno;
		}
		got += r;
	}
	return 0;
}

struct reply {
	int32_t ret;
	uint32_t err;
	uint8_t *data;   /* the whole payload (malloc'd) */
	uint32_t len;
};

/*
 * One request and its reply on connection fd: up to three payload parts. Returns 0 with *rp
 * filled (rp->err is the operation's errno), or -errno when the connection failed (-EIO when the
 * daemon is gone or spoke nonsense).
 */
static int request(int fd, uint32_t type, const void *a, size_t an, const void *b, size_t bn,
		   const void *c, size_t cn, struct reply *rp)
{
	uint32_t hdr[4], rh[4], seq = ++seq_counter;
	struct iovec iov[4];
	int n = 0, e;

	memset(rp, 0, sizeof(*rp));
	hdr[0] = (uint32_t)(an + bn + cn), hdr[1] = type, hdr[2] = seq, hdr[3] = 0;
	iov[n++] = (struct iovec){ hdr, sizeof(hdr) };
	if (an)
		iov[n++] = (struct iovec){ (void *)a, an };
	if (bn)
		iov[n++] = (struct iovec){ (void *)b, bn };
	if (cn)
		iov[n++] = (struct iovec){ (void *)c, cn };
	e = send_all(fd, iov, n);
	if (e)
		return e == -EPIPE || e == -ECONNRESET ? -EIO : e;
	e = recv_all(fd, rh, sizeof(rh));
	if (e)
		return e == -EPIPE || e == -ECONNRESET ? -EIO : e;
	if (rh[0] > (16u << 20) + 4096 || rh[2] != seq)
		return -EIO;
	rp->len = rh[0];
	rp->data = malloc(rh[0] ? rh[0] : 1);
	if (!rp->data)
		return -ENOMEM;
	e = recv_all(fd, rp->data, rh[0]);
	if (e) {
		free(rp->data);
		rp->data = NULL;
		return e == -EPIPE || e == -ECONNRESET ? -EIO : e;
	}
	if (rp->len < 8) {
		free(rp->data);
		rp->data = NULL;
		return -EIO;
	}
	memcpy(&rp->ret, rp->data, 4);
	memcpy(&rp->err, rp->data + 4, 4);
	if (rh[1] == ERROR_TYPE) {
		DBG("protocol error %u: %.*s", rp->err, (int)(rp->len - 8), rp->data + 8);
		if (!rp->err)
			rp->err = EPROTO;
		rp->ret = -1;
	} else if (rh[1] != (type | REPLY_BIT)) {
		free(rp->data);
		rp->data = NULL;
		return -EIO;
	}
	return 0;
}

static void reply_free(struct reply *rp)
{
	free(rp->data);
	rp->data = NULL;
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/*
 * LUO_SOCKET names a daemon that does not answer: the program sees no /dev/liveupdate (ENOENT),
 * which test suites read as "no LUO" and skip. Say so once per process on stderr, unless
 * LUO_PRELOAD_QUIET is set.
 */
static void warn_no_daemon(int e)
{
	static int warned;
	const char *env = getenv("LUO_SOCKET");

	if (warned || !env || !*env || getenv("LUO_PRELOAD_QUIET") || getenv("LUO_PRELOAD_WARNED"))
		return;
	warned = 1;
	setenv("LUO_PRELOAD_WARNED", "1", 1); /* not again in the processes this one starts */
	fprintf(stderr, "luo-preload: no luo daemon answers on %s (LUO_SOCKET: %s); /dev/liveupdate does not exist for this program (LUO_PRELOAD_QUIET=1 silences this)\n",
		sock_path, e == ENOENT ? "no such socket" : e == ECONNREFUSED ? "a stale socket" : strerror(e));
}

/*
 * A new connection to the daemon with HELLO done: returns the socket fd (the lowest free fd, as
 * any new fd) and its conn_id, or -errno (EMFILE/ENFILE from socket(2) as they are; a daemon that
 * is not there is -ENOENT: no /dev/liveupdate).
 */
/* A unix socket connected to the daemon's path, or -errno (socket(2)'s or connect(2)'s). */
static int dial(int cloexec)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	fd = socket(AF_UNIX, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		e = errno;
		sys_close(fd);
		DBG("connect %s: %s", sock_path, strerror(e));
		return -e;
	}
	return fd;
}

static int connect_daemon(int cloexec, uint32_t *conn_id, ino_t *ino)
{
	struct reply rp;
	struct stat st;
	/* a program run through the shim is a process of the running kernel: a kexec ends it */
	uint32_t hello[4] = { 1, (uint32_t)getpid(), HELLO_ENDS_AT_KEXEC, 0 };
	int fd, e;

	fd = dial(cloexec);
	if (fd == -ENOENT || fd == -ECONNREFUSED || fd == -ENOTDIR) {
		warn_no_daemon(-fd);
		return -ENOENT;
	}
	if (fd < 0)
		return fd;
	e = request(fd, MSG_HELLO, hello, sizeof(hello), NULL, 0, NULL, 0, &rp);
	if (e || rp.ret < 0 || rp.len < 16) {
		if (!e)
			reply_free(&rp);
		sys_close(fd);
		return -ENOENT;
	}
	*conn_id = rd32(rp.data + 12);
	if (rp.len >= 36)
		daemon_features = rd32(rp.data + 32);
	reply_free(&rp);
	fstat(fd, &st);
	*ino = st.st_ino;
	return fd;
}

/* ---------------------------------------------------------------- open */

enum { P_OTHER = 0, P_DEVICE = 1, P_PLUGIN = 2 };

/*
 * Does (dirfd, path) name /dev/liveupdate (P_DEVICE) or a plugin's device node /dev/luo/NAME
 * (P_PLUGIN, NAME copied to plugin)? Lexical, after making the path absolute; cheap for every
 * other path (no getcwd unless it ends in "liveupdate" or contains "luo/").
 */
static int luo_path(int dirfd, const char *path, char plugin[PLUGIN_NAME_MAX + 1])
{
	char abs[PATH_MAX * 2], out[PATH_MAX * 2];
	const char *base = path ? strrchr(path, '/') : NULL;
	size_t o = 0;

	if (!path)
		return P_OTHER;
	if (strcmp(base ? base + 1 : path, "liveupdate") && !strstr(path, "luo/"))
		return P_OTHER;
	if (path[0] == '/') {
		snprintf(abs, sizeof(abs), "%s", path);
	} else {
		char dir[PATH_MAX] = "";
		if (dirfd == AT_FDCWD) {
			if (!getcwd(dir, sizeof(dir)))
				return 0;
		} else {
			char link[64];
			ssize_t n;
			snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
			n = readlink(link, dir, sizeof(dir) - 1);
			if (n < 0)
				return 0;
			dir[n] = 0;
		}
		snprintf(abs, sizeof(abs), "%s/%s", dir, path);
	}
	/* collapse //, /./ and /../ */
	for (char *p = abs; *p;) {
		while (*p == '/')
			p++;
		char *q = p;
		while (*q && *q != '/')
			q++;
		size_t n = q - p;
		if (n == 0)
			break;
		if (n == 1 && p[0] == '.') {
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[--o] != '/')
				;
		} else {
			out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p = q;
	}
	out[o] = 0;
	if (!strcmp(out, "/dev/liveupdate"))
		return P_DEVICE;
	if (!strncmp(out, "/dev/luo/", 9) && out[9] && !strchr(out + 9, '/') && strlen(out + 9) <= PLUGIN_NAME_MAX) {
		snprintf(plugin, PLUGIN_NAME_MAX + 1, "%s", out + 9);
		return P_PLUGIN;
	}
	return P_OTHER;
}

/*
 * open(2) of a node the daemon serves: /dev/liveupdate (plugin NULL: OPEN_DEVICE) or a handler
 * plugin's /dev/luo/NAME (OPEN_PLUGIN, protocol 4.11). The fd is a new connection carrying the file.
 */
static int open_node(int flags, const char *plugin)
{
	struct reply rp;
	uint32_t dev_req[2] = { (uint32_t)flags, 0 };
	uint32_t plugin_req[4] = { (uint32_t)flags, plugin ? (uint32_t)strlen(plugin) : 0, 0, 0 }, id;
	ino_t ino;
	int fd, e;

	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
		errno = EEXIST;
		return -1;
	}
	if (flags & O_DIRECTORY) {
		errno = ENOTDIR;
		return -1;
	}
	pthread_mutex_lock(&lock);
	fd = connect_daemon(flags & O_CLOEXEC, &id, &ino);
	if (fd >= 0 && plugin && !(daemon_features & FEATURE_PLUGIN_FILES)) {
		/* a daemon without plugin files has no such device node */
		sys_close(fd);
		fd = -ENOENT;
	}
	if (fd < 0) {
		pthread_mutex_unlock(&lock);
		errno = -fd;
		return -1;
	}
	e = plugin ? request(fd, MSG_OPEN_PLUGIN, plugin_req, sizeof(plugin_req), plugin, plugin_req[1], NULL, 0, &rp)
		   : request(fd, MSG_OPEN_DEVICE, dev_req, sizeof(dev_req), NULL, 0, NULL, 0, &rp);
	if (e || rp.ret < 0) {
		int err = e ? -e : (int)rp.err;
		if (!e)
			reply_free(&rp);
		sys_close(fd);
		pthread_mutex_unlock(&lock);
		errno = err == EIO && e ? ENOENT : err;
		return -1;
	}
	reply_free(&rp);
	if (flags & O_NONBLOCK)
		sys_fcntl(fd, F_SETFL, O_NONBLOCK);
	{
		struct conn *c = conn_add(ino, id, plugin ? K_PLUGIN : K_DEVICE, 0);
		if (c)
			c->accmode = flags & O_ACCMODE;
	}
	pthread_mutex_unlock(&lock);
	DBG("open %s%s -> fd %d (conn %u)", plugin ? "/dev/luo/" : "/dev/liveupdate", plugin ? plugin : "", fd, id);
	return fd;
}

/* open of one of luo's paths, or -2 for any other path */
static int luo_open(int dirfd, const char *path, int flags)
{
	char name[PLUGIN_NAME_MAX + 1];

	switch (luo_path(dirfd, path, name)) {
	case P_DEVICE:
		return open_node(flags, NULL);
	case P_PLUGIN:
		return open_node(flags, name);
	default:
		return -2;
	}
}

#define OPEN_MODE(flags, mode)                          \
	do {                                            \
		if ((flags) & (O_CREAT | __O_TMPFILE)) { \
			va_list ap;                     \
			va_start(ap, flags);            \
			mode = va_arg(ap, mode_t);      \
			va_end(ap);                     \
		}                                       \
	} while (0)

EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	int r;
	OPEN_MODE(flags, mode);
	r = luo_open(AT_FDCWD, path, flags);
	return r != -2 ? r : RESOLVE(open)(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	int r;
	OPEN_MODE(flags, mode);
	r = luo_open(AT_FDCWD, path, flags);
	return r != -2 ? r : RESOLVE(open64)(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	int r;
	OPEN_MODE(flags, mode);
	r = luo_open(dirfd, path, flags);
	return r != -2 ? r : RESOLVE(openat)(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	int r;
	OPEN_MODE(flags, mode);
	r = luo_open(dirfd, path, flags);
	return r != -2 ? r : RESOLVE(openat64)(dirfd, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
	int r = luo_open(AT_FDCWD, path, flags);
	return r != -2 ? r : RESOLVE(__open_2)(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	int r = luo_open(AT_FDCWD, path, flags);
	return r != -2 ? r : RESOLVE(__open64_2)(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	int r = luo_open(dirfd, path, flags);
	return r != -2 ? r : RESOLVE(__openat_2)(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	int r = luo_open(dirfd, path, flags);
	return r != -2 ? r : RESOLVE(__openat64_2)(dirfd, path, flags);
}

/* ---------------------------------------------------------------- user memory */

/* How many bytes at p (up to n) this process can read: a fault is a short count, never a crash. */
static size_t readable(const void *p, void *buf, size_t n)
{
	struct iovec l = { buf, n }, r = { (void *)p, n };
	ssize_t got;

	if (!n)
		return 0;
	got = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	if (got >= 0)
		return got;
	/* fall back page by page: process_vm_readv fails as a whole when the first page faults */
	return 0;
}

/*
 * The accessible prefix of [p, p + n) (process_vm_readv stops at the first fault), at least `min`
 * bytes known readable: copied into buf, its length returned.
 */
static size_t readable_prefix(const void *p, void *buf, size_t n, size_t min)
{
	size_t lo = min, hi = n, got = readable(p, buf, n);

	if (got == n)
		return n;
	while (lo < hi) {
		size_t mid = (lo + hi + 1) / 2;
		if (readable(p, buf, mid) == mid)
			lo = mid;
		else
			hi = mid - 1;
	}
	return readable(p, buf, lo);
}

/* Copy to user memory like copy_to_user: returns bytes not copied (0 = all). */
static size_t to_user(void *p, const void *buf, size_t n)
{
	struct iovec l = { (void *)buf, n }, r = { p, n };
	ssize_t w;

	if (!n)
		return 0;
	w = process_vm_writev(getpid(), &l, 1, &r, 1, 0);
	return w < 0 ? n : n - (size_t)w;
}

/*
 * copy_struct_from_user's zero-tail check past the bytes we send (lib/usercopy.c check_zeroed_user):
 * scans [from, to) of the user's struct in order. Returns IOCTL_TAIL_ZERO when all of it is
 * readable and zero, IOCTL_TAIL_NONZERO when a nonzero byte comes before any fault, 0 when a fault
 * comes first (the daemon then sees the fault where the bytes end).
 */
static uint32_t scan_tail(const uint8_t *arg, size_t from, size_t to, uint8_t *buf, size_t bufsz)
{
	while (from < to) {
		size_t want = to - from < bufsz ? to - from : bufsz;
		size_t got = readable_prefix(arg + from, buf, want, 0);
		for (size_t i = 0; i < got; i++)
			if (buf[i])
				return IOCTL_TAIL_NONZERO;
		if (got < want)
			return 0;
		from += got;
	}
	return IOCTL_TAIL_ZERO;
}

/* ---------------------------------------------------------------- hidden fds */

/*
 * Hidden dups live far above the program's fds, so the fd numbers a program sees are the kernel's
 * (the lowest free) and the program's RLIMIT_NOFILE is not used up: the soft limit is raised for
 * the dup and put back (fds above a lowered limit stay valid). Without room above, the dup goes to
 * the lowest free fd (visible to the program; listed as a gap).
 */
static int hidden_dup(int fd)
{
	struct rlimit rl, raised;
	int base, r = -1;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t top = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
		base = top > 70000 ? 65536 : (int)(top * 3 / 4);
		if ((rlim_t)base < rl.rlim_cur) {
			r = sys_fcntl(fd, F_DUPFD_CLOEXEC, base);
		} else if ((rlim_t)base < top && base > 64) {
			raised = rl;
			raised.rlim_cur = top;
			if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
				r = sys_fcntl(fd, F_DUPFD_CLOEXEC, base);
				setrlimit(RLIMIT_NOFILE, &rl);
			}
		}
	}
	if (r < 0)
		r = sys_fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return r;
}

/* ---------------------------------------------------------------- memfds */

/* What memfd_luo accepts: a shmem file without links (memfds, O_TMPFILE on tmpfs; not hugetlbfs). */
static int is_memfd(int fd)
{
	struct statfs sf;
	struct stat st;

	return fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC_ && fstat(fd, &st) == 0 &&
	       S_ISREG(st.st_mode) && st.st_nlink == 0;
}

static struct preserved *pres_by_inode(dev_t dev, ino_t ino, int active_only)
{
	for (size_t i = 0; i < npres; i++)
		if (pres[i].dev == dev && pres[i].ino == ino && (!active_only || pres[i].active))
			return &pres[i];
	return NULL;
}

static struct preserved *pres_of_fd(int fd, int active_only)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	return pres_by_inode(st.st_dev, st.st_ino, active_only);
}

/* After a successful PRESERVE_FD: freeze the size, keep the hidden dup. */
static void note_preserved(int fd, int hidden, ino_t session)
{
	struct stat st;
	struct preserved *p, *n;
	int seals;

	if (fstat(fd, &st) < 0)
		return;
	p = pres_by_inode(st.st_dev, st.st_ino, 0);
	if (!p) {
		n = grow(pres, &cappres, npres + 1, sizeof(*pres));
		if (!n)
			return;
		pres = n;
		p = &pres[npres++];
		memset(p, 0, sizeof(*p));
		p->dev = st.st_dev, p->ino = st.st_ino;
		p->hidden = -1;
	} else if (p->active) {
		nactive--;
		if (p->guard)
			nguards--;
	}
	if (p->hidden >= 0)
		sys_close(p->hidden);
	p->hidden = hidden;
	p->session = session;
	p->active = 1;
	nactive++;
	p->guard = 0;
	p->frozen_size = st.st_size;
	/*
	 * memfd_luo_preserve pins every folio up to i_size, allocating the holes (mm/memfd_luo.c):
	 * fstat's st_blocks then counts the whole size. Allocate them here too (raw syscall: our own
	 * fallocate wrapper would refuse a frozen memfd).
	 */
	if (st.st_size > 0)
		syscall(SYS_fallocate, fd, 0, (off_t)0, (off_t)st.st_size);
	seals = sys_fcntl(fd, F_GET_SEALS, 0);
	if (seals >= 0 && !(seals & F_SEAL_SEAL)) {
		unsigned add = (F_SEAL_GROW | F_SEAL_SHRINK) & ~(unsigned)seals;
		if (add && sys_fcntl(fd, F_ADD_SEALS, add) == 0) {
			if (!p->added)
				nmasked++;
			p->added |= add;
		}
	} else {
		/* F_SEAL_SEAL is set (a memfd made without MFD_ALLOW_SEALING): guard in libc */
		p->guard = 1;
		nguards++;
	}
}

/* The session was released (closed by us): the kernel unpreserves its files. */
static void session_released(ino_t session)
{
	for (size_t i = 0; i < npres; i++) {
		struct preserved *p = &pres[i];
		if (p->session != session || !p->active)
			continue;
		p->active = 0;
		nactive--;
		if (p->guard)
			nguards--;
		if (p->hidden >= 0)
			sys_close(p->hidden);
		p->hidden = -1;
	}
	for (size_t i = 0; i < nretr;) {
		if (retr[i].session == session) {
			if (retr[i].hidden >= 0)
				sys_close(retr[i].hidden);
			retr[i] = retr[--nretr];
		} else {
			i++;
		}
	}
}

/* FINISH dropped LUO's references to the session's retrieved files. */
static void session_finished(ino_t session)
{
	for (size_t i = 0; i < nretr;) {
		if (retr[i].session == session) {
			if (retr[i].hidden >= 0)
				sys_close(retr[i].hidden);
			retr[i] = retr[--nretr];
		} else {
			i++;
		}
	}
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Write content at off, leaving all-zero pages as holes (the file is extended by ftruncate). */
static int fill_memfd(int m, const uint8_t *p, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		size_t chunk = n - done < 4096 ? n - done : 4096;
		if (!all_zero(p + done, chunk)) {
			ssize_t w = pwrite64(m, p + done, chunk, (off64_t)(off + done));
			if (w != (ssize_t)chunk)
				return w < 0 ? -errno : -EIO;
		}
		done += chunk;
	}
	return 0;
}

/* ---------------------------------------------------------------- ioctl */

struct ioctl_req {
	uint32_t cmd, flags, arg_len;
	int32_t new_conn, caller_pid;
	uint32_t src_kind, src_seals;
	int32_t src_hidden_fd;
	uint64_t src_pos;
	uint32_t src_len, reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct ioctl_req) == 48, "IOCTL request is 48 bytes");

/* Kind of an inherited connection: GET_NAME with a faulting pointer is EFAULT on a session, EINVAL on the device. */
static int probe_kind(int fd, struct conn *c)
{
	struct ioctl_req q = { .cmd = CMD_GET_NAME, .flags = IOCTL_ARG_FAULT, .caller_pid = getpid() };
	struct reply rp;

	if (request(fd, MSG_IOCTL, &q, sizeof(q), NULL, 0, NULL, 0, &rp))
		return K_UNKNOWN;
	/* a plugin's file has no LUO ioctls at all */
	c->kind = rp.err == EFAULT ? K_SESSION : rp.err == ENOTTY ? K_PLUGIN : K_DEVICE;
	reply_free(&rp);
	return c->kind;
}

static int luo_ioctl(int fd, struct conn *c, unsigned long lcmd, void *arg)
{
	uint32_t cmd = (uint32_t)lcmd, size = 0;
	struct ioctl_req q = { .cmd = cmd, .caller_pid = getpid() };
	uint8_t *buf = NULL;
	struct reply rp = { 0 };
	int newfd = -1, memfd = -1, hidden = -1, err = 0, ret = -1, e, nofd = 0;
	uint32_t new_id = 0, src_conn = 0;
	ino_t new_ino = 0;
	size_t have;

	if (c->dead) {
		errno = EIO;
		return -1;
	}
	if (c->kind == K_UNKNOWN)
		probe_kind(fd, c);

	/* the bytes the kernel would read: the size word, then up to size */
	buf = malloc(MAX_ARG);
	if (!buf) {
		errno = ENOMEM;
		return -1;
	}
	have = readable(arg, buf, 4);
	if (have == 0) {
		q.flags |= IOCTL_ARG_FAULT;
	} else if (have == 4) {
		memcpy(&size, buf, 4);
		size_t want = size < 4 ? 4 : size > MAX_ARG ? MAX_ARG : size;
		have = readable_prefix(arg, buf, want, 4);
	}
	q.arg_len = (uint32_t)have;
	/* a struct larger than we send: the kernel checks that its tail is zero (E2BIG, EFAULT) */
	if (have == MAX_ARG && size > MAX_ARG && (daemon_features & FEATURE_IOCTL_TAIL)) {
		uint8_t *scratch = malloc(MAX_ARG);
		if (!scratch) {
			free(buf);
			errno = ENOMEM;
			return -1;
		}
		q.flags |= scan_tail(arg, MAX_ARG, size, scratch, MAX_ARG);
		free(scratch);
	}

	/* reservations, in the kernel's order as far as the client can keep it */
	if ((cmd == CMD_CREATE_SESSION || cmd == CMD_RETRIEVE_SESSION) && c->kind == K_DEVICE) {
		newfd = connect_daemon(1, &new_id, &new_ino);
		if (newfd < 0) {
			/* no fd: the daemon runs the checks the kernel makes before it would allocate one */
			if ((newfd == -EMFILE || newfd == -ENFILE) && (daemon_features & FEATURE_IOCTL_NO_FD)) {
				nofd = -newfd;
				newfd = -1;
				q.flags |= IOCTL_NO_FD;
			} else {
				err = newfd == -ENOENT ? EIO : -newfd;
				goto out;
			}
		} else {
			q.new_conn = (int32_t)new_id;
		}
	}
	if (cmd == CMD_RETRIEVE_FD && c->kind == K_SESSION) {
		memfd = (int)syscall(SYS_memfd_create, "", MFD_ALLOW_SEALING | MFD_CLOEXEC);
		if (memfd < 0) {
			err = errno;
			if ((err != EMFILE && err != ENFILE) || !(daemon_features & FEATURE_IOCTL_NO_FD))
				goto out;
			nofd = err;
			err = 0;
			q.flags |= IOCTL_NO_FD;
		} else {
			/* the file the program will hold: the daemon binds it to the retrieved file (5.5) */
			q.src_kind = SRC_PROC_FD;
			q.src_seals = SEALS_UNKNOWN;
			q.src_hidden_fd = memfd;
		}
	}
	if (cmd == CMD_PRESERVE_FD && c->kind == K_SESSION) {
		struct conn *src;
		q.src_kind = SRC_PROC_FD;
		q.src_seals = SEALS_UNKNOWN;
		q.src_hidden_fd = -1;
		if (have >= 8) {
			int ufd;
			memcpy(&ufd, buf + 4, 4);
			if (ufd >= 0 && (daemon_features & FEATURE_PLUGIN_FILES) && (src = our_conn(ufd)) && src->conn_id) {
				/* a file the daemon carries (a plugin's, or the device or a session: no
				 * handler takes those) is named by its connection (4.11) */
				q.src_kind = SRC_CONN;
				q.src_seals = 0;
				src_conn = src->conn_id;
			} else if (ufd >= 0 && sys_fcntl(ufd, F_GETFD, 0) >= 0 && is_memfd(ufd)) {
				int s = sys_fcntl(ufd, F_GET_SEALS, 0);
				struct preserved *p = pres_of_fd(ufd, 0);
				if (s >= 0)
					q.src_seals = (uint32_t)s & ~(p ? p->added : 0);
				hidden = hidden_dup(ufd);
				q.src_hidden_fd = hidden;
			}
		}
	}

	if (q.src_kind == SRC_CONN)
		q.src_len = 4;
	e = request(fd, MSG_IOCTL, &q, sizeof(q), buf, have, q.src_kind == SRC_CONN ? &src_conn : NULL, q.src_kind == SRC_CONN ? 4 : 0, &rp);
	if (e) {
		if (e == -EIO)
			c->dead = 1;
		err = -e;
		goto out;
	}
	if (rp.ret < 0) {
		err = rp.err ? (int)rp.err : EIO;
		if (nofd && err == EMFILE)
			err = nofd; /* where the kernel allocates the fd: our own reservation's error */
		/* a copy-back that faulted after the op ran is the daemon's to report; nothing else to do */
		goto out;
	}
	if (rp.len < 56 || nofd) {
		err = EIO; /* (with NO_FD the op cannot succeed) */
		goto out;
	}
	{
		uint32_t out_len = rd32(rp.data + 8), rflags = rd32(rp.data + 12);
		uint32_t inline_len = rd32(rp.data + 52);
		uint64_t handle = rd64(rp.data + 16), file_id = rd64(rp.data + 24);
		uint64_t fsize = rd64(rp.data + 32), fpos = rd64(rp.data + 40);
		uint32_t fseals = rd32(rp.data + 48);
		uint8_t *out = rp.data + 56, *inl = out + out_len;
		int32_t userfd = -1;

		if (56ull + out_len + inline_len > rp.len) {
			err = EIO;
			goto out;
		}
		ret = rp.ret;
		if (newfd >= 0) {
			userfd = newfd;
		} else if (memfd >= 0 && (rflags & REPLY_FILE) && (rflags & REPLY_CONN)) {
			/* a plugin's file: a connection of ours carries it, at the fd reserved for it */
			uint32_t aid, areq[4];
			ino_t aino;
			struct reply ar;
			int s = connect_daemon(1, &aid, &aino);

			areq[0] = c->conn_id, areq[1] = 0;
			memcpy(&areq[2], &handle, 8);
			e = s < 0 ? s : request(s, MSG_ATTACH, areq, sizeof(areq), NULL, 0, NULL, 0, &ar);
			if (!e && ar.ret < 0)
				e = -(int)(ar.err ? ar.err : EIO);
			if (s >= 0 && !e)
				reply_free(&ar);
			if (!e && syscall(SYS_dup3, s, memfd, O_CLOEXEC) != memfd)
				e = -errno;
			if (s >= 0)
				sys_close(s);
			if (e) {
				uint64_t h = handle;
				struct reply fr;
				DBG("attaching the retrieved plugin file failed: %s", strerror(-e));
				if (request(fd, MSG_RELEASE_FILE, &h, 8, NULL, 0, NULL, 0, &fr) == 0)
					reply_free(&fr);
				err = -e;
				ret = -1;
				goto out;
			}
			conn_add(aino, aid, K_PLUGIN, 0);
			userfd = memfd;
		} else if (memfd >= 0 && (rflags & REPLY_FILE)) {
			struct retrieved *r = NULL;
			for (size_t i = 0; i < nretr; i++)
				if (retr[i].file_id == file_id)
					r = &retr[i];
			if ((rflags & REPLY_AGAIN) && r && r->hidden >= 0 &&
			    syscall(SYS_dup3, r->hidden, memfd, O_CLOEXEC) == memfd) {
				/* the same open file again: shares the offset, as the kernel's does */
			} else {
				size_t got = 0;
				e = fill_memfd(memfd, inl, inline_len < fsize ? inline_len : fsize, 0);
				got = inline_len;
				while (!e && got < fsize) {
					uint64_t rq[3];
					struct reply fr;
					uint32_t want = fsize - got > MAX_READ ? MAX_READ : (uint32_t)(fsize - got);
					rq[0] = handle, rq[1] = got, rq[2] = want;
					e = request(fd, MSG_READ_FILE, rq, 24, NULL, 0, NULL, 0, &fr);
					if (e)
						break;
					if (fr.ret <= 0) {
						e = fr.ret < 0 ? -(int)fr.err : -EIO;
						reply_free(&fr);
						break;
					}
					e = fill_memfd(memfd, fr.data + 8, (size_t)fr.ret, got);
					got += fr.ret;
					reply_free(&fr);
				}
				if (!e && ftruncate64(memfd, (off64_t)fsize) < 0)
					e = -errno;
				/* memfd_luo_retrieve restores every folio up to the size: no holes (st_blocks) */
				if (!e && fsize && syscall(SYS_fallocate, memfd, 0, (off_t)0, (off_t)fsize) < 0)
					e = -errno;
				if (!e && lseek64(memfd, (off64_t)fpos, SEEK_SET) < 0)
					e = -errno;
				if (!e && fseals && sys_fcntl(memfd, F_ADD_SEALS, fseals) < 0)
					e = -errno;
				if (e) {
					DBG("filling the retrieved memfd failed: %s", strerror(-e));
					err = -e;
					ret = -1;
				} else {
					struct retrieved *n = grow(retr, &capretr, nretr + 1, sizeof(*retr));
					if (n) {
						retr = n;
						retr[nretr].file_id = file_id;
						retr[nretr].session = c->ino;
						retr[nretr].hidden = hidden_dup(memfd);
						nretr++;
					}
				}
			}
			{
				uint64_t h = handle;
				struct reply fr;
				if (request(fd, MSG_RELEASE_FILE, &h, 8, NULL, 0, NULL, 0, &fr) == 0)
					reply_free(&fr);
			}
			if (ret < 0)
				goto out;
			userfd = memfd;
		}
		if (userfd >= 0 && out_len >= 8)
			memcpy(out + 4, &userfd, 4);
		if (cmd == CMD_PRESERVE_FD && hidden >= 0) {
			/* preserved (and frozen) before the reply is copied: a faulting copy-back keeps it
			 * preserved, as luo_session_preserve_fd does */
			int ufd;
			memcpy(&ufd, buf + 4, 4);
			note_preserved(ufd, hidden, c->ino);
			hidden = -1;
		}
		if (out_len && to_user(arg, out, out_len)) {
			/* the kernel's copy back faulted: the op's new fd is released */
			err = EFAULT;
			ret = -1;
			goto out;
		}
		if (newfd >= 0) {
			conn_add(new_ino, new_id, K_SESSION, 0);
			newfd = -1;
		}
		if (memfd >= 0 && userfd == memfd)
			memfd = -1;
		if (cmd == CMD_FINISH)
			session_finished(c->ino);
	}
out:
	if (newfd >= 0) {
		/* release the reservation synchronously: a session made before a failed copy-back goes */
		struct reply cr;
		if (ret < 0 && err == EFAULT && request(newfd, MSG_CLOSE, NULL, 0, NULL, 0, NULL, 0, &cr) == 0)
			reply_free(&cr);
		sys_close(newfd);
	}
	if (memfd >= 0)
		sys_close(memfd);
	if (hidden >= 0)
		sys_close(hidden);
	if (rp.data)
		reply_free(&rp);
	free(buf);
	if (ret < 0) {
		errno = err ? err : EIO;
		return -1;
	}
	return ret;
}

/*
 * What do_vfs_ioctl (fs/ioctl.c, 7.3.4) answers for the device and session files before LUO sees
 * the command: 1 when handled (*ret, errno set), 0 to go on to LUO. FIOCLEX, FIONCLEX and FIONBIO
 * act on the socket itself (an fd flag, and O_NONBLOCK, which the shim's I/O copes with).
 * FIOASYNC needs f_op->fasync to change FASYNC, and neither LUO file has one: ENOTTY (the socket's
 * own fasync must not be armed: SIGIO would hit the program). FIOQSIZE answers only directories,
 * symlinks and non-anonymous regular files: ENOTTY. FIGETBSZ writes the superblock's block size,
 * PAGE_SIZE for the anonymous-inode mount and devtmpfs.
 */
static int luo_vfs_ioctl(int fd, unsigned long cmd, void *arg, int *ret)
{
	int v;

	switch (cmd) {
	case FIOCLEX:
	case FIONCLEX:
	case FIONBIO:
		*ret = RESOLVE(ioctl)(fd, cmd, arg);
		return 1;
	case FIOASYNC:
		*ret = -1;
		if (readable(arg, &v, sizeof(v)) < sizeof(v))
			errno = EFAULT;
		else if (v)
			errno = ENOTTY;
		else
			*ret = 0;
		return 1;
	case FIOQSIZE:
		*ret = -1;
		errno = ENOTTY;
		return 1;
	case FIGETBSZ:
		v = 4096;
		*ret = to_user(arg, &v, sizeof(v)) ? -1 : 0;
		if (*ret)
			errno = EFAULT;
		return 1;
	}
	return 0;
}

EXPORT int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;
	struct conn *c;
	int r, saved;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	saved = errno;
	pthread_mutex_lock(&lock);
	c = our_conn(fd);
	if (!c) {
		pthread_mutex_unlock(&lock);
		errno = saved;
		return RESOLVE(ioctl)(fd, cmd, arg);
	}
	if (luo_vfs_ioctl(fd, cmd, arg, &r)) {
		saved = errno;
		pthread_mutex_unlock(&lock);
		errno = saved;
		return r;
	}
	r = luo_ioctl(fd, c, cmd, arg);
	saved = errno;
	pthread_mutex_unlock(&lock);
	DBG("ioctl(%d, 0x%lx) = %d%s%s", fd, cmd, r, r < 0 ? " errno " : "", r < 0 ? strerrorname_np(saved) : "");
	errno = saved;
	return r;
}

/* ---------------------------------------------------------------- close, dup, fcntl */

EXPORT int close(int fd)
{
	struct conn *c;
	struct stat st;

	if (!nconns || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return RESOLVE(close)(fd);
	pthread_mutex_lock(&lock);
	c = conn_by_ino(st.st_ino);
	if (c && !c->shared && !c->dead) {
		/* the last reference: release the file now, as the kernel's close does */
		struct reply rp;
		ino_t ino = c->ino;
		int kind = c->kind;
		if (request(fd, MSG_CLOSE, NULL, 0, NULL, 0, NULL, 0, &rp) == 0)
			reply_free(&rp);
		conn_del(ino);
		if (kind == K_SESSION)
			session_released(ino);
	} else if (c && c->dead) {
		conn_del(c->ino);
	}
	pthread_mutex_unlock(&lock);
	return RESOLVE(close)(fd);
}

static void mark_shared(int fd)
{
	struct stat st;
	struct conn *c;

	if (!nconns || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return;
	pthread_mutex_lock(&lock);
	c = conn_by_ino(st.st_ino);
	if (c)
		c->shared = 1;
	pthread_mutex_unlock(&lock);
}

EXPORT int dup(int fd)
{
	mark_shared(fd);
	return RESOLVE(dup)(fd);
}

EXPORT int dup2(int fd, int fd2)
{
	if (fd != fd2)
		mark_shared(fd);
	return RESOLVE(dup2)(fd, fd2);
}

EXPORT int dup3(int fd, int fd2, int flags)
{
	mark_shared(fd);
	return RESOLVE(dup3)(fd, fd2, flags);
}

/*
 * F_ADD_SEALS on a preserved memfd whose folios LUO pins (size > 0): a new F_SEAL_WRITE, asked for
 * or implied by F_SEAL_EXEC on a file with exec bits, is EBUSY (mm/memfd.c memfd_add_seals:
 * memfd_wait_for_pins gives up). The earlier refusals (no FMODE_WRITE, unknown bits, F_SEAL_SEAL)
 * are left to the real fcntl.
 */
/* The seals F_ADD_SEALS of `seals` really adds: F_SEAL_EXEC on a file with exec bits implies
 * SHRINK|GROW|WRITE|FUTURE_WRITE (mm/memfd.c memfd_add_seals). */
static unsigned implied_seals(int fd, unsigned seals)
{
	struct stat st;

	if ((seals & F_SEAL_EXEC) && fstat(fd, &st) == 0 && (st.st_mode & 0111))
		seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
	return seals;
}

static int adds_write_to_pinned(int fd, unsigned seals)
{
	struct preserved *p;
	int fl, cur, busy = 0;

	if (seals & ~(unsigned)ALL_SEALS_)
		return 0;
	fl = sys_fcntl(fd, F_GETFL, 0);
	if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
		return 0;
	cur = sys_fcntl(fd, F_GET_SEALS, 0);
	if (cur < 0 || (cur & F_SEAL_SEAL) || (cur & F_SEAL_WRITE))
		return 0;
	if (!(implied_seals(fd, seals) & F_SEAL_WRITE))
		return 0;
	pthread_mutex_lock(&lock);
	p = pres_of_fd(fd, 1);
	busy = p && p->frozen_size > 0;
	pthread_mutex_unlock(&lock);
	return busy;
}

static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, unsigned long arg)
{
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		mark_shared(fd);
	if (cmd == F_GET_SEALS && nmasked) {
		int r = real(fd, cmd, arg), saved = errno;
		if (r >= 0) {
			pthread_mutex_lock(&lock);
			struct preserved *p = pres_of_fd(fd, 0);
			if (p)
				r &= ~(int)p->added;
			pthread_mutex_unlock(&lock);
		}
		errno = saved;
		return r;
	}
	if (cmd == F_ADD_SEALS && nactive && adds_write_to_pinned(fd, (unsigned)arg)) {
		errno = EBUSY;
		return -1;
	}
	if (cmd == F_ADD_SEALS && nmasked) {
		unsigned mine = implied_seals(fd, (unsigned)arg);
		int r = real(fd, cmd, arg), saved = errno;
		if (r == 0) {
			/* seals the program adds itself (or implies) are its own from now on */
			pthread_mutex_lock(&lock);
			struct preserved *p = pres_of_fd(fd, 0);
			if (p)
				p->added &= ~mine;
			pthread_mutex_unlock(&lock);
		}
		errno = saved;
		return r;
	}
	return real(fd, cmd, arg);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	unsigned long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	return fcntl_common(RESOLVE(fcntl), fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	unsigned long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	return fcntl_common(RESOLVE(fcntl64) ? real_fcntl64 : RESOLVE(fcntl), fd, cmd, arg);
}

/* ---------------------------------------------------------------- the size freeze for unsealable memfds */

/*
 * read/write on the device or a session fd: neither LUO file has read or write operations, so the
 * kernel's vfs_read/vfs_write answer EBADF for the wrong access mode, else EINVAL (fs/read_write.c);
 * the bytes must never reach the daemon's socket (they would corrupt the stream). Only connections
 * this process's table knows are checked (cheaply: one fstat when it has any).
 */
#define RW_PLUGIN (-1)

/*
 * 0: not ours; an errno; or RW_PLUGIN: a plugin's file, whose read(2)/write(2) the daemon answers.
 * Positional calls (pread/pwrite...) check a negative offset first (EINVAL), then FMODE_PREAD:
 * session and plugin files are anon inodes, which never have it (ESPIPE, 7.3.4 fs/read_write.c
 * ksys_pread64); the device was opened through do_dentry_open and has it.
 */
static int luo_rw_errno(int fd, int writing, int positional, long long off)
{
	struct stat st;
	struct conn *c;
	int e = 0;

	if (!nconns || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return 0;
	pthread_mutex_lock(&lock);
	c = conn_by_ino(st.st_ino);
	if (c && c->kind == K_UNKNOWN && positional)
		probe_kind(fd, c);
	if (c && positional && off < 0)
		e = EINVAL;
	else if (c && positional && (c->kind == K_SESSION || c->kind == K_PLUGIN))
		e = ESPIPE;
	else if (c && c->kind == K_PLUGIN)
		e = RW_PLUGIN;
	else if (c)
		e = c->accmode == (writing ? O_RDONLY : O_WRONLY) ? EBADF : EINVAL;
	pthread_mutex_unlock(&lock);
	return e;
}

/* read(2)/write(2) of a plugin's file through FILE_READ/FILE_WRITE; user memory checked as copy_*_user would. */
static ssize_t plugin_rw(int fd, int writing, void *ubuf, size_t n)
{
	struct stat st;
	struct conn *c;
	struct reply rp;
	uint8_t *tmp = NULL;
	uint32_t req[2];
	ssize_t r = -1;
	int e, err = 0;

	if (n > MAX_READ)
		n = MAX_READ;
	if (fstat(fd, &st) < 0)
		return -1;
	tmp = malloc(n ? n : 1);
	if (!tmp) {
		errno = ENOMEM;
		return -1;
	}
	if (writing && readable(ubuf, tmp, n) < n) {
		free(tmp);
		errno = EFAULT;
		return -1;
	}
	pthread_mutex_lock(&lock);
	c = conn_by_ino(st.st_ino);
	if (!c || c->dead) {
		err = EIO;
	} else {
		req[0] = (uint32_t)n, req[1] = 0;
		e = writing ? request(fd, MSG_FILE_WRITE, tmp, n, NULL, 0, NULL, 0, &rp) : request(fd, MSG_FILE_READ, req, sizeof(req), NULL, 0, NULL, 0, &rp);
		if (e) {
			if (e == -EIO)
				c->dead = 1;
			err = -e;
		} else {
			if (rp.ret < 0)
				err = rp.err ? (int)rp.err : EIO;
			else if (!writing && ((size_t)rp.ret > n || rp.len < 8 + (uint32_t)rp.ret))
				err = EIO;
			else if (!writing && rp.ret && to_user(ubuf, rp.data + 8, (size_t)rp.ret))
				err = EFAULT;
			else
				r = rp.ret;
			reply_free(&rp);
		}
	}
	pthread_mutex_unlock(&lock);
	free(tmp);
	if (r < 0)
		errno = err;
	return r;
}

#define LUO_RW_GUARD(fd, writing, off)                         \
	do {                                                   \
		int e_ = luo_rw_errno(fd, writing, 1, off);    \
		if (e_ > 0) {                                  \
			errno = e_;                            \
			return -1;                             \
		}                                              \
	} while (0)

/* read/write/readv/writev: a plugin's file goes to the daemon, LUO's files get their errno. */
#define LUO_RW(fd, writing, ubuf, n)                           \
	do {                                                   \
		int e_ = luo_rw_errno(fd, writing, 0, 0);      \
		if (e_ == RW_PLUGIN)                           \
			return plugin_rw(fd, writing, ubuf, n); \
		if (e_ > 0) {                                  \
			errno = e_;                            \
			return -1;                             \
		}                                              \
	} while (0)

/* The first non-empty iovec: what a plugin's read_iter/write_iter sees here (an eventfd's 8 bytes). */
static struct iovec first_iov(const struct iovec *iov, int cnt)
{
	for (int i = 0; i < cnt; i++)
		if (iov[i].iov_len)
			return iov[i];
	return (struct iovec){ NULL, 0 };
}

EXPORT ssize_t read(int fd, void *b, size_t n)
{
	LUO_RW(fd, 0, b, n);
	return RESOLVE(read)(fd, b, n);
}

EXPORT ssize_t pread(int fd, void *b, size_t n, off_t off)
{
	LUO_RW_GUARD(fd, 0, off);
	return RESOLVE(pread)(fd, b, n, off);
}

EXPORT ssize_t pread64(int fd, void *b, size_t n, off64_t off)
{
	LUO_RW_GUARD(fd, 0, off);
	return RESOLVE(pread64)(fd, b, n, off);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	struct iovec one = first_iov(iov, cnt);
	LUO_RW(fd, 0, one.iov_base, one.iov_len);
	return RESOLVE(readv)(fd, iov, cnt);
}

/*
 * For a preserved memfd that has F_SEAL_SEAL (no MFD_ALLOW_SEALING) the shim cannot seal: it
 * refuses what shmem refuses for a frozen inode, but only for calls through libc in this process
 * (and its forks). A write is cut where shmem's per-page write_begin would refuse: the pages fully
 * inside the size are written, a first page that crosses the end is EPERM.
 */

/* Any memfd this process preserved and that is still preserved (sealable or not). */
static struct preserved *frozen(int fd)
{
	struct preserved *p;

	if (!nactive)
		return NULL;
	pthread_mutex_lock(&lock);
	p = pres_of_fd(fd, 1);
	pthread_mutex_unlock(&lock);
	return p;
}

/* A preserved memfd the shim cannot seal (F_SEAL_SEAL): the one the libc guards below refuse for. */
static struct preserved *guarded(int fd)
{
	struct preserved *p = nguards ? frozen(fd) : NULL;

	return p && p->guard ? p : NULL;
}

/* How many of len bytes at off may be written (-1: none, EPERM). */
static ssize_t guard_len(struct preserved *p, off_t off, size_t len)
{
	off_t size = p->frozen_size, end = off + (off_t)len;

	/* a zero-length write never reaches shmem_write_begin: 0 wherever it is */
	if (len == 0)
		return 0;
	if (end <= size)
		return (ssize_t)len;
	off_t cut = size & ~(off_t)4095;
	if (cut <= off)
		return -1;
	return (ssize_t)(cut - off);
}

EXPORT int ftruncate(int fd, off_t len)
{
	struct preserved *p = guarded(fd);
	if (p && len != p->frozen_size) {
		errno = EPERM;
		return -1;
	}
	return RESOLVE(ftruncate)(fd, len);
}

EXPORT int ftruncate64(int fd, off64_t len)
{
	struct preserved *p = guarded(fd);
	if (p && len != p->frozen_size) {
		errno = EPERM;
		return -1;
	}
	return RESOLVE(ftruncate64)(fd, len);
}

static int fallocate_guard(int fd, int mode, off64_t off, off64_t len)
{
	(void)mode;
	/* shmem_fallocate refuses every mode while the mapping is frozen, inside the size too */
	if (len > 0 && off >= 0 && frozen(fd))
		return EPERM;
	return 0;
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	int e = fallocate_guard(fd, mode, off, len);
	if (e) {
		errno = e;
		return -1;
	}
	return RESOLVE(fallocate)(fd, mode, off, len);
}

EXPORT int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	int e = fallocate_guard(fd, mode, off, len);
	if (e) {
		errno = e;
		return -1;
	}
	return RESOLVE(fallocate64)(fd, mode, off, len);
}

EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
	int e = fallocate_guard(fd, 0, off, len);
	return e ? e : RESOLVE(posix_fallocate)(fd, off, len);
}

EXPORT int posix_fallocate64(int fd, off64_t off, off64_t len)
{
	int e = fallocate_guard(fd, 0, off, len);
	return e ? e : RESOLVE(posix_fallocate64)(fd, off, len);
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static off_t write_pos(int fd)
{
	int fl = sys_fcntl(fd, F_GETFL, 0);
	if (fl >= 0 && (fl & O_APPEND)) {
		struct stat st;
		return fstat(fd, &st) ? 0 : st.st_size;
	}
	return lseek(fd, 0, SEEK_CUR);
}

EXPORT ssize_t write(int fd, const void *b, size_t n)
{
	LUO_RW(fd, 1, (void *)b, n);
	struct preserved *p = nguards ? guarded(fd) : NULL;
	if (p) {
		ssize_t ok = guard_len(p, write_pos(fd), n);
		if (ok < 0) {
			errno = EPERM;
			return -1;
		}
		n = (size_t)ok;
	}
	return RESOLVE(write)(fd, b, n);
}

EXPORT ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
	LUO_RW_GUARD(fd, 1, off);
	struct preserved *p = nguards ? guarded(fd) : NULL;
	if (p) {
		ssize_t ok = guard_len(p, off, n);
		if (ok < 0) {
			errno = EPERM;
			return -1;
		}
		n = (size_t)ok;
	}
	return RESOLVE(pwrite)(fd, b, n, off);
}

EXPORT ssize_t pwrite64(int fd, const void *b, size_t n, off64_t off)
{
	LUO_RW_GUARD(fd, 1, off);
	struct preserved *p = nguards ? guarded(fd) : NULL;
	if (p) {
		ssize_t ok = guard_len(p, off, n);
		if (ok < 0) {
			errno = EPERM;
			return -1;
		}
		n = (size_t)ok;
	}
	return RESOLVE(pwrite64)(fd, b, n, off);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct iovec one = first_iov(iov, cnt);
	LUO_RW(fd, 1, one.iov_base, one.iov_len);
	struct preserved *p = nguards ? guarded(fd) : NULL;
	if (p) {
		size_t n = iov_total(iov, cnt);
		ssize_t ok = guard_len(p, write_pos(fd), n);
		if (ok < 0) {
			errno = EPERM;
			return -1;
		}
		if ((size_t)ok < n)
			return RESOLVE(pwrite)(fd, iov[0].iov_base, (size_t)ok < iov[0].iov_len ? (size_t)ok : iov[0].iov_len, write_pos(fd));
	}
	return RESOLVE(writev)(fd, iov, cnt);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	LUO_RW_GUARD(fd, 1, off);
	struct preserved *p = nguards ? guarded(fd) : NULL;
	if (p) {
		size_t n = iov_total(iov, cnt);
		ssize_t ok = guard_len(p, off, n);
		if (ok < 0) {
			errno = EPERM;
			return -1;
		}
		if ((size_t)ok < n)
			return RESOLVE(pwrite)(fd, iov[0].iov_base, (size_t)ok < iov[0].iov_len ? (size_t)ok : iov[0].iov_len, off);
	}
	return RESOLVE(pwritev)(fd, iov, cnt, off);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
	return pwritev(fd, iov, cnt, (off_t)off);
}

/* ---------------------------------------------------------------- process life */

static void atfork_prepare(void) { pthread_mutex_lock(&lock); }

static void atfork_parent(void)
{
	/* parent and child now both hold every connection: closes become asynchronous */
	for (size_t i = 0; i < nconns; i++)
		conns[i].shared = 1;
	pthread_mutex_unlock(&lock);
}

static void atfork_child(void)
{
	/* the child's thread has a new tid: the recursive lock it inherited is re-made, not unlocked */
	static const pthread_mutex_t fresh = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

	for (size_t i = 0; i < nconns; i++)
		conns[i].shared = 1;
	memcpy(&lock, &fresh, sizeof(lock));
}

__attribute__((constructor)) static void luo_preload_init(void)
{
	resolve_all();
	debug_on = getenv("LUO_PRELOAD_DEBUG") != NULL;
	socket_path_init();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	/* at start, before the program forks its workers: one line for the whole process tree */
	if (getenv("LUO_SOCKET") && !getenv("LUO_PRELOAD_QUIET") && !getenv("LUO_PRELOAD_WARNED")) {
		int fd = dial(1);
		if (fd >= 0)
			sys_close(fd);
		else if (fd != -EMFILE && fd != -ENFILE)
			warn_no_daemon(-fd);
	}
}

/* exit(): release the files this process alone holds now, as the kernel's exit does. */
__attribute__((destructor)) static void luo_preload_fini(void)
{
	for (size_t i = 0; i < nconns;) {
		struct conn *c = &conns[i];
		if (c->shared || c->dead || c->kind == K_UNKNOWN) {
			i++;
			continue;
		}
		/* find our fd for this connection */
		DIR *d = opendir("/proc/self/fd");
		int fd = -1;
		struct dirent *de;
		while (d && (de = readdir(d))) {
			struct stat st;
			int n = atoi(de->d_name);
			if (de->d_name[0] != '.' && n != dirfd(d) && fstat(n, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == c->ino) {
				fd = n;
				break;
			}
		}
		if (d)
			closedir(d);
		if (fd >= 0) {
			struct reply rp;
			if (request(fd, MSG_CLOSE, NULL, 0, NULL, 0, NULL, 0, &rp) == 0)
				reply_free(&rp);
			sys_close(fd);
		}
		conns[i] = conns[--nconns];
	}
}
