// SPDX-License-Identifier: MIT
/*
 * More single-stage conformance cases for /dev/liveupdate, beyond the kernel selftest: the
 * dispatcher's checks and their order (kernel-abi.md §2.2), name edge cases (§2.5), the fd
 * semantics of session fds (O_CLOEXEC, lowest free fd, dup, fork), PRESERVE_FD's error order,
 * and what a preserved memfd allows (the luo_memfd "preserved_ops" case, §7.6).
 */
#include "lutest.h"
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <linux/fs.h>

struct big_create {
	struct liveupdate_ioctl_create_session a;
	uint8_t tail[56];
};

static int raw_create(int dev, struct liveupdate_ioctl_create_session *a, uint32_t size, const char *name)
{
	a->size = size;
	if (name)
		strncpy((char *)a->name, name, sizeof(a->name));
	return ioctl(dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 ? -errno : a->fd;
}

/* ---- names */

static void retrieve_session_nonexistent(void)
{
	CHECK_ERR(lu_retrieve_session(lu_dev, "does-not-exist"), ENOENT);
}

static void name_compared_up_to_nul(void)
{
	struct liveupdate_ioctl_create_session a;
	char name[LIVEUPDATE_SESSION_NAME_LENGTH] = "";
	int s;

	/* bytes after the terminating NUL are not part of the name */
	memset(&a, 0, sizeof(a));
	memcpy(a.name, "tail\0garbage-after-nul", 22);
	s = raw_create(lu_dev, &a, sizeof(a), NULL);
	REQUIRE(s >= 0, "create: %d", s);
	CHECK_ERR(lu_get_name(s, name, sizeof(name)), 0);
	CHECK(!strcmp(name, "tail"), "name \"%s\"", name);
	CHECK_ERR(lu_create_session(lu_dev, "tail"), EEXIST);
	close(s);
}

static void name_freed_when_session_closed(void)
{
	int s = lu_create_session(lu_dev, "reuse-me"), t;

	REQUIRE(s >= 0, "create: %d", s);
	CHECK(close(s) == 0, "close");
	t = lu_create_session(lu_dev, "reuse-me");
	CHECK(t >= 0, "create again after close: %d", t);
}

static void name_64_bytes_after_63(void)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH + 1];
	int s;

	memset(name, 'n', 63);
	name[63] = 0;
	s = lu_create_session(lu_dev, name);
	CHECK(s >= 0, "63 characters: %d", s);
	CHECK_ERR(lu_create_session(lu_dev, name), EEXIST);
}

/* ---- the dispatcher */

static void unknown_nr_is_einval(void)
{
	char buf[128] = { 0 };
	int s = lu_create_session(lu_dev, "nr-checks");

	*(uint32_t *)buf = 72;
	REQUIRE(s >= 0, "create: %d", s);
	CHECK(ioctl(lu_dev, _IO(LIVEUPDATE_IOCTL_TYPE, 0x07), buf) < 0 && errno == EINVAL, "nr 0x07 on the device");
	CHECK(ioctl(lu_dev, _IO(LIVEUPDATE_IOCTL_TYPE, 0x02), buf) < 0 && errno == EINVAL, "nr 0x02 on the device");
	CHECK(ioctl(lu_dev, LIVEUPDATE_SESSION_GET_NAME, buf) < 0 && errno == EINVAL, "GET_NAME on the device");
	CHECK(ioctl(s, LIVEUPDATE_IOCTL_CREATE_SESSION, buf) < 0 && errno == EINVAL, "CREATE_SESSION on a session");
	CHECK(ioctl(s, _IO(LIVEUPDATE_IOCTL_TYPE, 0x47), buf) < 0 && errno == EINVAL, "nr 0x47 on a session");
	/* the nr check comes before reading the argument */
	CHECK(ioctl(lu_dev, _IO(LIVEUPDATE_IOCTL_TYPE, 0x07), NULL) < 0 && errno == EINVAL, "nr 0x07, NULL arg");
	close(s);
}

static void other_encoding_is_enotty(void)
{
	struct liveupdate_ioctl_create_session a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	strcpy((char *)a.name, "enotty");
	/* nr 0 is in the table but the full command differs */
	CHECK(ioctl(lu_dev, _IOWR(LIVEUPDATE_IOCTL_TYPE, 0, struct liveupdate_ioctl_create_session), &a) < 0 &&
	      errno == ENOTTY, "_IOWR(0xBA, 0, 72)");
	CHECK(ioctl(lu_dev, _IO(0xBB, 0), &a) < 0 && errno == ENOTTY, "_IO(0xBB, 0)");
	/* nothing was created */
	a.fd = -1;
	CHECK(raw_create(lu_dev, &a, sizeof(a), "enotty") >= 0, "create after the ENOTTY calls");
}

static void size_checks(void)
{
	struct big_create b;
	int r;

	memset(&b, 0, sizeof(b));
	CHECK_ERR(raw_create(lu_dev, &b.a, 0, "size-0"), EINVAL);
	CHECK_ERR(raw_create(lu_dev, &b.a, 4, "size-4"), EINVAL);
	CHECK_ERR(raw_create(lu_dev, &b.a, 71, "size-71"), EINVAL);
	r = raw_create(lu_dev, &b.a, sizeof(b), "size-big-zero-tail");
	CHECK(r >= 0, "size %zu with a zero tail: %d", sizeof(b), r);
	memset(&b, 0, sizeof(b));
	b.tail[55] = 1;
	CHECK_ERR(raw_create(lu_dev, &b.a, sizeof(b), "size-big-nonzero-tail"), E2BIG);
	/* E2BIG is decided by the bytes the kernel reads, i.e. up to size */
	r = raw_create(lu_dev, &b.a, sizeof(b) - 1, "size-big-tail-outside");
	CHECK(r >= 0, "non-zero byte just past size: %d", r);
}

static void reply_echoes_input(void)
{
	struct big_create b;
	int r;

	memset(&b, 0xEE, sizeof(b));
	memset(&b.a, 0, sizeof(b.a));
	strcpy((char *)b.a.name, "echo");
	/* size 72: only 72 bytes are written back; the bytes after them are untouched */
	r = raw_create(lu_dev, &b.a, sizeof(b.a), NULL);
	CHECK(r >= 0, "create: %d", r);
	CHECK(b.a.size == sizeof(b.a) && !strcmp((char *)b.a.name, "echo"), "input echoed");
	CHECK(b.tail[0] == 0xEE && b.tail[55] == 0xEE, "bytes beyond size untouched");
}

static void bad_pointers_are_efault(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *two = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct liveupdate_ioctl_create_session *a;

	REQUIRE(two != MAP_FAILED, "mmap");
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, NULL) < 0 && errno == EFAULT, "NULL");
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, (void *)8) < 0 && errno == EFAULT, "(void *)8");
	/* a struct whose declared size runs into an unmapped page */
	munmap(two + pg, pg);
	a = (void *)(two + pg - sizeof(*a));
	memset(a, 0, sizeof(*a));
	strcpy((char *)a->name, "efault-tail");
	a->size = sizeof(*a) + 64;
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 && errno == EFAULT, "size past the mapping");
	/* the same struct with its true size works */
	a->size = sizeof(*a);
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) == 0 && a->fd >= 0, "create with size 72");
	/* only the u32 size is readable */
	a = (void *)(two + pg - 4);
	a->size = 72;
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 && errno == EFAULT, "struct cut by the mapping");
}

static void readonly_reply_is_efault(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	struct liveupdate_ioctl_create_session *a =
		mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int s, before;

	REQUIRE(a != MAP_FAILED, "mmap");
	a->size = sizeof(*a);
	strcpy((char *)a->name, "readonly-reply");
	mprotect(a, pg, PROT_READ);
	before = dup(0);
	close(before);
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 && errno == EFAULT, "read-only struct");
	/* the reserved fd was released and the session is gone */
	s = dup(0);
	CHECK(s == before, "lowest free fd is %d, expected %d", s, before);
	close(s);
	s = lu_create_session(lu_dev, "readonly-reply");
	CHECK(s >= 0, "the name is free again: %d", s);
}

/* ---- session fds */

static void session_fd_flags(void)
{
	int s = lu_create_session(lu_dev, "fd-flags"), probe, hole, lowest;

	REQUIRE(s >= 0, "create: %d", s);
	CHECK(fcntl(s, F_GETFD) == FD_CLOEXEC, "session fd has FD_CLOEXEC");
	CHECK((fcntl(s, F_GETFL) & O_ACCMODE) == O_RDWR, "session fd is O_RDWR");
	CHECK(fcntl(lu_dev, F_GETFD) == 0, "device opened without O_CLOEXEC");
	/* the session gets the lowest free fd, also when that is a hole below other fds */
	hole = dup(0);
	probe = dup(0);
	close(hole);
	close(s);
	lowest = dup(0);
	close(lowest);
	s = lu_create_session(lu_dev, "fd-flags-2");
	CHECK(s == lowest, "session fd %d, lowest free was %d", s, lowest);
	close(probe);
	probe = dup(0);
	close(probe);
	s = lu_create_session(lu_dev, "fd-flags-3");
	CHECK(s == probe, "session fd %d, lowest free was %d", s, probe);
}

static void device_cloexec_open(void)
{
	int d;

	close(lu_dev);
	d = open(LU_DEV, O_RDWR | O_CLOEXEC);
	lu_dev = d;
	REQUIRE(d >= 0, "reopen with O_CLOEXEC");
	CHECK(fcntl(d, F_GETFD) == FD_CLOEXEC, "FD_CLOEXEC");
}

static void device_reopen_after_close(void)
{
	int d;

	CHECK(close(lu_dev) == 0, "close");
	lu_dev = -1;
	d = open(LU_DEV, O_RDWR);
	CHECK(d >= 0, "open again");
	lu_dev = d;
}

static void device_close_keeps_sessions(void)
{
	char name[64] = "";
	int s = lu_create_session(lu_dev, "outlives-device");

	REQUIRE(s >= 0, "create: %d", s);
	CHECK(close(lu_dev) == 0, "close device");
	lu_dev = open(LU_DEV, O_RDWR);
	REQUIRE(lu_dev >= 0, "reopen");
	CHECK_ERR(lu_get_name(s, name, sizeof(name)), 0);
	CHECK(!strcmp(name, "outlives-device"), "name %s", name);
	CHECK_ERR(lu_create_session(lu_dev, "outlives-device"), EEXIST);
}

static void device_dup_shares_open(void)
{
	int d = dup(lu_dev), s;

	REQUIRE(d >= 0, "dup");
	s = lu_create_session(d, "via-dup");
	CHECK(s >= 0, "create through the dup: %d", s);
	close(lu_dev);
	lu_dev = -1;
	/* the dup still holds the open file: the device is still busy */
	CHECK(open(LU_DEV, O_RDWR) < 0 && errno == EBUSY, "open while a dup is open");
	close(d);
	lu_dev = open(LU_DEV, O_RDWR);
	CHECK(lu_dev >= 0, "open after the last close");
}

static void session_dup_keeps_session(void)
{
	int s = lu_create_session(lu_dev, "dup-keeps"), d, t;
	char name[64] = "";

	REQUIRE(s >= 0, "create: %d", s);
	d = fcntl(s, F_DUPFD, 0);
	REQUIRE(d >= 0, "F_DUPFD");
	CHECK(fcntl(d, F_GETFD) == 0, "F_DUPFD clears FD_CLOEXEC");
	close(s);
	CHECK_ERR(lu_get_name(d, name, sizeof(name)), 0);
	CHECK(!strcmp(name, "dup-keeps"), "name %s", name);
	CHECK_ERR(lu_create_session(lu_dev, "dup-keeps"), EEXIST);
	close(d);
	t = lu_create_session(lu_dev, "dup-keeps");
	CHECK(t >= 0, "name free after the last close: %d", t);
}

static void session_shared_with_child(void)
{
	int s = lu_create_session(lu_dev, "forked"), status;
	pid_t pid;

	REQUIRE(s >= 0, "create: %d", s);
	pid = fork();
	if (pid == 0) {
		char name[64] = "";
		int r = lu_get_name(s, name, sizeof(name));
		_exit(r == 0 && !strcmp(name, "forked") ? 0 : 1);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child used the inherited session");
	/* the child's exit closed only its reference */
	CHECK_ERR(lu_create_session(lu_dev, "forked"), EEXIST);
	close(s);
}

static void session_exec_closes(void)
{
	/* exec closes an O_CLOEXEC session fd, which frees the name: /bin/sh -c true proves it */
	int s = lu_create_session(lu_dev, "exec-closes"), status, t;
	pid_t pid;

	REQUIRE(s >= 0, "create: %d", s);
	close(lu_dev);
	lu_dev = -1;
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
		_exit(127);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child");
	close(s);
	lu_dev = open(LU_DEV, O_RDWR);
	REQUIRE(lu_dev >= 0, "reopen");
	t = lu_create_session(lu_dev, "exec-closes");
	CHECK(t >= 0, "name free after the last close: %d", t);
}

static void getname_reserved_must_be_zero(void)
{
	struct liveupdate_session_get_name g;
	int s = lu_create_session(lu_dev, "reserved-check");

	REQUIRE(s >= 0, "create: %d", s);
	memset(&g, 0, sizeof(g));
	g.size = sizeof(g);
	g.reserved = 1;
	CHECK(ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &g) < 0 && errno == EINVAL, "reserved = 1");
	g.reserved = 0;
	g.size = 68;
	CHECK(ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &g) < 0 && errno == EINVAL, "size 68 (old layout)");
}

static void outgoing_session_direction(void)
{
	struct { struct liveupdate_session_finish f; uint8_t tail[8]; } big;
	int s = lu_create_session(lu_dev, "direction");

	REQUIRE(s >= 0, "create: %d", s);
	CHECK_ERR(lu_retrieve_fd(s, 1), EINVAL);
	CHECK_ERR(lu_finish(s), EINVAL);
	/* the direction check comes before the size check and the copy */
	memset(&big, 0, sizeof(big));
	big.f.size = 0;
	CHECK(ioctl(s, LIVEUPDATE_SESSION_FINISH, &big) < 0 && errno == EINVAL, "size 0");
	big.f.size = sizeof(big);
	big.tail[7] = 1;
	CHECK(ioctl(s, LIVEUPDATE_SESSION_FINISH, &big) < 0 && errno == EINVAL, "non-zero tail");
}

/* ---- PRESERVE_FD */

static void preserve_error_order(void)
{
	int s = lu_create_session(lu_dev, "preserve-order"), m = memfd_create("m", 0), p[2];

	REQUIRE(s >= 0 && m >= 0 && pipe(p) == 0, "setup");
	CHECK_ERR(lu_preserve_fd(s, m, 7), 0);
	/* a used token wins over everything else */
	CHECK_ERR(lu_preserve_fd(s, 12345, 7), EEXIST);
	CHECK_ERR(lu_preserve_fd(s, p[0], 7), EEXIST);
	CHECK_ERR(lu_preserve_fd(s, m, 7), EEXIST);
	CHECK_ERR(lu_preserve_fd(s, 12345, 8), EBADF);
	CHECK_ERR(lu_preserve_fd(s, -1, 8), EBADF);
	CHECK_ERR(lu_preserve_fd(s, p[0], 8), ENOENT);
	CHECK_ERR(lu_preserve_fd(s, p[1], 8), ENOENT);
	CHECK_ERR(lu_preserve_fd(s, s, 8), ENOENT);
	CHECK_ERR(lu_preserve_fd(s, lu_dev, 8), ENOENT);
	CHECK_ERR(lu_preserve_fd(s, m, 8), EBUSY);
	/* full 64-bit tokens */
	{
		int m2 = memfd_create("m2", 0);
		CHECK_ERR(lu_preserve_fd(s, m2, 0xFFFFFFFFFFFFFFFFull), 0);
		CHECK_ERR(lu_preserve_fd(s, m, 0xFFFFFFFFFFFFFFFFull), EEXIST);
	}
}

static void preserve_same_inode_other_open(void)
{
	/* another open of the same memfd (via /proc/self/fd) is the same file for LUO */
	int s = lu_create_session(lu_dev, "same-inode"), m = memfd_create("m", 0), o;
	char path[64];

	REQUIRE(s >= 0 && m >= 0, "setup");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", m);
	o = open(path, O_RDWR);
	REQUIRE(o >= 0, "reopen %s", path);
	CHECK_ERR(lu_preserve_fd(s, m, 1), 0);
	CHECK_ERR(lu_preserve_fd(s, o, 2), EBUSY);
}

static void preserve_sealed_memfds(void)
{
	int s = lu_create_session(lu_dev, "sealed"), h, ne;

	REQUIRE(s >= 0, "create: %d", s);
	h = memfd_create("sealed", MFD_ALLOW_SEALING);
	REQUIRE(h >= 0 && fcntl(h, F_ADD_SEALS, F_SEAL_WRITE) == 0, "memfd with F_SEAL_WRITE");
	CHECK_ERR(lu_preserve_fd(s, h, 1), 0);
	ne = memfd_create("noexec", MFD_NOEXEC_SEAL);
	if (ne >= 0)
		CHECK_ERR(lu_preserve_fd(s, ne, 2), 0);
}

static void preserve_tmpfile_on_shmem(void)
{
	/* can_preserve accepts any unlinked shmem file, not only memfds: an O_TMPFILE on /dev/shm */
	struct statfs sf;
	int s = lu_create_session(lu_dev, "tmpfile"), t;

	REQUIRE(s >= 0, "create: %d", s);
	if (statfs("/dev/shm", &sf) < 0 || sf.f_type != 0x01021994)
		SKIP("/dev/shm is not tmpfs");
	t = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
	if (t < 0)
		SKIP("O_TMPFILE on /dev/shm: %s", strerror(errno));
	CHECK_ERR(lu_preserve_fd(s, t, 1), 0);
}

static void preserve_hugetlb_memfd(void)
{
	/* hugetlbfs files are not shmem files: no handler takes them */
	int s = lu_create_session(lu_dev, "hugetlb"), m;

	REQUIRE(s >= 0, "create: %d", s);
	m = memfd_create("huge", MFD_HUGETLB);
	if (m < 0)
		SKIP("memfd_create(MFD_HUGETLB): %s", strerror(errno));
	CHECK_ERR(lu_preserve_fd(s, m, 1), ENOENT);
}

static void session_fd_emfile(void)
{
	struct rlimit rl, low;
	struct liveupdate_ioctl_create_session a;
	struct big_create big;
	char buf[72] = { 0 };
	int out = lu_create_session(lu_dev, "emfile-outgoing"), lowest, s;

	REQUIRE(out >= 0, "create: %d", out);
	lowest = dup(0);
	close(lowest);
	REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
	low = rl;
	low.rlim_cur = lowest;
	REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit %d", lowest);
	CHECK_ERR(lu_create_session(lu_dev, "emfile"), EMFILE);
	/* the dispatcher's checks do not need a free fd */
	*(uint32_t *)buf = 72;
	CHECK(ioctl(lu_dev, _IO(LIVEUPDATE_IOCTL_TYPE, 0x07), buf) < 0 && errno == EINVAL, "unknown nr at the fd limit");
	/* the ops allocate the fd after the dispatcher's checks (get_unused_fd_flags inside the op) */
	memset(&a, 0, sizeof(a));
	CHECK_ERR(raw_create(lu_dev, &a, 8, "emfile"), EINVAL);
	memset(&big, 0, sizeof(big));
	big.tail[55] = 1;
	CHECK_ERR(raw_create(lu_dev, &big.a, sizeof(big), "emfile"), E2BIG);
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, NULL) < 0 && errno == EFAULT, "bad pointer at the fd limit");
	CHECK(ioctl(lu_dev, _IOW(LIVEUPDATE_IOCTL_TYPE, 0x00, struct liveupdate_ioctl_create_session), buf) < 0 && errno == ENOTTY,
	      "other encoding at the fd limit");
	/* ... and before the op's own work: a missing or taken name is EMFILE too */
	CHECK_ERR(lu_retrieve_session(lu_dev, "does-not-exist"), EMFILE);
	CHECK_ERR(lu_create_session(lu_dev, "emfile-outgoing"), EMFILE);
	/* RETRIEVE_FD: the direction check comes first */
	CHECK_ERR(lu_retrieve_fd(out, 1), EINVAL);
	REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit back");
	/* nothing was created */
	s = lu_create_session(lu_dev, "emfile");
	CHECK(s >= 0, "create after EMFILE: %d", s);
}

/*
 * A process's exit releases its files before its parent's waitpid returns: the device and a name
 * whose last reference the child held are free at once (the shim's connections are released when
 * the daemon sees their EOF; the daemon handles every pending EOF before the next request).
 */
static void release_before_waitpid(void)
{
	pid_t pid;
	int st, s;

	/* a session shared with a child, closed here first: the child's _exit drops the last reference */
	s = lu_create_session(lu_dev, "exit-released");
	REQUIRE(s >= 0, "create: %d", s);
	pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0)
		_exit(0);
	close(s);
	REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
	s = lu_create_session(lu_dev, "exit-released");
	CHECK(s >= 0, "name free after the child's exit: %d", s);
	if (s >= 0)
		close(s);
	/* the device opened by a child that _exits (no destructor runs) */
	close(lu_dev);
	lu_dev = -1;
	for (int i = 0; i < 20; i++) {
		pid = fork();
		REQUIRE(pid >= 0, "fork");
		if (pid == 0) {
			int d = open(LU_DEV, O_RDWR);
			_exit(d >= 0 && lu_create_session(d, "child-session") >= 0 ? 0 : 1);
		}
		REQUIRE(waitpid(pid, &st, 0) == pid && WIFEXITED(st), "waitpid");
		CHECK(WEXITSTATUS(st) == 0, "round %d: the child could not open the device and create its session", i);
	}
	lu_dev = open(LU_DEV, O_RDWR);
	CHECK(lu_dev >= 0, "open after the children's _exit");
	if (lu_dev >= 0) {
		s = lu_create_session(lu_dev, "child-session");
		CHECK(s >= 0, "the children's session name is free: %d", s);
	}
}

/* After PRESERVE_FD the memfd's size is frozen: writes inside still work, growth and truncation fail. */
static void preserved_memfd_ops_run(unsigned int mfd_flags)
{
	const size_t size = 1 << 20;
	int s = lu_create_session(lu_dev, "preserved-ops"), m = memfd_create("ops", mfd_flags);
	struct stat st;
	char c = 'w';

	REQUIRE(s >= 0 && m >= 0, "setup");
	REQUIRE(ftruncate(m, size) == 0, "ftruncate 1 MiB");
	CHECK_ERR(lu_preserve_fd(s, m, 1), 0);
	CHECK(pwrite(m, "inside", 6, 4096) == 6, "write inside");
	/* shmem writes page by page: the step inside the size is written, the one past it refused */
	CHECK(pwrite(m, "crossing", 8, size - 4) == 4, "write crossing the end is cut at the end");
	CHECK(pwrite(m, "crossing", 8, size - 4096 - 2) == 8, "write crossing a page boundary inside");
	CHECK(pwrite(m, &c, 1, size) < 0 && errno == EPERM, "write at the end");
	CHECK(ftruncate(m, 2 * size) < 0 && errno == EPERM, "growing ftruncate");
	CHECK(ftruncate(m, size / 2) < 0 && errno == EPERM, "shrinking ftruncate");
	CHECK(ftruncate(m, size) == 0, "ftruncate to the same size");
	CHECK(fallocate(m, 0, 0, 4096) < 0 && errno == EPERM, "fallocate inside the size");
	CHECK(fallocate(m, 0, size, 4096) < 0 && errno == EPERM, "growing fallocate");
	CHECK(fstat(m, &st) == 0 && st.st_size == (off_t)size, "size %ld", (long)st.st_size);
	/* closing the outgoing session unpreserves and unfreezes */
	close(s);
	CHECK(ftruncate(m, 2 * size) == 0, "ftruncate after unpreserve");
}

static void preserved_memfd_ops(void)
{
	preserved_memfd_ops_run(0);
}

static void preserved_memfd_ops_sealable(void)
{
	preserved_memfd_ops_run(MFD_ALLOW_SEALING);
}

static void preserved_memfd_seals_unchanged(void)
{
	int s = lu_create_session(lu_dev, "seals-unchanged");
	int a = memfd_create("a", MFD_ALLOW_SEALING), b = memfd_create("b", 0);

	REQUIRE(s >= 0 && a >= 0 && b >= 0, "setup");
	REQUIRE(fcntl(a, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "seal");
	CHECK_ERR(lu_preserve_fd(s, a, 1), 0);
	CHECK_ERR(lu_preserve_fd(s, b, 2), 0);
	CHECK(fcntl(a, F_GET_SEALS) == F_SEAL_SHRINK, "seals of a: 0x%x", fcntl(a, F_GET_SEALS));
	CHECK(fcntl(b, F_GET_SEALS) == F_SEAL_SEAL, "seals of b: 0x%x", fcntl(b, F_GET_SEALS));
}

static void preserved_memfd_outlives_fd(void)
{
	/* closing the user's memfd fd does not unpreserve: the same file stays busy */
	int s = lu_create_session(lu_dev, "outlives-fd"), m = memfd_create("m", 0), o;
	char path[64];

	REQUIRE(s >= 0 && m >= 0, "setup");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", m);
	o = open(path, O_RDWR);
	REQUIRE(o >= 0, "reopen");
	CHECK_ERR(lu_preserve_fd(s, m, 1), 0);
	close(m);
	CHECK_ERR(lu_preserve_fd(s, o, 2), EBUSY);
	close(s);
	/* unpreserved with the session: preservable again */
	s = lu_create_session(lu_dev, "outlives-fd");
	REQUIRE(s >= 0, "create again");
	CHECK_ERR(lu_preserve_fd(s, o, 2), 0);
}

/* ---- what a real 7.3.4 answered differently from luo under random testing (issue 10) */

/* The VFS answers some commands before LUO sees them (fs/ioctl.c do_vfs_ioctl). */
static void generic_vfs_ioctls(void)
{
	int s = lu_create_session(lu_dev, "vfs-ioctls"), v, fds[2];
	long long q;

	REQUIRE(s >= 0, "create");
	fds[0] = lu_dev, fds[1] = s;
	for (int i = 0; i < 2; i++) {
		int fd = fds[i];
		q = -7;
		CHECK(ioctl(fd, FIOQSIZE, &q) < 0 && errno == ENOTTY && q == -7, "FIOQSIZE on %s", i ? "a session" : "the device");
		v = -7;
		CHECK(ioctl(fd, FIGETBSZ, &v) == 0 && v == 4096, "FIGETBSZ on %s: %d", i ? "a session" : "the device", v);
		CHECK(ioctl(fd, FIGETBSZ, NULL) < 0 && errno == EFAULT, "FIGETBSZ to NULL");
		v = 1;
		CHECK(ioctl(fd, FIOASYNC, &v) < 0 && errno == ENOTTY, "FIOASYNC on (no fasync operation)");
		v = 0;
		CHECK(ioctl(fd, FIOASYNC, &v) == 0, "FIOASYNC off (no change)");
		CHECK(ioctl(fd, FIOASYNC, NULL) < 0 && errno == EFAULT, "FIOASYNC from NULL");
		v = 0;
		CHECK(ioctl(fd, FIONREAD, &v) < 0 && errno == EINVAL, "FIONREAD reaches LUO (nr 0x1b: EINVAL)");
		CHECK(ioctl(fd, FIOCLEX) == 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC), "FIOCLEX");
		CHECK(ioctl(fd, FIONCLEX) == 0 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC), "FIONCLEX");
	}
	/* the device still works afterwards */
	CHECK(lu_create_session(lu_dev, "vfs-ioctls-2") >= 0, "create after the generic ioctls");
}

/* memfd_luo_preserve pins (and so allocates) every page up to the size: st_blocks is the whole size. */
static void preserved_memfd_blocks(void)
{
	int s = lu_create_session(lu_dev, "blocks"), m = memfd_create("holes", MFD_ALLOW_SEALING), e = memfd_create("empty", 0);
	struct stat st;

	REQUIRE(s >= 0 && m >= 0 && e >= 0, "setup");
	REQUIRE(ftruncate(m, 10 * LU_PAGE + 100) == 0 && pwrite(m, "x", 1, 3 * LU_PAGE) == 1, "sparse memfd");
	REQUIRE(fstat(m, &st) == 0 && st.st_blocks == 8, "one page allocated before: %ld blocks", (long)st.st_blocks);
	CHECK_ERR(lu_preserve_fd(s, m, 1), 0);
	CHECK(fstat(m, &st) == 0 && st.st_blocks == 11 * 8, "after PRESERVE_FD: %ld blocks, want 88", (long)st.st_blocks);
	CHECK_ERR(lu_preserve_fd(s, e, 2), 0);
	CHECK(fstat(e, &st) == 0 && st.st_blocks == 0, "an empty memfd: %ld blocks", (long)st.st_blocks);
	close(s);
	CHECK(fstat(m, &st) == 0 && st.st_blocks == 11 * 8, "after unpreserve the pages stay: %ld blocks", (long)st.st_blocks);
}

/* A new F_SEAL_WRITE (or F_SEAL_EXEC implying it) on a preserved memfd's pinned pages: EBUSY. */
static void preserved_memfd_write_seal_busy(void)
{
	int s = lu_create_session(lu_dev, "seal-busy");
	int a = memfd_create("a", MFD_ALLOW_SEALING), b = memfd_create("b", MFD_ALLOW_SEALING);
	int z = memfd_create("z", MFD_ALLOW_SEALING), n = memfd_create("n", MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);

	REQUIRE(s >= 0 && a >= 0 && b >= 0 && z >= 0, "setup");
	REQUIRE(ftruncate(a, LU_PAGE) == 0 && ftruncate(b, LU_PAGE) == 0, "sizes");
	CHECK_ERR(lu_preserve_fd(s, a, 1), 0);
	CHECK_ERR(lu_preserve_fd(s, b, 2), 0);
	CHECK_ERR(lu_preserve_fd(s, z, 3), 0);
	CHECK(fcntl(a, F_ADD_SEALS, F_SEAL_WRITE) < 0 && errno == EBUSY, "F_SEAL_WRITE on pinned pages");
	CHECK(fcntl(b, F_ADD_SEALS, F_SEAL_EXEC) < 0 && errno == EBUSY, "F_SEAL_EXEC on an exec-mode memfd implies F_SEAL_WRITE");
	CHECK(fcntl(a, F_ADD_SEALS, 0x4000) < 0 && errno == EINVAL, "unknown bits come first");
	CHECK(fcntl(a, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0, "F_SEAL_FUTURE_WRITE needs no pin check");
	CHECK(fcntl(z, F_ADD_SEALS, F_SEAL_WRITE) == 0, "an empty memfd has no pinned pages");
	if (n >= 0) {
		REQUIRE(ftruncate(n, LU_PAGE) == 0, "size");
		CHECK_ERR(lu_preserve_fd(s, n, 4), 0);
		CHECK(fcntl(n, F_ADD_SEALS, F_SEAL_EXEC) == 0, "F_SEAL_EXEC without exec bits implies nothing");
	}
	close(s);
	CHECK(fcntl(a, F_ADD_SEALS, F_SEAL_WRITE) == 0, "after unpreserve: unpinned");
}

/* A zero-length write never reaches shmem_write_begin: 0 at or past the frozen size. */
static void preserved_memfd_zero_length_write(void)
{
	for (int sealable = 0; sealable < 2; sealable++) {
		int s = lu_create_session(lu_dev, "zero-write"), m = memfd_create("z", sealable ? MFD_ALLOW_SEALING : 0);
		char c = 0;
		struct iovec iov = { &c, 0 };

		REQUIRE(s >= 0 && m >= 0 && ftruncate(m, LU_PAGE) == 0, "setup");
		CHECK_ERR(lu_preserve_fd(s, m, 1), 0);
		CHECK(pwrite(m, &c, 0, LU_PAGE) == 0, "pwrite of 0 bytes at the size");
		CHECK(pwrite(m, &c, 0, 10 * LU_PAGE) == 0, "pwrite of 0 bytes past the size");
		CHECK(lseek(m, 5 * LU_PAGE, SEEK_SET) == 5 * LU_PAGE && write(m, &c, 0) == 0, "write of 0 bytes past the size");
		CHECK(writev(m, &iov, 1) == 0, "writev of 0 bytes");
		CHECK(pwrite(m, &c, 1, 10 * LU_PAGE) < 0 && errno == EPERM, "one byte past the size");
		close(s);
		close(m);
	}
}

/* PRESERVE_FD whose reply cannot be copied back: EFAULT, but the file is preserved and frozen. */
static void preserve_fd_reply_fault_keeps_it(void)
{
	for (int sealable = 0; sealable < 2; sealable++) {
		int s = lu_create_session(lu_dev, "reply-fault"), m = memfd_create("m", sealable ? MFD_ALLOW_SEALING : 0);

		REQUIRE(s >= 0 && m >= 0 && ftruncate(m, LU_PAGE) == 0, "setup");
		CHECK_ERR(lu_preserve_fd_readonly_arg(s, m, 7), EFAULT);
		CHECK(pwrite(m, "x", 1, LU_PAGE) < 0 && errno == EPERM, "frozen: a growing write is EPERM");
		CHECK(fallocate(m, 0, 0, LU_PAGE) < 0 && errno == EPERM, "frozen: fallocate is EPERM");
		CHECK_ERR(lu_preserve_fd(s, m, 8), EBUSY);
		CHECK_ERR(lu_preserve_fd(s, memfd_create("other", 0), 7), EEXIST);
		close(s);
		close(m);
	}
}

/* Structs larger than 64 KiB: copy_struct_from_user checks their tail, however long. */
static void huge_zero_tailed_struct(void)
{
	const size_t big = (64 << 10) + 8, map = 80 << 10;
	/* one page more, then unmapped again: a hole right after the buffer */
	uint8_t *p = mmap(NULL, map + LU_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct liveupdate_ioctl_create_session *a = (void *)p;
	struct liveupdate_session_get_name *g = (void *)p;
	int s;

	REQUIRE(p != MAP_FAILED && munmap(p + map, LU_PAGE) == 0, "mmap");
	a->size = big;
	strcpy((char *)a->name, "huge-struct");
	s = ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) == 0 ? a->fd : -1;
	CHECK(s >= 0, "CREATE_SESSION with a %zu-byte zero-tailed struct", big);
	CHECK(a->size == big, "size echoed: %u", a->size);
	memset(p, 0, map);
	a->size = big;
	strcpy((char *)a->name, "huge-struct-2");
	p[big - 1] = 1;
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 && errno == E2BIG, "a nonzero byte at the very end: E2BIG");
	p[big - 1] = 0;
	a->size = map + 4096;
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 && errno == EFAULT, "a zero tail running into unmapped memory: EFAULT");
	p[map - 1] = 5;
	CHECK(ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, a) < 0 && errno == E2BIG, "a nonzero byte before the fault: E2BIG");
	if (s >= 0) {
		memset(p, 0, map);
		g->size = big;
		CHECK(ioctl(s, LIVEUPDATE_SESSION_GET_NAME, g) == 0 && !strcmp((char *)g->name, "huge-struct"), "GET_NAME with a huge struct");
	}
	munmap(p, map);
}

static const struct lu_case cases[] = {
	LU_CASE(retrieve_session_nonexistent),
	LU_CASE(name_compared_up_to_nul),
	LU_CASE(name_freed_when_session_closed),
	LU_CASE(name_64_bytes_after_63),
	LU_CASE(unknown_nr_is_einval),
	LU_CASE(other_encoding_is_enotty),
	LU_CASE(size_checks),
	LU_CASE(reply_echoes_input),
	LU_CASE(bad_pointers_are_efault),
	LU_CASE(readonly_reply_is_efault),
	LU_CASE(session_fd_flags),
	LU_CASE(device_cloexec_open),
	LU_CASE(device_reopen_after_close),
	LU_CASE(device_close_keeps_sessions),
	LU_CASE(device_dup_shares_open),
	LU_CASE(session_dup_keeps_session),
	LU_CASE(session_shared_with_child),
	LU_CASE(session_exec_closes),
	LU_CASE(getname_reserved_must_be_zero),
	LU_CASE(outgoing_session_direction),
	LU_CASE(preserve_error_order),
	LU_CASE(preserve_same_inode_other_open),
	LU_CASE(preserve_sealed_memfds),
	LU_CASE(preserve_tmpfile_on_shmem),
	LU_CASE(preserve_hugetlb_memfd),
	LU_CASE(session_fd_emfile),
	LU_CASE(release_before_waitpid),
	LU_CASE(preserved_memfd_ops),
	LU_CASE(preserved_memfd_ops_sealable),
	LU_CASE(preserved_memfd_seals_unchanged),
	LU_CASE(preserved_memfd_outlives_fd),
	LU_CASE(generic_vfs_ioctls),
	LU_CASE(preserved_memfd_blocks),
	LU_CASE(preserved_memfd_write_seal_busy),
	LU_CASE(preserved_memfd_zero_length_write),
	LU_CASE(preserve_fd_reply_fault_keeps_it),
	LU_CASE(huge_zero_tailed_struct),
};

int main(int argc, char **argv)
{
	return lu_run_all(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
}
