// SPDX-License-Identifier: MIT
/*
 * A C program's own fd type through a live update: the file handler plugin
 * examples/handlers/counter.mjs (an eventfd-like counter) built into `luo serve --handler`, reached
 * through the LD_PRELOAD shim as the device node /dev/luo/luo-example-counter-v1
 * (docs/handlers.md, "From a C program"). luo-only: a real kernel has no such node.
 *
 *     lu_plugin [-s|--stage N]
 *
 * Stage 1: checks the node's errors, opens two counters, preserves them in session "plugin-vm",
 * adds to one after PRESERVE_FD (its handler's freeze hands the final count over), closes the
 * other (LUO keeps it), forks a holder for the session fd and exits 0 ("STAGE1 HOLDER <pid>").
 * Stage 2 (after the kexec, a new process): retrieves both and reads their counts, finishes, and
 * prints "--- PLUGIN KEXEC TEST PASSED ---". A failure prints "FAIL: ..." and exits 1.
 */
#include "lutest.h"
#include <getopt.h>
#include <sys/uio.h>

#define COUNTER "/dev/luo/luo-example-counter-v1"
#define SESSION "plugin-vm"
#define T_MAIN 0x77
#define T_CLOSED 0x79

/* a call that must fail with errno err */
#define MUST_ERR(call, err, what) do { errno = 0; MUST((call) < 0 && errno == (err), "%s: expected %s", what, strerrorname_np(err)); } while (0)

static int add(int fd, uint64_t v)
{
	return write(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : -1;
}

static uint64_t take(int fd)
{
	uint64_t v = 0;

	MUST(read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v), "read the count of fd %d", fd);
	return v;
}

static void stage1(int dev)
{
	uint64_t v = 9, small = 0;
	struct iovec iov = { &v, sizeof(v) };
	char name[64];
	void *volatile bad = (void *)8; /* an unmapped address the compiler cannot see through */
	int c, c2, s, r;

	/* the node exists only for a plugin the daemon's kernel has */
	MUST_ERR(open("/dev/luo/no-such-handler", O_RDWR), ENOENT, "open of a plugin that is not there");
	MUST_ERR(open(COUNTER, O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST, "O_CREAT|O_EXCL of the node");
	c = open(COUNTER, O_RDWR | O_CLOEXEC);
	MUST(c >= 0, "open %s", COUNTER);
	MUST(add(c, 5) == 0, "write 5");
	/* the plugin's own rules, and what no plugin file has */
	MUST_ERR(write(c, &small, 4), EINVAL, "a 4-byte write");
	MUST_ERR(read(c, &small, 4), EINVAL, "a 4-byte read");
	MUST_ERR(pread(c, &v, 8, 0), ESPIPE, "pread");
	MUST_ERR(ioctl(c, LIVEUPDATE_SESSION_GET_NAME, name), ENOTTY, "a LUO ioctl on a plugin file");
	MUST_ERR(write(c, bad, 8), EFAULT, "a write from a bad pointer");

	s = lu_create_session(dev, SESSION);
	MUST(s >= 0, "create session: %d", s);
	r = lu_preserve_fd(s, c, T_MAIN);
	MUST(r == 0, "preserve the counter: %d", r);
	/* the device and a session are files no handler takes */
	r = lu_preserve_fd(s, dev, 0x78);
	MUST(r == -ENOENT, "preserve /dev/liveupdate: %d, expected ENOENT", r);
	/* changed after PRESERVE_FD: freeze hands over 5 + 2 */
	MUST(add(c, 2) == 0, "write 2 after preserve");

	c2 = open(COUNTER, O_RDWR);
	MUST(c2 >= 0, "open a second counter");
	MUST(writev(c2, &iov, 1) == 8, "writev 9");
	r = lu_preserve_fd(s, c2, T_CLOSED);
	MUST(r == 0, "preserve the second counter: %d", r);
	/* LUO holds its own reference: closing the program's fd loses nothing */
	MUST(close(c2) == 0, "close the second counter");
	close(dev);
	printf("STAGE1 preserved two counters (5+2 and 9)\n");
	hold_and_exit();
}

static void stage2(int dev, int s)
{
	uint64_t v = 0;
	struct iovec iov = { &v, sizeof(v) };
	int c, c2, r;

	c = lu_retrieve_fd(s, T_MAIN);
	MUST(c >= 0, "retrieve the counter: %d", c);
	MUST(fcntl(c, F_GETFD) == FD_CLOEXEC, "a retrieved fd is O_CLOEXEC");
	v = take(c);
	MUST(v == 7, "the counter holds %llu, expected 7 (5, then 2 written after PRESERVE_FD)", (unsigned long long)v);
	MUST_ERR(read(c, &v, 8), EAGAIN, "a read at count 0");
	MUST(add(c, 1) == 0 && take(c) == 1, "the retrieved counter counts");

	c2 = lu_retrieve_fd(s, T_CLOSED);
	MUST(c2 >= 0, "retrieve the second counter: %d", c2);
	v = 0;
	MUST(readv(c2, &iov, 1) == 8 && v == 9, "the second counter holds %llu, expected 9", (unsigned long long)v);
	r = lu_finish(s);
	MUST(r == 0, "finish: %d", r);
	/* after FINISH the files are the program's own */
	MUST(add(c, 3) == 0 && take(c) == 3, "the counter after FINISH");
	close(c);
	close(c2);
	close(s);
	close(dev);
	printf("--- PLUGIN KEXEC TEST PASSED ---\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "stage", required_argument, NULL, 's' }, { 0 } };
	int want = 1, opt, dev, s;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (opt != 's' || (atoi(optarg) != 1 && atoi(optarg) != 2)) {
			fprintf(stderr, "usage: lu_plugin [-s|--stage 1|2]\n");
			return 2;
		}
		want = atoi(optarg);
	}
	dev = open(LU_DEV, O_RDWR);
	if (dev < 0) {
		printf("SKIP: open %s: %s\n", LU_DEV, strerror(errno));
		return LU_SKIP_EXIT;
	}
	s = lu_retrieve_session(dev, SESSION);
	MUST(s >= 0 || s == -ENOENT, "retrieve session %s: %d", SESSION, s);
	MUST((s >= 0 ? 2 : 1) == want, "asked for stage %d, but this is stage %d", want, s >= 0 ? 2 : 1);
	printf("STAGE %d plugin\n", want);
	if (want == 1)
		stage1(dev);
	else
		stage2(dev, s);
	return 0;
}
