/*
 * libfdt baseline for bench/fdt.ts: the same FDT work luo's benchmark does, timed here with
 * CLOCK_MONOTONIC and printed as "<name> <ns per op> <checksum>" lines. The checksums let the
 * TypeScript side prove it did the same work (the built blob's FNV-1a hash, sums over the walk).
 *
 * Each figure is the best of BATCHES batches of REPS runs (the machine may be busy).
 *
 * usage: fdt_bench N BUILD_REPS WALK_REPS LOOKUPS RW_N RW_REPS
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libfdt.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static uint32_t fnv(const unsigned char *p, unsigned n)
{
	uint32_t h = 2166136261u;
	for (unsigned i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

#define BATCHES 5

static char (*names)[32];
static char (*paths)[40];

static void die(const char *what, int err)
{
	fprintf(stderr, "fdt_bench: %s: %s\n", what, fdt_strerror(err));
	exit(1);
}

/* The KHO root shape: compatible + preserved-memory-map, then n subtrees with two native u64s. */
static void build(void *buf, int size, int n)
{
	uint64_t mm = 0x1ef000, pa, sz;
	int err = fdt_create(buf, size);
	err |= fdt_finish_reservemap(buf);
	err |= fdt_begin_node(buf, "");
	err |= fdt_property_string(buf, "compatible", "kho-v4");
	err |= fdt_property(buf, "preserved-memory-map", &mm, sizeof(mm));
	for (int i = 0; i < n; i++) {
		pa = 0x100000000ull + (uint64_t)i * 0x1000;
		sz = 32 + (uint64_t)i;
		err |= fdt_begin_node(buf, names[i]);
		err |= fdt_property(buf, "preserved-data", &pa, sizeof(pa));
		err |= fdt_property(buf, "blob-size", &sz, sizeof(sz));
		err |= fdt_end_node(buf);
	}
	err |= fdt_end_node(buf);
	err |= fdt_finish(buf);
	if (err)
		die("build", -FDT_ERR_NOSPACE);
}

static uint64_t walk(const void *fdt)
{
	uint64_t acc = 0;
	int depth = 0, len, prop, node;
	if (fdt_check_header(fdt))
		die("walk", -FDT_ERR_BADMAGIC);
	for (node = 0; node >= 0 && depth >= 0; node = fdt_next_node(fdt, node, &depth)) {
		fdt_get_name(fdt, node, &len);
		acc += (uint64_t)len + (uint64_t)depth;
		fdt_for_each_property_offset(prop, fdt, node) {
			const char *pn;
			const unsigned char *v = fdt_getprop_by_offset(fdt, prop, &pn, &len);
			acc += (uint64_t)len + (unsigned char)pn[0] + v[0];
		}
	}
	return acc;
}

static uint64_t le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: fdt_bench N BUILD_REPS WALK_REPS LOOKUPS RW_N RW_REPS\n");
		return 2;
	}
	int n = atoi(argv[1]), build_reps = atoi(argv[2]), walk_reps = atoi(argv[3]);
	int lookups = atoi(argv[4]), rw_n = atoi(argv[5]), rw_reps = atoi(argv[6]);
	int size = 256 + n * 96;
	void *buf = aligned_alloc(8, size);
	names = calloc(n > rw_n ? n : rw_n, sizeof(*names));
	paths = calloc(n, sizeof(*paths));
	for (int i = 0; i < (n > rw_n ? n : rw_n); i++)
		snprintf(names[i], sizeof(names[i]), "subtree-%d", i);
	for (int i = 0; i < n; i++)
		snprintf(paths[i], sizeof(paths[i]), "/subtree-%d", i);

	/* (a) sequential write */
	double best = 1e300, t0, t1;
	build(buf, size, n);
	for (int b = 0; b < BATCHES; b++) {
		t0 = now_ns();
		for (int r = 0; r < build_reps; r++)
			build(buf, size, n);
		t1 = now_ns();
		if ((t1 - t0) / build_reps < best)
			best = (t1 - t0) / build_reps;
	}
	printf("build %.1f %08x\n", best, fnv(buf, fdt_totalsize(buf)));

	/* (b) parse and walk every node and property */
	uint64_t acc = walk(buf);
	best = 1e300;
	for (int b = 0; b < BATCHES; b++) {
		t0 = now_ns();
		for (int r = 0; r < walk_reps; r++)
			acc = walk(buf);
		t1 = now_ns();
		if ((t1 - t0) / walk_reps < best)
			best = (t1 - t0) / walk_reps;
	}
	printf("walk %.1f %llu\n", best, (unsigned long long)acc);

	/* (c) lookups by path and property name (a fixed pseudo-random sequence) */
	uint64_t sum = 0;
	best = 1e300;
	for (int b = 0; b < BATCHES; b++) {
	uint32_t x = 12345;
	sum = 0;
	t0 = now_ns();
	for (int i = 0; i < lookups; i++) {
		x = x * 1103515245u + 12345u;
		int k = (int)((x >> 8) % (uint32_t)n), len;
		int off = fdt_path_offset(buf, paths[k]);
		if (off < 0)
			die("lookup", off);
		sum += le64(fdt_getprop(buf, off, "preserved-data", &len));
		sum += le64(fdt_getprop(buf, off, "blob-size", &len));
	}
	t1 = now_ns();
	if ((t1 - t0) / lookups < best)
		best = (t1 - t0) / lookups;
	}
	printf("lookup %.1f %llu\n", best, (unsigned long long)sum);

	/* (d) kho_add_subtree, rw_n times into one growing tree: open_into, add_subnode, 2x setprop, pack */
	int rw_size = 256 + rw_n * 96;
	void *page = aligned_alloc(8, rw_size);
	uint32_t h = 0;
	best = 1e300;
	for (int b = 0; b < BATCHES; b++) {
	t0 = now_ns();
	for (int r = 0; r < rw_reps; r++) {
		uint64_t mm = 0x1ef000;
		int err = fdt_create(page, rw_size);
		err |= fdt_finish_reservemap(page);
		err |= fdt_begin_node(page, "");
		err |= fdt_property_string(page, "compatible", "kho-v4");
		err |= fdt_property(page, "preserved-memory-map", &mm, 8);
		err |= fdt_end_node(page);
		err |= fdt_finish(page);
		for (int i = 0; i < rw_n; i++) {
			uint64_t pa = 0x100000000ull + (uint64_t)i * 0x1000, sz = 32 + (uint64_t)i;
			err |= fdt_open_into(page, page, rw_size);
			int off = fdt_add_subnode(page, 0, names[i]);
			if (off < 0)
				die("add_subnode", off);
			err |= fdt_setprop(page, off, "preserved-data", &pa, 8);
			err |= fdt_setprop(page, off, "blob-size", &sz, 8);
			err |= fdt_pack(page);
		}
		if (err)
			die("rw", -FDT_ERR_NOSPACE);
		h = fnv(page, rw_size);
	}
	t1 = now_ns();
	if ((t1 - t0) / rw_reps < best)
		best = (t1 - t0) / rw_reps;
	}
	printf("rw %.1f %08x\n", best, h);
	return 0;
}
