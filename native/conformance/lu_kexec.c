// SPDX-License-Identifier: MIT
/*
 * The two-stage kexec scenarios of the kernel's liveupdate selftests (kernel-abi.md §7.4, §7.6),
 * written for luo. One program, one scenario per run:
 *
 *     lu_kexec SCENARIO [-s|--stage N]
 *
 * Stage 1 (old kernel): finds no state session, creates it (holding "2"), creates the scenario's
 * sessions and preserved memfds, then forks a holder that keeps every session fd open (closing them
 * would unpreserve) and exits 0, printing "STAGE1 HOLDER <pid>". Then the machine kexecs.
 * Stage 2 (new kernel, a new process): retrieves the state session and reads 2 from it, retrieves
 * every session and memfd and compares the contents, finishes the sessions and prints
 * "--- <SCENARIO> TEST PASSED ---". Any failure prints "FAIL: ..." and exits 1; no /dev/liveupdate
 * exits 4 (skip).
 */
#include "lutest.h"
#include <getopt.h>
#include <sys/syscall.h>

/* ---------------------------------------------------------------- state session */

static void create_state(int dev, const char *name, uint64_t token, int next_stage)
{
	char text[16];
	int s = lu_create_session(dev, name), r;

	MUST(s >= 0, "create state session %s: %d", name, s);
	snprintf(text, sizeof(text), "%d", next_stage);
	r = lu_preserve_text_memfd(s, token, text);
	MUST(r == 0, "preserve state memfd: %d", r);
	/* s stays open on purpose: the holder keeps it */
}

static int read_state(int state, uint64_t token)
{
	char buf[16] = "";
	int fd = lu_retrieve_fd(state, token);

	MUST(fd >= 0, "retrieve state memfd: %d", fd);
	MUST(pread(fd, buf, sizeof(buf) - 1, 0) >= 0, "read state memfd");
	close(fd);
	return atoi(buf);
}

static void finish_and_close(int s, const char *what)
{
	int r = lu_finish(s);

	MUST(r == 0, "finish %s: %d", what, r);
	MUST(close(s) == 0, "close %s", what);
}

/* ---------------------------------------------------------------- deterministic data */

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

static void expect_text(int s, uint64_t token, const char *text, const char *what)
{
	int fd = lu_retrieve_text_memfd(s, token, text);

	MUST(fd >= 0, "%s: restore token 0x%llx: %d", what, (unsigned long long)token, fd);
	close(fd);
}

/* ---------------------------------------------------------------- scenarios */

struct scenario {
	const char *name;
	const char *state;
	uint64_t state_token;
	const char *banner;
	void (*stage1)(int dev);
	void (*stage2)(int dev);
};

/* luo_kexec_simple: one session, one memfd */
static void simple_1(int dev)
{
	int s = lu_create_session(dev, "test-session");

	MUST(s >= 0, "create test-session: %d", s);
	MUST(lu_preserve_text_memfd(s, 0x1A, "hello kexec world") == 0, "preserve");
}

static void simple_2(int dev)
{
	int s = lu_retrieve_session(dev, "test-session");

	MUST(s >= 0, "retrieve test-session: %d", s);
	expect_text(s, 0x1A, "hello kexec world", "test-session");
	finish_and_close(s, "test-session");
}

/* luo_multi_session: two empty sessions, one with a file, one with two */
static const struct { const char *session; uint64_t token; const char *text; } multi_files[] = {
	{ "multi-test-files-1", 0x1001, "Data for session files 1" },
	{ "multi-test-files-2", 0x2002, "First file for session files 2" },
	{ "multi-test-files-2", 0x3003, "Second file for session files 2" },
};

static void multi_1(int dev)
{
	int e1 = lu_create_session(dev, "multi-test-empty-1");
	int e2 = lu_create_session(dev, "multi-test-empty-2");
	int f1 = lu_create_session(dev, "multi-test-files-1");
	int f2 = lu_create_session(dev, "multi-test-files-2");

	MUST(e1 >= 0 && e2 >= 0 && f1 >= 0 && f2 >= 0, "create: %d %d %d %d", e1, e2, f1, f2);
	for (unsigned i = 0; i < 3; i++)
		MUST(lu_preserve_text_memfd(i ? f2 : f1, multi_files[i].token, multi_files[i].text) == 0,
		     "preserve 0x%llx", (unsigned long long)multi_files[i].token);
}

static void multi_2(int dev)
{
	int e1 = lu_retrieve_session(dev, "multi-test-empty-1");
	int e2 = lu_retrieve_session(dev, "multi-test-empty-2");
	int f1 = lu_retrieve_session(dev, "multi-test-files-1");
	int f2 = lu_retrieve_session(dev, "multi-test-files-2");

	MUST(e1 >= 0 && e2 >= 0 && f1 >= 0 && f2 >= 0, "retrieve: %d %d %d %d", e1, e2, f1, f2);
	for (unsigned i = 0; i < 3; i++)
		expect_text(i ? f2 : f1, multi_files[i].token, multi_files[i].text, multi_files[i].session);
	finish_and_close(e1, "multi-test-empty-1");
	finish_and_close(e2, "multi-test-empty-2");
	finish_and_close(f1, "multi-test-files-1");
	finish_and_close(f2, "multi-test-files-2");
}

/* luo_stress_sessions: 2000 empty sessions */
#define STRESS_SESSIONS 2000
static void stress_sessions_1(int dev)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int r = lu_raise_nofile(STRESS_SESSIONS);

	if (r == -EPERM) {
		printf("SKIP: cannot raise RLIMIT_NOFILE\n");
		exit(LU_SKIP_EXIT);
	}
	for (int i = 0; i < STRESS_SESSIONS; i++) {
		snprintf(name, sizeof(name), "many-test-%d", i);
		r = lu_create_session(dev, name);
		MUST(r >= 0, "create %s: %d", name, r);
	}
}

static void stress_sessions_2(int dev)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int r = lu_raise_nofile(STRESS_SESSIONS);

	MUST(r == 0 || r == -EPERM, "nofile");
	for (int i = 0; i < STRESS_SESSIONS; i++) {
		snprintf(name, sizeof(name), "many-test-%d", i);
		int s = lu_retrieve_session(dev, name);
		MUST(s >= 0, "retrieve %s: %d", name, s);
		finish_and_close(s, name);
	}
}

/* luo_stress_files: 500 memfds in one session */
#define STRESS_FILES 500
static void stress_files_1(int dev)
{
	char text[32];
	int s = lu_create_session(dev, "many_files_session");

	MUST(s >= 0, "create: %d", s);
	for (int i = 0; i < STRESS_FILES; i++) {
		snprintf(text, sizeof(text), "file-data-%d", i);
		MUST(lu_preserve_text_memfd(s, i, text) == 0, "preserve %d", i);
	}
}

static void stress_files_2(int dev)
{
	char text[32];
	int s = lu_retrieve_session(dev, "many_files_session");

	MUST(s >= 0, "retrieve: %d", s);
	for (int i = 0; i < STRESS_FILES; i++) {
		snprintf(text, sizeof(text), "file-data-%d", i);
		expect_text(s, i, text, "many_files_session");
	}
	finish_and_close(s, "many_files_session");
}

/*
 * memfd properties (luo_memfd.c-like, plus what the kernel captures at freeze rather than at
 * PRESERVE_FD): 1 MiB of data; an empty memfd; a fallocated memfd written after preserving; a
 * memfd written, moved and closed after preserving; seals; two retrieves sharing one offset.
 */
#define MIB (1u << 20)
static uint8_t big[MIB], got[MIB];

static void memfd_1(int dev)
{
	int s = lu_create_session(dev, "memfd_session"), m, r;

	MUST(s >= 0, "create: %d", s);
	/* token 1: 1 MiB of data, written before preserving */
	fill(big, MIB, 1);
	m = memfd_create("data", 0);
	MUST(m >= 0 && pwrite(m, big, MIB, 0) == MIB, "data memfd");
	MUST(lu_preserve_fd(s, m, 1) == 0, "preserve data");
	close(m);
	/* token 2: empty */
	m = memfd_create("zero", 0);
	MUST(m >= 0 && lu_preserve_fd(s, m, 2) == 0, "preserve zero");
	close(m);
	/* token 3: fallocated, preserved, then written (this moves the offset to 1 MiB) */
	fill(big, MIB, 3);
	m = memfd_create("fallocated", 0);
	MUST(m >= 0 && fallocate(m, 0, 0, MIB) == 0, "fallocate");
	MUST(lu_preserve_fd(s, m, 3) == 0, "preserve fallocated");
	MUST(write(m, big, MIB) == MIB, "write after preserve");
	close(m);
	/* token 4: written inside its size, moved and closed after preserving */
	m = memfd_create("late", 0);
	MUST(m >= 0 && ftruncate(m, 3 * LU_PAGE) == 0, "late memfd");
	MUST(pwrite(m, "early", 5, 0) == 5, "early write");
	MUST(lu_preserve_fd(s, m, 4) == 0, "preserve late");
	MUST(pwrite(m, "written after PRESERVE_FD", 25, LU_PAGE + 7) == 25, "late write");
	MUST(lseek(m, 777, SEEK_SET) == 777, "late lseek");
	{
		/* also through a shared mapping */
		char *p = mmap(NULL, 3 * LU_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
		MUST(p != MAP_FAILED, "mmap");
		memcpy(p + 2 * LU_PAGE, "mapped", 6);
		munmap(p, 3 * LU_PAGE);
	}
	close(m);
	/* token 5: sealed with GROW|SHRINK, position 100 */
	m = memfd_create("sealed", MFD_ALLOW_SEALING);
	MUST(m >= 0 && pwrite(m, "sealed content", 14, 0) == 14, "sealed memfd");
	MUST(fcntl(m, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) == 0, "seal");
	MUST(lseek(m, 100, SEEK_SET) == 100, "lseek 100");
	MUST(lu_preserve_fd(s, m, 5) == 0, "preserve sealed");
	/* token 6: sealable, no seals */
	m = memfd_create("sealable", MFD_ALLOW_SEALING);
	MUST(m >= 0 && pwrite(m, "x", 1, 0) == 1, "sealable memfd");
	r = lu_preserve_fd(s, m, 6);
	MUST(r == 0, "preserve sealable: %d", r);
}

static off_t pos_of(int fd) { return lseek(fd, 0, SEEK_CUR); }
static off_t size_of(int fd) { struct stat st; return fstat(fd, &st) ? -1 : st.st_size; }

static void memfd_2(int dev)
{
	int s = lu_retrieve_session(dev, "memfd_session"), m, m2;
	char buf[64];

	MUST(s >= 0, "retrieve: %d", s);
	/* 1 */
	fill(big, MIB, 1);
	m = lu_retrieve_fd(s, 1);
	MUST(m >= 0, "retrieve data: %d", m);
	MUST(size_of(m) == MIB, "data size %ld", (long)size_of(m));
	MUST(pread(m, got, MIB, 0) == MIB && !memcmp(big, got, MIB), "data differs");
	MUST(pos_of(m) == 0, "data pos %ld", (long)pos_of(m));
	MUST(fcntl(m, F_GETFD) == FD_CLOEXEC, "retrieved fd has FD_CLOEXEC");
	MUST(fcntl(m, F_GET_SEALS) == F_SEAL_SEAL, "data seals 0x%x", fcntl(m, F_GET_SEALS));
	/* a second retrieve is another fd to the same open file: the offset is shared */
	m2 = lu_retrieve_fd(s, 1);
	MUST(m2 >= 0 && m2 != m, "second retrieve: %d", m2);
	MUST(lseek(m, 12, SEEK_SET) == 12 && pos_of(m2) == 12, "offset not shared: %ld", (long)pos_of(m2));
	close(m), close(m2);
	/* 2 */
	m = lu_retrieve_fd(s, 2);
	MUST(m >= 0 && size_of(m) == 0 && lseek(m, 0, SEEK_END) == 0, "zero memfd");
	close(m);
	/* 3 */
	fill(big, MIB, 3);
	m = lu_retrieve_fd(s, 3);
	MUST(m >= 0 && size_of(m) == MIB, "fallocated memfd");
	MUST(pread(m, got, MIB, 0) == MIB && !memcmp(big, got, MIB), "data written after preserve is missing");
	close(m);
	/* 4 */
	m = lu_retrieve_fd(s, 4);
	MUST(m >= 0 && size_of(m) == 3 * LU_PAGE, "late memfd size %ld", (long)size_of(m));
	MUST(pread(m, buf, 5, 0) == 5 && !memcmp(buf, "early", 5), "early data");
	MUST(pread(m, buf, 25, LU_PAGE + 7) == 25 && !memcmp(buf, "written after PRESERVE_FD", 25), "late data");
	MUST(pread(m, buf, 6, 2 * LU_PAGE) == 6 && !memcmp(buf, "mapped", 6), "mapped data");
	/* a restored memfd is an ordinary one: it grows again */
	MUST(ftruncate(m, 4 * LU_PAGE) == 0, "ftruncate a restored memfd");
	close(m);
	/* 5 */
	m = lu_retrieve_fd(s, 5);
	MUST(m >= 0 && size_of(m) == 14 && pos_of(m) == 100, "sealed memfd size/pos");
	MUST(fcntl(m, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK), "sealed seals 0x%x", fcntl(m, F_GET_SEALS));
	MUST(ftruncate(m, 100) < 0 && errno == EPERM, "F_SEAL_GROW holds");
	MUST(pwrite(m, "S", 1, 0) == 1, "write inside");
	close(m);
	/* 6 */
	m = lu_retrieve_fd(s, 6);
	MUST(m >= 0 && fcntl(m, F_GET_SEALS) == 0, "sealable seals 0x%x", fcntl(m, F_GET_SEALS));
	close(m);
	/* unknown token, then finish: unretrieved tokens are gone */
	MUST(lu_retrieve_fd(s, 99) == -ENOENT, "unknown token");
	MUST(lu_preserve_fd(s, 0, 7) == -EINVAL, "PRESERVE_FD into an incoming session");
	finish_and_close(s, "memfd_session");
}

/*
 * Incoming-session rules: RETRIEVE_SESSION twice, a new outgoing session under an incoming
 * session's name, FINISH before and after retrieving, repeated FINISH, closing without FINISH,
 * retrieving a finished-and-closed session.
 */
static void rules_1(int dev)
{
	int a = lu_create_session(dev, "rules-a");
	int b = lu_create_session(dev, "rules-b-empty");
	int c = lu_create_session(dev, "rules-c-finish-early");
	int d = lu_create_session(dev, "rules-d-close-only");
	int x = lu_create_session(dev, "rules-x-closed-in-stage-1");

	MUST(a >= 0 && b >= 0 && c >= 0 && d >= 0 && x >= 0, "create");
	MUST(lu_preserve_text_memfd(a, 0x1A, "hello kexec world") == 0, "preserve a");
	MUST(lu_preserve_text_memfd(c, 0x4D, "finish-early") == 0, "preserve c");
	MUST(lu_preserve_text_memfd(d, 0x5E, "close-only") == 0, "preserve d");
	MUST(lu_preserve_text_memfd(x, 0x6F, "gone") == 0, "preserve x");
	/* closed before the kexec: not handed over */
	close(x);
}

static void rules_2(int dev)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH] = "";
	int r, a, b, c, d, f, f2;

	r = lu_create_session(dev, "rules-a");
	MUST(r >= 0, "an outgoing session may take an incoming session's name: %d", r);
	close(r);
	MUST(lu_retrieve_session(dev, "rules-x-closed-in-stage-1") == -ENOENT, "closed session was handed over");
	a = lu_retrieve_session(dev, "rules-a");
	MUST(a >= 0, "retrieve a: %d", a);
	MUST(fcntl(a, F_GETFD) == FD_CLOEXEC, "retrieved session has FD_CLOEXEC");
	MUST(lu_retrieve_session(dev, "rules-a") == -EINVAL, "retrieve a twice");
	MUST(lu_get_name(a, name, sizeof(name)) == 0 && !strcmp(name, "rules-a"), "get name");
	b = lu_retrieve_session(dev, "rules-b-empty");
	c = lu_retrieve_session(dev, "rules-c-finish-early");
	d = lu_retrieve_session(dev, "rules-d-close-only");
	MUST(b >= 0 && c >= 0 && d >= 0, "retrieve b c d: %d %d %d", b, c, d);
	MUST(lu_preserve_fd(a, 0, 99) == -EINVAL, "PRESERVE_FD into an incoming session");
	MUST(lu_retrieve_fd(a, 0x99) == -ENOENT, "unknown token");
	f = lu_retrieve_text_memfd(a, 0x1A, "hello kexec world");
	MUST(f >= 0, "retrieve 0x1A: %d", f);
	f2 = lu_retrieve_fd(a, 0x1A);
	MUST(f2 >= 0 && f2 != f, "retrieve 0x1A again: %d", f2);
	MUST(lu_finish(c) == 0, "finish c before retrieving its file");
	MUST(lu_retrieve_fd(c, 0x4D) == -ENOENT, "retrieve after finish");
	MUST(lu_finish(a) == 0, "finish a");
	MUST(lu_retrieve_fd(a, 0x1A) == -ENOENT, "retrieve after finish");
	/* the retrieved memfd stays usable after FINISH */
	MUST(pread(f, name, 5, 0) == 5 && !memcmp(name, "hello", 5), "memfd after finish");
	MUST(lu_finish(b) == 0 && lu_finish(b) == 0, "finish b twice");
	MUST(close(a) == 0 && close(b) == 0 && close(c) == 0, "close");
	/* closing without FINISH finishes implicitly */
	MUST(close(d) == 0, "close d");
	MUST(lu_retrieve_session(dev, "rules-a") == -ENOENT, "retrieve a after finish and close");
	MUST(lu_retrieve_session(dev, "rules-d-close-only") == -ENOENT, "retrieve d after close");
	r = lu_create_session(dev, "rules-d-close-only");
	MUST(r >= 0, "create d's name: %d", r);
	close(r);
}

/*
 * The file position is taken at freeze (during the kexec), not at PRESERVE_FD: moved after
 * preserving, by lseek and by write, and the memfd fds closed before the holder takes over.
 */
static void freeze_pos_1(int dev)
{
	int s = lu_create_session(dev, "freeze_pos_session"), m;

	MUST(s >= 0, "create: %d", s);
	m = memfd_create("lseeked", 0);
	MUST(m >= 0 && ftruncate(m, 3 * LU_PAGE) == 0, "memfd");
	MUST(lu_preserve_fd(s, m, 1) == 0, "preserve 1");
	MUST(lseek(m, 777, SEEK_SET) == 777, "lseek");
	close(m);
	m = memfd_create("written", 0);
	MUST(m >= 0 && ftruncate(m, 2 * LU_PAGE) == 0, "memfd");
	MUST(lu_preserve_fd(s, m, 2) == 0, "preserve 2");
	MUST(write(m, "moved by write", 14) == 14, "write");
	close(m);
	m = memfd_create("kept-open", 0);
	MUST(m >= 0 && ftruncate(m, LU_PAGE) == 0, "memfd");
	MUST(lu_preserve_fd(s, m, 3) == 0, "preserve 3");
	MUST(lseek(m, 99, SEEK_SET) == 99, "lseek");
}

static void freeze_pos_2(int dev)
{
	int s = lu_retrieve_session(dev, "freeze_pos_session"), m;

	MUST(s >= 0, "retrieve: %d", s);
	m = lu_retrieve_fd(s, 1);
	MUST(m >= 0 && pos_of(m) == 777, "lseek after PRESERVE_FD then close: pos %ld, want 777", (long)pos_of(m));
	close(m);
	m = lu_retrieve_fd(s, 2);
	MUST(m >= 0 && pos_of(m) == 14, "write after PRESERVE_FD then close: pos %ld, want 14", (long)pos_of(m));
	close(m);
	m = lu_retrieve_fd(s, 3);
	MUST(m >= 0 && pos_of(m) == 99, "lseek after PRESERVE_FD, fd kept open: pos %ld, want 99", (long)pos_of(m));
	close(m);
	finish_and_close(s, "freeze_pos_session");
}

/*
 * Where a real 7.3.4 answered differently from luo under random testing (issue 10): the holes of a
 * preserved memfd are allocated (st_blocks), a PRESERVE_FD whose reply faults still preserves and
 * hands over, FINISH with reserved != 0 is EINVAL and finishes nothing, and a retrieved file is
 * LUO's until FINISH (PRESERVE_FD of it: EBUSY).
 */
static void errno_1(int dev)
{
	int s = lu_create_session(dev, "errno_session"), a = memfd_create("sparse", 0), b = memfd_create("faulted", MFD_ALLOW_SEALING);

	MUST(s >= 0 && a >= 0 && b >= 0, "setup");
	MUST(ftruncate(a, 10 * LU_PAGE + 100) == 0 && pwrite(a, "three", 5, 3 * LU_PAGE) == 5, "sparse memfd");
	MUST(lu_preserve_fd(s, a, 1) == 0, "preserve sparse");
	MUST(ftruncate(b, LU_PAGE) == 0 && pwrite(b, "before", 6, 0) == 6, "memfd b");
	MUST(lu_preserve_fd_readonly_arg(s, b, 2) == -EFAULT, "PRESERVE_FD with a read-only struct: EFAULT");
	MUST(pwrite(b, "grow", 4, LU_PAGE) < 0 && errno == EPERM, "b is frozen after the faulted reply");
	MUST(pwrite(b, "after!", 6, 0) == 6, "a write inside b");
	close(a);
	close(b);
}

static void errno_2(int dev)
{
	struct liveupdate_session_finish f = { .size = sizeof(f), .reserved = 1 };
	int s = lu_retrieve_session(dev, "errno_session"), out, a, b;
	struct stat st;
	char buf[8] = "";

	MUST(s >= 0, "retrieve: %d", s);
	MUST(ioctl(s, LIVEUPDATE_SESSION_FINISH, &f) < 0 && errno == EINVAL, "FINISH with reserved 1: EINVAL");
	a = lu_retrieve_fd(s, 1);
	MUST(a >= 0, "the failed FINISH finished nothing: retrieve 1: %d", a);
	MUST(fstat(a, &st) == 0 && st.st_size == 10 * LU_PAGE + 100, "size %ld", (long)st.st_size);
	MUST(st.st_blocks == 11 * 8, "a retrieved memfd has every page: %ld blocks, want 88", (long)st.st_blocks);
	MUST(pread(a, buf, 5, 3 * LU_PAGE) == 5 && !memcmp(buf, "three", 5), "sparse contents");
	b = lu_retrieve_fd(s, 2);
	MUST(b >= 0, "the memfd preserved with a faulted reply was handed over: %d", b);
	MUST(pread(b, buf, 6, 0) == 6 && !memcmp(buf, "after!", 6), "b holds the write made after PRESERVE_FD");
	MUST(fstat(b, &st) == 0 && st.st_size == LU_PAGE, "b's size %ld", (long)st.st_size);
	out = lu_create_session(dev, "errno_out");
	MUST(out >= 0, "create errno_out: %d", out);
	MUST(lu_preserve_fd(out, a, 1) == -EBUSY, "PRESERVE_FD of a retrieved file before FINISH: EBUSY");
	MUST(lu_finish(s) == 0, "FINISH");
	MUST(lu_preserve_fd(out, a, 1) == 0, "after FINISH the retrieved file is ours to preserve");
	MUST(fstat(a, &st) == 0 && st.st_size == 10 * LU_PAGE + 100, "size after re-preserve %ld", (long)st.st_size);
	close(out);
	close(a);
	close(b);
	close(s);
}

static const struct scenario scenarios[] = {
	{ "simple", "kexec_simple_state", 999, "--- SIMPLE KEXEC TEST PASSED ---", simple_1, simple_2 },
	{ "multi", "kexec_multi_state", 998, "--- MULTI-SESSION KEXEC TEST PASSED ---", multi_1, multi_2 },
	{ "stress_sessions", "kexec_many_state", 999, "--- STRESS SESSIONS KEXEC TEST PASSED ---", stress_sessions_1, stress_sessions_2 },
	{ "stress_files", "kexec_many_files_state", 9999, "--- STRESS FILES KEXEC TEST PASSED ---", stress_files_1, stress_files_2 },
	{ "memfd", "luo-state", 1, "--- MEMFD KEXEC TEST PASSED ---", memfd_1, memfd_2 },
	{ "rules", "kexec_rules_state", 77, "--- SESSION RULES KEXEC TEST PASSED ---", rules_1, rules_2 },
	{ "freeze_pos", "kexec_freeze_pos_state", 78, "--- FREEZE POSITION KEXEC TEST PASSED ---", freeze_pos_1, freeze_pos_2 },
	{ "errno", "kexec_errno_state", 79, "--- ERRNO KEXEC TEST PASSED ---", errno_1, errno_2 },
};

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "stage", required_argument, NULL, 's' }, { 0 } };
	const struct scenario *sc = NULL;
	int want = 1, opt, dev, state, stage;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (opt != 's')
			goto usage;
		want = atoi(optarg);
		if (want != 1 && want != 2)
			goto usage;
	}
	if (optind != argc - 1)
		goto usage;
	for (unsigned i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (!strcmp(argv[optind], scenarios[i].name))
			sc = &scenarios[i];
	if (!sc)
		goto usage;

	dev = open(LU_DEV, O_RDWR);
	if (dev < 0) {
		printf("SKIP: open %s: %s\n", LU_DEV, strerror(errno));
		return LU_SKIP_EXIT;
	}
	state = lu_retrieve_session(dev, sc->state);
	if (state == -ENOENT)
		stage = 1;
	else if (state >= 0)
		stage = 2;
	else
		die("retrieve state session %s: %d", sc->state, state);
	MUST(stage == want, "asked for stage %d, but this is stage %d", want, stage);
	printf("STAGE %d %s\n", stage, sc->name);

	if (stage == 1) {
		create_state(dev, sc->state, sc->state_token, 2);
		sc->stage1(dev);
		close(dev);
		hold_and_exit();
	}
	MUST(read_state(state, sc->state_token) == 2, "state session does not say stage 2");
	sc->stage2(dev);
	finish_and_close(state, sc->state);
	close(dev);
	printf("%s\n", sc->banner);
	return 0;
usage:
	fprintf(stderr, "usage: lu_kexec simple|multi|stress_sessions|stress_files|memfd|rules|freeze_pos|errno [-s|--stage 1|2]\n");
	return 2;
}
