// SPDX-License-Identifier: MIT
/*
 * lu_script: runs one stage of a generated uAPI program (src/conform/program.ts writes it) against
 * /dev/liveupdate and prints a transcript, one line per operation. The same program run by luo's
 * in-process interpreter (src/conform/run-model.ts) must print the same lines.
 *
 *     lu_script FILE [--hold]
 *
 * FILE holds one operation per line: a name and decimal arguments. Operations name fd slots
 * (0..LU_SLOTS-1; an empty slot is fd -1, which the kernel answers with EBADF). With --hold, after
 * the last operation a forked child keeps every fd open (as the stage-1 holder of the kexec tests)
 * and the program prints "HOLDER <pid>" and exits; the holder lives until it is killed.
 *
 * Transcript line: "<n> <op> r=<ret> e=<errno name|0>[ extra]". Nothing in it depends on addresses
 * or times; fd numbers are printed as returned (the kernel's lowest-free rule makes them
 * deterministic).
 */
#include "lutest.h"
#include <sys/syscall.h>

#define LU_SLOTS 12
#define MAX_OPS 100000
#define ARG_BUF 160

static int slot[LU_SLOTS];

static int fd_of(long long s)
{
	return s >= 0 && s < LU_SLOTS ? slot[s] : -1;
}

static void set_slot(long long s, int fd)
{
	if (s >= 0 && s < LU_SLOTS)
		slot[s] = fd;
}

static const char *ename(int e)
{
	return e ? (strerrorname_np(e) ?: "E?") : "0";
}

/* Session name by id: the same table as src/conform/program.ts NAMES. */
static void name_bytes(long long id, uint8_t out[64])
{
	memset(out, 0, 64);
	switch (id) {
	case 6:
		break; /* empty */
	case 7:
		memset(out, 'a', 63);
		break;
	case 8:
		memset(out, 'b', 64); /* no terminator */
		break;
	default:
		snprintf((char *)out, 64, "s%lld", id);
		break;
	}
}

/* u64 token by id: the same table as program.ts TOKENS. */
static uint64_t token_of(long long id)
{
	static const uint64_t t[] = { 0, 1, 2, 3, 0x1a, UINT64_MAX };
	return id >= 0 && id < (long long)(sizeof(t) / sizeof(t[0])) ? t[id] : 7;
}

/* Struct size variants: the same table as program.ts sizeOf(). `ksize` is the struct's size. */
static uint32_t size_of(long long v, uint32_t ksize, uint8_t *buf)
{
	switch (v) {
	case 1:
		return ksize - 1;
	case 2:
		return ksize + 8; /* zero tail */
	case 3:
		buf[ksize + 3] = 1; /* nonzero tail */
		return ksize + 8;
	case 4:
		return 4;
	default:
		return ksize;
	}
}

static uint32_t fnv(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void line(long n, const char *op, long long r, int e, const char *extra)
{
	printf("%ld %s r=%lld e=%s%s%s\n", n, op, r, r < 0 ? ename(e) : "0", extra[0] ? " " : "", extra);
}

static uint8_t data[1 << 16];

/* fds the bulk operations made: held until the program exits (the holder keeps them) */
#define BULK_MAX 8192
static int bulk_fd[BULK_MAX];
static int nbulk;

static void bulk_keep(int fd)
{
	if (nbulk < BULK_MAX)
		bulk_fd[nbulk++] = fd;
}

/* "<n> <op> r=<how many succeeded> e=<the first failure's errno, or 0>" */
static void bulk_line(long n, const char *op, long ok, int first_err)
{
	printf("%ld %s r=%ld e=%s\n", n, op, ok, ename(first_err));
}

static void bulk_name(uint8_t out[64], long long base, long i)
{
	memset(out, 0, 64);
	snprintf((char *)out, 64, "b%lld-%ld", base, i);
}

static void run(long n, char *op, long long *a, int na)
{
	uint8_t buf[ARG_BUF];
	char extra[160] = "";
	long long r = 0;
	int e = 0;

	memset(buf, 0, sizeof(buf));
	errno = 0;
#define SET_R(expr) do { r = (expr); e = errno; } while (0)
	if (!strcmp(op, "open") && na == 1) {
		SET_R(open(LU_DEV, O_RDWR));
		set_slot(a[0], (int)r);
	} else if ((!strcmp(op, "create") || !strcmp(op, "rsession")) && na == 4) {
		struct liveupdate_ioctl_create_session *c = (void *)buf;
		c->size = size_of(a[3], sizeof(*c), buf);
		name_bytes(a[2], c->name);
		c->fd = -1;
		SET_R(ioctl(fd_of(a[1]), op[0] == 'c' ? LIVEUPDATE_IOCTL_CREATE_SESSION : LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf));
		if (r == 0) {
			r = c->fd;
			set_slot(a[0], c->fd);
		} else {
			set_slot(a[0], -1);
		}
	} else if (!strcmp(op, "memfd") && na == 2) {
		SET_R(memfd_create("m", (unsigned)a[1]));
		set_slot(a[0], (int)r);
	} else if (!strcmp(op, "preserve") && na == 4) {
		struct liveupdate_session_preserve_fd *p = (void *)buf;
		p->size = size_of(a[3], sizeof(*p), buf);
		p->fd = fd_of(a[1]);
		p->token = token_of(a[2]);
		SET_R(ioctl(fd_of(a[0]), LIVEUPDATE_SESSION_PRESERVE_FD, buf));
	} else if (!strcmp(op, "rfd") && na == 3) {
		struct liveupdate_session_retrieve_fd *p = (void *)buf;
		p->size = sizeof(*p);
		p->fd = -1;
		p->token = token_of(a[2]);
		SET_R(ioctl(fd_of(a[1]), LIVEUPDATE_SESSION_RETRIEVE_FD, buf));
		if (r == 0)
			r = p->fd;
		set_slot(a[0], r >= 0 ? (int)r : -1);
	} else if (!strcmp(op, "finish") && na == 2) {
		struct liveupdate_session_finish *f = (void *)buf;
		f->size = sizeof(*f);
		f->reserved = (uint32_t)a[1];
		SET_R(ioctl(fd_of(a[0]), LIVEUPDATE_SESSION_FINISH, buf));
	} else if (!strcmp(op, "getname") && na == 2) {
		struct liveupdate_session_get_name *g = (void *)buf;
		g->size = sizeof(*g);
		g->reserved = (uint32_t)a[1];
		SET_R(ioctl(fd_of(a[0]), LIVEUPDATE_SESSION_GET_NAME, buf));
		if (r == 0)
			snprintf(extra, sizeof(extra), "name=%.64s", (const char *)g->name);
	} else if (!strcmp(op, "close") && na == 1) {
		SET_R(close(fd_of(a[0])));
		set_slot(a[0], -1);
	} else if (!strcmp(op, "dup") && na == 2) {
		SET_R(dup(fd_of(a[1])));
		set_slot(a[0], (int)r);
	} else if (!strcmp(op, "pwrite") && na == 4) {
		size_t len = (size_t)a[2] < sizeof(data) ? (size_t)a[2] : sizeof(data);
		memset(data, (int)a[3], len);
		SET_R(pwrite(fd_of(a[0]), data, len, (off_t)a[1]));
	} else if (!strcmp(op, "write") && na == 3) {
		size_t len = (size_t)a[1] < sizeof(data) ? (size_t)a[1] : sizeof(data);
		memset(data, (int)a[2], len);
		SET_R(write(fd_of(a[0]), data, len));
	} else if (!strcmp(op, "ftruncate") && na == 2) {
		SET_R(ftruncate(fd_of(a[0]), (off_t)a[1]));
	} else if (!strcmp(op, "fallocate") && na == 4) {
		SET_R(fallocate(fd_of(a[0]), (int)a[1], (off_t)a[2], (off_t)a[3]));
	} else if (!strcmp(op, "seal") && na == 2) {
		SET_R(fcntl(fd_of(a[0]), F_ADD_SEALS, (int)a[1]));
	} else if (!strcmp(op, "getseals") && na == 1) {
		SET_R(fcntl(fd_of(a[0]), F_GET_SEALS));
	} else if (!strcmp(op, "fstat") && na == 1) {
		struct stat st;
		SET_R(fstat(fd_of(a[0]), &st));
		if (r == 0)
			snprintf(extra, sizeof(extra), "size=%lld blocks=%lld", (long long)st.st_size, (long long)st.st_blocks);
	} else if (!strcmp(op, "lseek") && na == 3) {
		SET_R(lseek(fd_of(a[0]), (off_t)a[1], (int)a[2]));
	} else if (!strcmp(op, "read") && na == 3) {
		size_t len = (size_t)a[2] < sizeof(data) ? (size_t)a[2] : sizeof(data);
		SET_R(pread(fd_of(a[0]), data, len, (off_t)a[1]));
		if (r >= 0)
			snprintf(extra, sizeof(extra), "fnv=%08x", fnv(data, (size_t)r));
	} else if (!strcmp(op, "other") && na == 2) {
		/* a file no handler takes: a pipe's read end (kind 0) or /dev/null (kind 1) */
		int pfd[2];
		if (a[1] == 0) {
			SET_R(pipe(pfd));
			if (r == 0) {
				close(pfd[1]);
				r = pfd[0];
			}
		} else {
			SET_R(open("/dev/null", O_RDWR));
		}
		set_slot(a[0], r >= 0 ? (int)r : -1);
	} else if ((!strcmp(op, "bulk_create") || !strcmp(op, "bulk_rsession")) && na == 3) {
		struct liveupdate_ioctl_create_session *c = (void *)buf;
		long ok = 0;
		int first = 0;
		for (long i = 0; i < a[1]; i++) {
			memset(buf, 0, sizeof(buf));
			c->size = sizeof(*c);
			c->fd = -1;
			bulk_name(c->name, a[2], i);
			if (ioctl(fd_of(a[0]), op[5] == 'c' ? LIVEUPDATE_IOCTL_CREATE_SESSION : LIVEUPDATE_IOCTL_RETRIEVE_SESSION, buf) == 0) {
				ok++;
				bulk_keep(c->fd);
			} else if (!first) {
				first = errno;
			}
		}
		bulk_line(n, op, ok, first);
		return;
	} else if (!strcmp(op, "bulk_preserve") && na == 3) {
		/* count small memfds preserved under tokens base, base+1, ...; the program's fds closed (LUO keeps the files) */
		struct liveupdate_session_preserve_fd *pf = (void *)buf;
		long ok = 0;
		int first = 0;
		for (long i = 0; i < a[1]; i++) {
			int m = memfd_create("bulk", 0);
			if (m < 0) {
				if (!first)
					first = errno;
				continue;
			}
			snprintf((char *)data, 32, "bulk-%lld", a[2] + i);
			if (pwrite(m, data, strlen((char *)data), 0) < 0 && !first)
				first = errno;
			memset(buf, 0, sizeof(buf));
			pf->size = sizeof(*pf);
			pf->fd = m;
			pf->token = (uint64_t)(a[2] + i);
			if (ioctl(fd_of(a[0]), LIVEUPDATE_SESSION_PRESERVE_FD, buf) == 0)
				ok++;
			else if (!first)
				first = errno;
			close(m);
		}
		bulk_line(n, op, ok, first);
		return;
	} else if (!strcmp(op, "bulk_rfd") && na == 3) {
		/* retrieve tokens base.. base+count-1, read up to 16 bytes of each, close it; fnv of all the bytes */
		struct liveupdate_session_retrieve_fd *rf = (void *)buf;
		uint8_t all[BULK_MAX > 4096 ? 4096 * 16 : 1];
		size_t got = 0;
		long ok = 0;
		int first = 0;
		for (long i = 0; i < a[1] && i < 4096; i++) {
			memset(buf, 0, sizeof(buf));
			rf->size = sizeof(*rf);
			rf->fd = -1;
			rf->token = (uint64_t)(a[2] + i);
			if (ioctl(fd_of(a[0]), LIVEUPDATE_SESSION_RETRIEVE_FD, buf) != 0) {
				if (!first)
					first = errno;
				continue;
			}
			ok++;
			ssize_t k = pread(rf->fd, all + got, 16, 0);
			if (k > 0)
				got += (size_t)k;
			close(rf->fd);
		}
		printf("%ld %s r=%ld e=%s fnv=%08x\n", n, op, ok, ename(first), fnv(all, got));
		return;
	} else if (!strcmp(op, "ioctl") && na == 3) {
		uint32_t v = (uint32_t)a[2];
		memcpy(buf, &v, 4);
		SET_R(ioctl(fd_of(a[0]), (unsigned long)(uint32_t)a[1], buf));
		snprintf(extra, sizeof(extra), "out=%02x%02x%02x%02x%02x%02x%02x%02x", buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]);
	} else {
		printf("%ld %s: unknown operation or arity (%d arguments)\n", n, op, na);
		exit(2);
	}
	line(n, op, r, e, extra);
}

int main(int argc, char **argv)
{
	FILE *f;
	char *text = NULL, *p, *save = NULL;
	size_t cap = 0, len = 0;
	long n = 0;
	int hold = argc == 3 && !strcmp(argv[2], "--hold");

	if (argc < 2 || argc > 3 || (argc == 3 && !hold)) {
		fprintf(stderr, "usage: lu_script FILE [--hold]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* whatever the parent left open above stderr goes: fd numbers then depend on the program only */
	syscall(SYS_close_range, 3U, ~0U, 0U);
	f = fopen(argv[1], "r");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			text = realloc(text, cap);
			if (!text)
				return 2;
		}
		size_t got = fread(text + len, 1, 4096, f);
		if (!got)
			break;
		len += got;
	}
	fclose(f); /* before the first operation: the program's fds start at 3 */
	text[len] = 0;
	for (int i = 0; i < LU_SLOTS; i++)
		slot[i] = -1;
	for (p = strtok_r(text, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		char *op = strtok(p, " ");
		long long a[8];
		int na = 0;
		char *t;

		if (!op || op[0] == '#')
			continue;
		while ((t = strtok(NULL, " ")) && na < 8)
			a[na++] = strtoll(t, NULL, 10);
		run(++n, op, a, na);
		if (n >= MAX_OPS)
			break;
	}
	if (hold) {
		pid_t pid = fork();
		if (pid == 0) {
			for (;;)
				pause();
		}
		printf("HOLDER %d\n", (int)pid);
	}
	return 0;
}
