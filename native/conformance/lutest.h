/* SPDX-License-Identifier: MIT */
/*
 * luo conformance suite: helpers with the semantics of the kernel selftests' helpers
 * (shared/spec/kernel-abi.md §7.2), written for luo, and a tiny TAP harness that runs every case
 * in its own forked child with a time limit (like the kselftest harness does).
 *
 * Helpers return a value >= 0 on success and -errno on failure.
 * The programs are plain C against <linux/liveupdate.h>; they run unchanged on a real kernel with
 * LUO enabled, or on luo's simulated machine through the LD_PRELOAD shim (native/preload).
 */
#ifndef LUO_CONFORMANCE_LUTEST_H
#define LUO_CONFORMANCE_LUTEST_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/liveupdate.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LU_DEV "/dev/liveupdate"
#define LU_PAGE 4096

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

/* ---------------------------------------------------------------- ioctl helpers */

static inline int lu_name_ioctl(int luo, unsigned long cmd, const char *name)
{
	struct liveupdate_ioctl_create_session a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	/* at most 63 characters, so the name is always terminated */
	strncpy((char *)a.name, name, sizeof(a.name) - 1);
	if (ioctl(luo, cmd, &a) < 0)
		return -errno;
	return a.fd;
}

static inline int lu_create_session(int luo, const char *name)
{
	return lu_name_ioctl(luo, LIVEUPDATE_IOCTL_CREATE_SESSION, name);
}

static inline int lu_retrieve_session(int luo, const char *name)
{
	return lu_name_ioctl(luo, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name);
}

static inline int lu_preserve_fd(int s, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.fd = fd;
	a.token = token;
	return ioctl(s, LIVEUPDATE_SESSION_PRESERVE_FD, &a) < 0 ? -errno : 0;
}

static inline int lu_retrieve_fd(int s, uint64_t token)
{
	struct liveupdate_session_retrieve_fd a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.token = token;
	if (ioctl(s, LIVEUPDATE_SESSION_RETRIEVE_FD, &a) < 0)
		return -errno;
	return a.fd;
}

static inline int lu_finish(int s)
{
	struct liveupdate_session_finish a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	return ioctl(s, LIVEUPDATE_SESSION_FINISH, &a) < 0 ? -errno : 0;
}

static inline int lu_get_name(int s, char *out, size_t len)
{
	struct liveupdate_session_get_name a;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	if (ioctl(s, LIVEUPDATE_SESSION_GET_NAME, &a) < 0)
		return -errno;
	snprintf(out, len, "%.*s", (int)sizeof(a.name), (const char *)a.name);
	return 0;
}

/*
 * PRESERVE_FD with the argument struct in a read-only page: the kernel preserves the file, then
 * its copy-back faults. Returns the ioctl's -errno (-EFAULT expected), or -ENOMEM if no page.
 */
static inline int lu_preserve_fd_readonly_arg(int s, int fd, uint64_t token)
{
	struct liveupdate_session_preserve_fd *a;
	int r;

	a = mmap(NULL, LU_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return -ENOMEM;
	a->size = sizeof(*a), a->fd = fd, a->token = token;
	r = mprotect(a, LU_PAGE, PROT_READ) < 0 ? -errno : ioctl(s, LIVEUPDATE_SESSION_PRESERVE_FD, a) < 0 ? -errno : 0;
	munmap(a, LU_PAGE);
	return r;
}

/* Raise RLIMIT_NOFILE to n + 32; -EPERM when not allowed (callers skip). */
static inline int lu_raise_nofile(unsigned long n)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur >= n + 32)
		return 0;
	rl.rlim_cur = n + 32;
	if (rl.rlim_max < rl.rlim_cur)
		rl.rlim_max = rl.rlim_cur;
	return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

/*
 * One page memfd holding the NUL-terminated text, preserved under token; the memfd fd is closed
 * afterwards (LUO keeps its own reference).
 */
static inline int lu_preserve_text_memfd(int s, uint64_t token, const char *text)
{
	int fd = memfd_create("lu_text", 0), r;
	char *p;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, LU_PAGE) < 0)
		goto fail;
	p = mmap(NULL, LU_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	memcpy(p, text, strlen(text) + 1);
	munmap(p, LU_PAGE);
	r = lu_preserve_fd(s, fd, token);
	close(fd);
	return r;
fail:
	r = -errno;
	close(fd);
	return r;
}

/*
 * Retrieve token and compare the start of its first page with expected (when not NULL); returns
 * the fd, or -EINVAL on a mismatch.
 */
static inline int lu_retrieve_text_memfd(int s, uint64_t token, const char *expected)
{
	int fd = lu_retrieve_fd(s, token);
	char *p;

	if (fd < 0 || !expected)
		return fd;
	p = mmap(NULL, LU_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (strncmp(p, expected, LU_PAGE)) {
		munmap(p, LU_PAGE);
		close(fd);
		return -EINVAL;
	}
	munmap(p, LU_PAGE);
	return fd;
}

/* ---------------------------------------------------------------- TAP harness */

static int lu_failed_in_case;
static const char *lu_case_name;

#define LU_DIAG(...) do { printf("#   " __VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

/* Check a condition inside a case: print where and why, fail the case, keep going. */
#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			printf("#   %s:%d: %s: check failed: %s: ", __FILE__, __LINE__,    \
			       lu_case_name, #cond);                                      \
			printf(__VA_ARGS__);                                              \
			printf(" (errno %d %s)\n", errno, strerrorname_np(errno) ?: "?"); \
			fflush(stdout);                                                   \
			lu_failed_in_case = 1;                                            \
		}                                                                         \
	} while (0)

/* Like CHECK, but the case cannot go on (cond is evaluated once). */
#define REQUIRE(cond, ...)                                                              \
	do {                                                                            \
		int lu_ok_ = !!(cond);                                                  \
		if (!lu_ok_) {                                                          \
			printf("#   %s:%d: %s: required: %s: ", __FILE__, __LINE__,      \
			       lu_case_name, #cond);                                    \
			printf(__VA_ARGS__);                                            \
			printf(" (errno %d %s)\n", errno, strerrorname_np(errno) ?: "?"); \
			fflush(stdout);                                                 \
			_exit(1);                                                       \
		}                                                                       \
	} while (0)

/* Compare a helper's return (-errno) with the expected -errno. */
#define CHECK_ERR(expr, err)                                                               \
	do {                                                                               \
		long lu_r_ = (long)(expr);                                                 \
		if (lu_r_ != -(long)(err)) {                                               \
			printf("#   %s:%d: %s: %s returned %ld (%s), expected -%s\n", __FILE__, \
			       __LINE__, lu_case_name, #expr, lu_r_,                      \
			       lu_r_ < 0 ? (strerrorname_np(-lu_r_) ?: "?") : "success", #err); \
			fflush(stdout);                                                    \
			lu_failed_in_case = 1;                                             \
		}                                                                          \
	} while (0)

#define LU_SKIP_EXIT 4

#define SKIP(...) do { printf("#   SKIP: " __VA_ARGS__); printf("\n"); fflush(stdout); _exit(LU_SKIP_EXIT); } while (0)

struct lu_case {
	const char *name;
	void (*fn)(void);
	int needs_device;     /* 1: open /dev/liveupdate first into lu_dev, skip on ENOENT */
	unsigned timeout_s;
};

/* The fixture's device fd (-1 when the case does not need it). */
static int lu_dev = -1;

static inline int lu_run_one(const struct lu_case *c, int n)
{
	pid_t pid;
	int status, skipped = 0, ok;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		printf("not ok %d %s # fork: %s\n", n, c->name, strerror(errno));
		return 0;
	}
	if (pid == 0) {
		lu_case_name = c->name;
		/* a guard against a hang only: a slow machine must never fail a case */
		alarm(c->timeout_s ? c->timeout_s : 600);
		if (c->needs_device) {
			lu_dev = open(LU_DEV, O_RDWR);
			if (lu_dev < 0 && errno == ENOENT)
				SKIP("%s does not exist (no LUO)", LU_DEV);
			REQUIRE(lu_dev >= 0, "open(%s)", LU_DEV);
		}
		c->fn();
		/* the fixture's teardown: close what the case left open */
		if (lu_dev >= 0)
			close(lu_dev);
		fflush(stdout);
		_exit(lu_failed_in_case ? 1 : 0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == LU_SKIP_EXIT) {
		skipped = 1;
		ok = 1;
	} else if (WIFEXITED(status)) {
		ok = WEXITSTATUS(status) == 0;
	} else {
		ok = 0;
		printf("#   %s: killed by signal %d%s\n", c->name, WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? " (time limit)" : "");
	}
	printf("%sok %d %s%s\n", ok ? "" : "not ", n, c->name, skipped ? " # SKIP" : "");
	fflush(stdout);
	return ok;
}

/* Run every case (or only those named on the command line); exit 0 when all pass. */
static inline int lu_run_all(const struct lu_case *cases, int count, int argc, char **argv)
{
	int i, j, n = 0, pass = 0, planned = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < count; i++) {
		int want = argc < 2;
		for (j = 1; j < argc; j++)
			want |= !strcmp(argv[j], cases[i].name);
		planned += want;
	}
	printf("TAP version 13\n1..%d\n", planned);
	for (i = 0; i < count; i++) {
		int want = argc < 2;
		for (j = 1; j < argc; j++)
			want |= !strcmp(argv[j], cases[i].name);
		if (!want)
			continue;
		pass += lu_run_one(&cases[i], ++n);
	}
	printf("# %d / %d passed\n", pass, n);
	return pass == n ? 0 : 1;
}

#define LU_CASE(fn) { #fn, fn, 1, 0 }
#define LU_CASE_T(fn, t) { #fn, fn, 1, t }
#define LU_CASE_NODEV(fn) { #fn, fn, 0, 0 }

/* ---------------------------------------------------------------- two-stage programs */

/* A failure of a two-stage program: "FAIL: <what> (errno N NAME)", exit 1. */
static inline __attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d %s)\n", e, strerrorname_np(e) ?: "?");
	exit(1);
}

#define MUST(cond, ...) do { if (!(cond)) die(__VA_ARGS__); } while (0)

/* Fork a holder that keeps every fd open until killed; the parent exits 0. */
static inline __attribute__((noreturn)) void hold_and_exit(void)
{
	int pfd[2];
	pid_t pid;
	char c;

	MUST(pipe(pfd) == 0, "pipe");
	fflush(stdout);
	pid = fork();
	MUST(pid >= 0, "fork");
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		setsid();
		close(pfd[0]);
		/* like daemonize_and_wait: no stdio, cwd "/" */
		dup2(null, 0), dup2(null, 1), dup2(null, 2);
		close(null);
		if (chdir("/"))
			;
		if (write(pfd[1], "k", 1) != 1)
			_exit(1);
		close(pfd[1]);
		for (;;)
			pause();
	}
	close(pfd[1]);
	MUST(read(pfd[0], &c, 1) == 1, "holder did not start");
	printf("STAGE1 HOLDER %d\n", (int)pid);
	printf("STAGE1 DONE: sessions are held; kexec now\n");
	fflush(stdout);
	exit(0);
}

#endif /* LUO_CONFORMANCE_LUTEST_H */
