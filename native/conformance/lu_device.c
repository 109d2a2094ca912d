// SPDX-License-Identifier: MIT
/*
 * The single-stage scenarios of the kernel's liveupdate selftest (kernel-abi.md §7.3), written
 * for luo: the device, sessions, preserving memfds, name edge cases. Each case runs in its own
 * child with /dev/liveupdate opened by the fixture (lu_dev).
 */
#include "lutest.h"

/* A memfd holding text (written with write(2)); returns the fd. */
static int text_memfd(const char *name, const char *text)
{
	int fd = memfd_create(name, 0);

	REQUIRE(fd >= 0, "memfd_create(%s)", name);
	if (text)
		REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
	return fd;
}

/* Read the whole memfd from offset 0 and compare it with text ("" for an empty file). */
static void expect_content(int fd, const char *text)
{
	char buf[256];
	ssize_t n;

	CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
	n = read(fd, buf, sizeof(buf));
	CHECK(n == (ssize_t)strlen(text), "read %zd bytes, expected %zu", n, strlen(text));
	if (n > 0)
		CHECK(!memcmp(buf, text, n), "contents differ");
}

static void basic_open_close(void)
{
	CHECK(lu_dev >= 0, "open");
	CHECK(close(lu_dev) == 0, "close");
	lu_dev = -1;
}

static void exclusive_open(void)
{
	int second = open(LU_DEV, O_RDWR);

	CHECK(second < 0 && errno == EBUSY, "second open returned %d", second);
	if (second >= 0)
		close(second);
}

static void create_duplicate_session(void)
{
	int s = lu_create_session(lu_dev, "duplicate-session-test");

	CHECK(s >= 0, "first create: %d", s);
	CHECK_ERR(lu_create_session(lu_dev, "duplicate-session-test"), EEXIST);
}

static void create_distinct_sessions(void)
{
	int a = lu_create_session(lu_dev, "distinct-session-1");
	int b = lu_create_session(lu_dev, "distinct-session-2");

	CHECK(a >= 0, "create 1: %d", a);
	CHECK(b >= 0, "create 2: %d", b);
	CHECK(a != b, "two sessions got the same fd");
	CHECK(close(a) == 0, "close 1");
	CHECK(close(b) == 0, "close 2");
}

static void preserve_memfd(void)
{
	const char *text = "hello liveupdate";
	int s = lu_create_session(lu_dev, "preserve-memfd-test");
	int m = text_memfd("test-memfd", text);

	REQUIRE(s >= 0, "create: %d", s);
	CHECK_ERR(lu_preserve_fd(s, m, 0x1234), 0);
	/* closing the outgoing session unpreserves; the memfd stays the user's, intact */
	CHECK(close(s) == 0, "close session");
	expect_content(m, text);
	close(m);
}

static void preserve_multiple_memfds(void)
{
	const char *t1 = "data for memfd one", *t2 = "data for memfd two";
	int s = lu_create_session(lu_dev, "preserve-multi-memfd-test");
	int m1 = text_memfd("memfd-one", t1), m2 = text_memfd("memfd-two", t2);

	REQUIRE(s >= 0, "create: %d", s);
	CHECK_ERR(lu_preserve_fd(s, m1, 0xAAAA), 0);
	CHECK_ERR(lu_preserve_fd(s, m2, 0xBBBB), 0);
	expect_content(m1, t1);
	expect_content(m2, t2);
	close(m1);
	close(m2);
	close(s);
}

static void preserve_complex_scenario(void)
{
	int s1 = lu_create_session(lu_dev, "complex-session-1");
	int s2 = lu_create_session(lu_dev, "complex-session-2");
	int d1 = text_memfd("data1", "data for session 1"), e1 = text_memfd("empty1", NULL);
	int d2 = text_memfd("data2", "data for session 2"), e2 = text_memfd("empty2", NULL);

	REQUIRE(s1 >= 0 && s2 >= 0, "create: %d %d", s1, s2);
	CHECK_ERR(lu_preserve_fd(s1, d1, 0x1111), 0);
	CHECK_ERR(lu_preserve_fd(s1, e1, 0x2222), 0);
	CHECK_ERR(lu_preserve_fd(s2, d2, 0x3333), 0);
	CHECK_ERR(lu_preserve_fd(s2, e2, 0x4444), 0);
	expect_content(d1, "data for session 1");
	expect_content(d2, "data for session 2");
	expect_content(e1, "");
	expect_content(e2, "");
	close(d1), close(e1), close(d2), close(e2);
	close(s1), close(s2);
}

static void preserve_unsupported_fd(void)
{
	int s = lu_create_session(lu_dev, "unsupported-fd-test");
	int null = open("/dev/null", O_RDWR);

	REQUIRE(s >= 0 && null >= 0, "create %d, open /dev/null %d", s, null);
	CHECK_ERR(lu_preserve_fd(s, null, 0xDEAD), ENOENT);
	close(null);
	close(s);
}

static void prevent_double_preservation(void)
{
	int s1 = lu_create_session(lu_dev, "double-preserve-session-1");
	int s2 = lu_create_session(lu_dev, "double-preserve-session-2");
	int m = text_memfd("double", "x");

	REQUIRE(s1 >= 0 && s2 >= 0, "create: %d %d", s1, s2);
	CHECK_ERR(lu_preserve_fd(s1, m, 0x1111), 0);
	CHECK_ERR(lu_preserve_fd(s2, m, 0x2222), EBUSY);
	/* a different token in the same session is still the same file */
	CHECK_ERR(lu_preserve_fd(s1, m, 0x3333), EBUSY);
	close(m);
	close(s1);
	close(s2);
}

static void create_session_no_null_termination(void)
{
	struct liveupdate_ioctl_create_session a;
	int r;

	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	memset(a.name, 'X', sizeof(a.name));
	r = ioctl(lu_dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &a);
	CHECK(r < 0 && errno == EINVAL, "ioctl returned %d", r);
}

static void create_session_empty_name(void)
{
	CHECK_ERR(lu_create_session(lu_dev, ""), EINVAL);
}

static void get_session_name(void)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH] = "";
	int s = lu_create_session(lu_dev, "get-name-test-session");

	REQUIRE(s >= 0, "create: %d", s);
	CHECK_ERR(lu_get_name(s, name, sizeof(name)), 0);
	CHECK(!strcmp(name, "get-name-test-session"), "name is \"%s\"", name);
	close(s);
}

static void get_session_name_max_length(void)
{
	char want[LIVEUPDATE_SESSION_NAME_LENGTH], got[LIVEUPDATE_SESSION_NAME_LENGTH] = "";
	int s;

	memset(want, 'A', sizeof(want) - 1);
	want[sizeof(want) - 1] = 0;
	s = lu_create_session(lu_dev, want);
	REQUIRE(s >= 0, "create 63 x 'A': %d", s);
	CHECK_ERR(lu_get_name(s, got, sizeof(got)), 0);
	CHECK(strlen(got) == 63 && !strcmp(got, want), "name is \"%s\"", got);
	close(s);
}

#define MANY_SESSIONS 2000
#define MANY_FILES 500

static void preserve_many_sessions(void)
{
	static int fds[MANY_SESSIONS];
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int i, r = lu_raise_nofile(MANY_SESSIONS);

	if (r == -EPERM)
		SKIP("cannot raise RLIMIT_NOFILE to %d", MANY_SESSIONS + 32);
	REQUIRE(r == 0, "raise nofile: %d", r);
	for (i = 0; i < MANY_SESSIONS; i++) {
		snprintf(name, sizeof(name), "many-session-%d", i);
		fds[i] = lu_create_session(lu_dev, name);
		REQUIRE(fds[i] >= 0, "create %s: %d", name, fds[i]);
	}
	for (i = 0; i < MANY_SESSIONS; i++)
		CHECK(close(fds[i]) == 0, "close %d", i);
}

static void preserve_many_files(void)
{
	static int fds[MANY_FILES];
	int i, s, r = lu_raise_nofile(MANY_FILES);

	if (r == -EPERM)
		SKIP("cannot raise RLIMIT_NOFILE to %d", MANY_FILES + 32);
	REQUIRE(r == 0, "raise nofile: %d", r);
	s = lu_create_session(lu_dev, "many-files-test");
	REQUIRE(s >= 0, "create: %d", s);
	for (i = 0; i < MANY_FILES; i++) {
		fds[i] = memfd_create("many", 0);
		REQUIRE(fds[i] >= 0, "memfd %d", i);
		r = lu_preserve_fd(s, fds[i], i);
		REQUIRE(r == 0, "preserve %d: %d", i, r);
	}
	for (i = 0; i < MANY_FILES; i++)
		CHECK(close(fds[i]) == 0, "close memfd %d", i);
	CHECK(close(s) == 0, "close session");
}

static const struct lu_case cases[] = {
	LU_CASE(basic_open_close),
	LU_CASE(exclusive_open),
	LU_CASE(create_duplicate_session),
	LU_CASE(create_distinct_sessions),
	LU_CASE(preserve_memfd),
	LU_CASE(preserve_multiple_memfds),
	LU_CASE(preserve_complex_scenario),
	LU_CASE(preserve_unsupported_fd),
	LU_CASE(prevent_double_preservation),
	LU_CASE(create_session_no_null_termination),
	LU_CASE(create_session_empty_name),
	LU_CASE(get_session_name),
	LU_CASE(get_session_name_max_length),
	LU_CASE_T(preserve_many_sessions, 120),
	LU_CASE_T(preserve_many_files, 120),
};

int main(int argc, char **argv)
{
	return lu_run_all(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
}
