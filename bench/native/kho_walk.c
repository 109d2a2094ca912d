/*
 * C floor for bench/kho.ts: what the new kernel's KHO does with the preserved-memory tracker before
 * memblock takes over, in plain C on the same bytes: walk the radix tree (tables of 512 physical
 * addresses over five levels, 32768-bit leaf bitmaps; a set bit is the key order-bit | pa >> (12 +
 * order)), decode every key to (pfn, order) and check it lies inside RAM, sort the blocks by pfn
 * (LSD radix sort, 16-bit digits) and coalesce touching blocks into ranges — the ranges memblock
 * would reserve. The input is the tracker's pages as the simulated memory holds them.
 *
 * Prints "walk_sort_coalesce <best ns> <blocks> <ranges> <checksum>"; the checksum (sum of range
 * starts and ends) lets the TypeScript side check both did the same work. Best of BATCHES runs.
 *
 * usage: kho_walk FILE RAM_PAGES
 * FILE: u64 root_pa, u64 npages, then npages records of (u64 pa, 4096 bytes), sorted by pa.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 4096
#define BATCHES 5
#define TABLE 512
#define LEAF_BITS (PAGE * 8)

static uint64_t *page_pa;
static unsigned char *pages;
static uint64_t npages, ram_pages;
static uint64_t *blocks, nblocks, cap;

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static const unsigned char *page_at(uint64_t pa)
{
	uint64_t lo = 0, hi = npages;
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (page_pa[mid] < pa)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == npages || page_pa[lo] != pa) {
		fprintf(stderr, "kho_walk: node 0x%llx is not among the tracker pages\n", (unsigned long long)pa);
		exit(1);
	}
	return pages + lo * PAGE;
}

/* One block: pfn in the high bits, order in the low 6 (pfns stay below 2^46). */
static void block(uint64_t key)
{
	int top = 63 - __builtin_clzll(key);
	int order = 52 - top;
	uint64_t pfn = (key ^ (1ULL << top)) << order;
	if (order < 0 || pfn + (1ULL << order) > ram_pages) {
		fprintf(stderr, "kho_walk: key 0x%llx lies outside RAM\n", (unsigned long long)key);
		exit(1);
	}
	if (nblocks == cap) {
		cap = cap ? cap * 2 : 1 << 16;
		blocks = realloc(blocks, cap * sizeof(*blocks));
	}
	blocks[nblocks++] = pfn << 6 | (uint64_t)order;
}

static void walk(uint64_t pa, int level, uint64_t prefix)
{
	const unsigned char *p = page_at(pa);
	if (level == 0) {
		const uint64_t *w = (const uint64_t *)p;
		for (unsigned i = 0; i < LEAF_BITS / 64; i++) {
			uint64_t v = w[i];
			while (v) {
				int b = __builtin_ctzll(v);
				v &= v - 1;
				block(prefix << 15 | (uint64_t)(i * 64 + b));
			}
		}
		return;
	}
	const uint64_t *t = (const uint64_t *)p;
	for (unsigned i = 0; i < TABLE; i++)
		if (t[i])
			walk(t[i], level - 1, prefix << 9 | i);
}

static void radix_sort(uint64_t *a, uint64_t *tmp, uint64_t n)
{
	for (int shift = 6; shift < 6 + 48; shift += 16) {
		static uint64_t count[1 << 16];
		memset(count, 0, sizeof(count));
		for (uint64_t i = 0; i < n; i++)
			count[(a[i] >> shift) & 0xffff]++;
		uint64_t sum = 0;
		for (unsigned d = 0; d < 1 << 16; d++) {
			uint64_t c = count[d];
			count[d] = sum;
			sum += c;
		}
		for (uint64_t i = 0; i < n; i++)
			tmp[count[(a[i] >> shift) & 0xffff]++] = a[i];
		memcpy(a, tmp, n * sizeof(*a));
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: kho_walk FILE RAM_PAGES\n");
		return 2;
	}
	ram_pages = strtoull(argv[2], NULL, 0);
	FILE *f = fopen(argv[1], "rb");
	uint64_t root;
	if (!f || fread(&root, 8, 1, f) != 1 || fread(&npages, 8, 1, f) != 1) {
		perror("kho_walk: input");
		return 1;
	}
	page_pa = malloc(npages * sizeof(*page_pa));
	pages = malloc(npages * PAGE);
	for (uint64_t i = 0; i < npages; i++) {
		if (fread(&page_pa[i], 8, 1, f) != 1 || fread(pages + i * PAGE, PAGE, 1, f) != 1) {
			fprintf(stderr, "kho_walk: short input\n");
			return 1;
		}
	}
	fclose(f);

	double best = 1e30;
	uint64_t nranges = 0, sum = 0;
	uint64_t *tmp = NULL;
	for (int run = 0; run < BATCHES; run++) {
		double t0 = now_ns();
		nblocks = 0;
		walk(root, 5, 0);
		tmp = realloc(tmp, (nblocks ? nblocks : 1) * sizeof(*tmp));
		radix_sort(blocks, tmp, nblocks);
		nranges = 0;
		sum = 0;
		uint64_t start = 0, end = 0;
		for (uint64_t i = 0; i < nblocks; i++) {
			uint64_t pfn = blocks[i] >> 6, n = 1ULL << (blocks[i] & 63);
			if (nranges && pfn == end) {
				end += n;
				continue;
			}
			if (nranges)
				sum += start + end;
			start = pfn;
			end = pfn + n;
			nranges++;
		}
		if (nranges)
			sum += start + end;
		double t = now_ns() - t0;
		if (t < best)
			best = t;
	}
	printf("walk_sort_coalesce %.0f %llu %llu %llu\n", best, (unsigned long long)nblocks, (unsigned long long)nranges, (unsigned long long)sum);
	return 0;
}
