/*
 * Reference driver for luo's fdt/ tests: runs libfdt (Debian libfdt-dev, -lfdt) on command lines
 * read from stdin and prints one result line per command, so a test can apply the same operations
 * to luo and to libfdt and compare return values and every byte of the buffers.
 *
 * Everything happens in one 8-byte aligned arena; "cur" is the offset of the tree being worked on.
 * Hex arguments ("-" for empty) carry names and values; node arguments are "#k" (the k-th node in
 * fdt_next_node order, 0 = root) or a plain integer offset.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libfdt.h>

#define ARENA_MAX (4u << 20)
static uint64_t arena_words[ARENA_MAX / 8];
static unsigned char *arena = (unsigned char *)arena_words;
static unsigned arena_size = 65536;
static unsigned cur;

static unsigned char scratch[ARENA_MAX];
static char namebuf[65536];

static int unhex(const char *s, unsigned char *out)
{
	int n = 0;
	if (!s || strcmp(s, "-") == 0)
		return 0;
	for (; s[0] && s[1]; s += 2) {
		unsigned v;
		sscanf(s, "%2x", &v);
		out[n++] = (unsigned char)v;
	}
	return n;
}

static const char *cstr(const char *hex)
{
	int n = unhex(hex, (unsigned char *)namebuf);
	namebuf[n] = '\0';
	return namebuf;
}

static void puthex(const unsigned char *p, int n)
{
	static const char d[] = "0123456789abcdef";
	if (n == 0)
		fputc('-', stdout);
	for (int i = 0; i < n; i++) {
		fputc(d[p[i] >> 4], stdout);
		fputc(d[p[i] & 15], stdout);
	}
}

static void *fdt(void) { return arena + cur; }

static int node_arg(const char *s)
{
	if (s[0] == '#') {
		int k = atoi(s + 1), off = 0;
		if (k == 0)
			return 0;
		for (int i = 0; i < k; i++) {
			off = fdt_next_node(fdt(), off, NULL);
			if (off < 0)
				return off;
		}
		return off;
	}
	return atoi(s);
}

static uint32_t fnv(const unsigned char *p, unsigned n)
{
	uint32_t h = 2166136261u;
	for (unsigned i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	memset(arena, 0, arena_size);
	while (getline(&line, &cap, stdin) > 0) {
		char *tok[8] = { 0 };
		int nt = 0, r = 0;
		for (char *t = strtok(line, " \n"); t && nt < 8; t = strtok(NULL, " \n"))
			tok[nt++] = t;
		if (nt == 0)
			continue;
		const char *c = tok[0];
		if (!strcmp(c, "arena")) {
			arena_size = strtoul(tok[1], NULL, 0);
			memset(arena, (int)strtoul(tok[2], NULL, 0), arena_size);
			cur = 0;
			continue;
		} else if (!strcmp(c, "load")) {
			unsigned off = strtoul(tok[1], NULL, 0);
			int n = unhex(tok[2], scratch);
			memcpy(arena + off, scratch, n);
			continue;
		} else if (!strcmp(c, "use")) {
			cur = strtoul(tok[1], NULL, 0);
			continue;
		} else if (!strcmp(c, "create")) {
			cur = strtoul(tok[1], NULL, 0);
			r = fdt_create_with_flags(fdt(), atoi(tok[2]), nt > 3 ? strtoul(tok[3], NULL, 0) : 0);
		} else if (!strcmp(c, "resize")) {
			unsigned to = strtoul(tok[1], NULL, 0);
			r = fdt_resize(fdt(), arena + to, atoi(tok[2]));
			if (r == 0)
				cur = to;
		} else if (!strcmp(c, "rsv")) {
			r = fdt_add_reservemap_entry(fdt(), strtoull(tok[1], NULL, 16), strtoull(tok[2], NULL, 16));
		} else if (!strcmp(c, "finishrsv")) {
			r = fdt_finish_reservemap(fdt());
		} else if (!strcmp(c, "begin")) {
			r = fdt_begin_node(fdt(), cstr(tok[1]));
		} else if (!strcmp(c, "prop")) {
			int n = unhex(tok[2], scratch);
			r = fdt_property(fdt(), cstr(tok[1]), scratch, n);
		} else if (!strcmp(c, "end")) {
			r = fdt_end_node(fdt());
		} else if (!strcmp(c, "finish")) {
			r = fdt_finish(fdt());
		} else if (!strcmp(c, "openinto")) {
			unsigned src = strtoul(tok[1], NULL, 0), dst = strtoul(tok[2], NULL, 0);
			r = fdt_open_into(arena + src, arena + dst, atoi(tok[3]));
			if (r == 0)
				cur = dst;
		} else if (!strcmp(c, "addnode")) {
			int p = node_arg(tok[1]);
			r = fdt_add_subnode(fdt(), p, cstr(tok[2]));
		} else if (!strcmp(c, "setprop") || !strcmp(c, "appendprop") || !strcmp(c, "setpropinplace")) {
			int node = node_arg(tok[1]);
			int n = unhex(tok[3], scratch);
			const char *name = cstr(tok[2]);
			if (!strcmp(c, "setprop"))
				r = fdt_setprop(fdt(), node, name, scratch, n);
			else if (!strcmp(c, "appendprop"))
				r = fdt_appendprop(fdt(), node, name, scratch, n);
			else
				r = fdt_setprop_inplace(fdt(), node, name, scratch, n);
		} else if (!strcmp(c, "delprop")) {
			int node = node_arg(tok[1]);
			r = fdt_delprop(fdt(), node, cstr(tok[2]));
		} else if (!strcmp(c, "nopprop")) {
			int node = node_arg(tok[1]);
			r = fdt_nop_property(fdt(), node, cstr(tok[2]));
		} else if (!strcmp(c, "delnode")) {
			r = fdt_del_node(fdt(), node_arg(tok[1]));
		} else if (!strcmp(c, "nopnode")) {
			r = fdt_nop_node(fdt(), node_arg(tok[1]));
		} else if (!strcmp(c, "setname")) {
			int node = node_arg(tok[1]);
			r = fdt_set_name(fdt(), node, cstr(tok[2]));
		} else if (!strcmp(c, "pack")) {
			r = fdt_pack(fdt());
		} else if (!strcmp(c, "addmemrsv")) {
			r = fdt_add_mem_rsv(fdt(), strtoull(tok[1], NULL, 16), strtoull(tok[2], NULL, 16));
		} else if (!strcmp(c, "delmemrsv")) {
			r = fdt_del_mem_rsv(fdt(), atoi(tok[1]));
		} else if (!strcmp(c, "subnode")) {
			int p = node_arg(tok[1]);
			r = fdt_subnode_offset(fdt(), p, cstr(tok[2]));
		} else if (!strcmp(c, "path")) {
			r = fdt_path_offset(fdt(), cstr(tok[1]));
		} else if (!strcmp(c, "node")) {
			r = node_arg(tok[1]);
		} else if (!strcmp(c, "nodebyprop")) {
			int start = node_arg(tok[1]);
			int n = unhex(tok[3], scratch);
			r = fdt_node_offset_by_prop_value(fdt(), start, cstr(tok[2]), scratch, n);
		} else if (!strcmp(c, "getprop")) {
			int node = node_arg(tok[1]), len;
			const void *v = fdt_getprop(fdt(), node, cstr(tok[2]), &len);
			if (!v) {
				printf("r %d\n", len);
			} else {
				printf("r %d ", len);
				puthex(v, len);
				fputc('\n', stdout);
			}
			continue;
		} else if (!strcmp(c, "sum")) {
			printf("s %08x\n", fnv(arena + strtoul(tok[1], NULL, 0), strtoul(tok[2], NULL, 0)));
			continue;
		} else if (!strcmp(c, "dump")) {
			puthex(arena + strtoul(tok[1], NULL, 0), (int)strtoul(tok[2], NULL, 0));
			fputc('\n', stdout);
			continue;
		} else if (!strcmp(c, "sync")) {
			puts("ok");
			fflush(stdout);
			continue;
		} else {
			fprintf(stderr, "libfdt_driver: unknown command %s\n", c);
			return 2;
		}
		printf("r %d\n", r);
	}
	fflush(stdout);
	return 0;
}
