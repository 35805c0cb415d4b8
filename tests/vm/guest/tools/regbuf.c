// SPDX-License-Identifier: MIT
/*
 * regbuf: registered buffers (VFPGA_IOC_REGISTER) through the raw ioctls of
 * uapi/vfpga_ioctl.h, in a guest with virtio_vfpga.ko and vfpgad's sim engine.
 *
 * Runs vadd_u32 on registered buffers (whole, cut to a range, mixed with plain
 * ones, changed after registration) and checks every element against sums
 * computed here; then the hostile cases: ids this file does not have, lying
 * offsets and lengths, a read-only buffer as an output, malformed structures,
 * a full table, another file's ids, unregistering while runs are in flight, the
 * locked-memory limit of an unprivileged process (a charge that outlives the
 * process that made it), and that every pinned page is shown (VmPin) and given
 * back (the kernel's pin counters). With "hugetlb" as argument, also buffers
 * from the huge page pool: few descriptors, registered or not, and ranges that
 * start and end inside a huge page.
 *
 * Prints "regbuf: OK" at the end; any failure prints why and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vfpga_ioctl.h"

#define N (1u << 20)			/* elements per vector: 4 MiB */
#define BYTES ((size_t)N * 4)
#define HUGE (2u << 20)

static const char *dev = "/dev/vfpga0";

#define fail(...) do { printf("regbuf: FAIL: " __VA_ARGS__); printf("\n"); exit(1); } while (0)

static uint32_t a_val(uint32_t i, uint32_t round) { return i * 2654435761u + round; }
static uint32_t b_val(uint32_t i) { return i ^ 0x5a5a5a5au; }

static void *map(size_t len, int flags)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* VmPin of this process (pages registrations hold pinned), in KiB. */
static long vmpin(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		fail("cannot read /proc/self/status");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Pages pinned in the whole system now (/proc/vmstat's acquired - released). */
static long pins(void)
{
	char line[256];
	long v, acquired = -1, released = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		fail("cannot read /proc/vmstat");
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "nr_foll_pin_acquired %ld", &v) == 1)
			acquired = v;
		if (sscanf(line, "nr_foll_pin_released %ld", &v) == 1)
			released = v;
	}
	fclose(f);
	if (acquired < 0 || released < 0)
		fail("no pin counters in /proc/vmstat");
	return acquired - released;
}

static uint64_t open_session(int fd)
{
	struct vfpga_ioc_session s = { .name = "vadd_u32" };

	if (ioctl(fd, VFPGA_IOC_OPEN_SESSION, &s) || s.status != VFPGA_S_OK)
		fail("open session on vadd_u32: %s, status %u", strerror(errno), s.status);
	return s.session;
}

/* Registers len bytes at p; returns the id (0 and errno on failure). */
static uint32_t reg(int fd, void *p, uint64_t len, uint32_t flags, uint32_t *segments)
{
	struct vfpga_ioc_register r = { .addr = (uintptr_t)p, .len = len, .flags = flags };

	if (ioctl(fd, VFPGA_IOC_REGISTER, &r))
		return 0;
	if (!r.id)
		fail("registration got id 0");
	if (segments)
		*segments = r.segments;
	return r.id;
}

static int unreg(int fd, uint32_t id)
{
	return ioctl(fd, VFPGA_IOC_UNREGISTER, &id) ? errno : 0;
}

/* A buffer argument: registered (id != 0, at offset off) or plain user memory at p. */
struct buf {
	uint32_t id;
	uint64_t off;
	void *p;
};

static void set_arg(struct vfpga_ioc_arg *a, uint8_t kind, struct buf b, uint64_t len)
{
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->ty = VFPGA_T_U32;
	a->value = len;
	if (b.id) {
		a->flags = VFPGA_IOC_ARG_REGISTERED;
		a->buf_id = b.id;
		a->addr = b.off;
	} else {
		a->addr = (uintptr_t)b.p;
	}
}

static void vadd_args(struct vfpga_ioc_run *r, uint64_t session, struct buf a, struct buf b,
		      struct buf c, uint32_t n)
{
	memset(r, 0, sizeof(*r));
	r->session = session;
	r->n_args = 4;
	set_arg(&r->args[0], VFPGA_ARG_IN, a, (uint64_t)n * 4);
	set_arg(&r->args[1], VFPGA_ARG_IN, b, (uint64_t)n * 4);
	set_arg(&r->args[2], VFPGA_ARG_OUT, c, (uint64_t)n * 4);
	r->args[3].kind = VFPGA_ARG_SCALAR;
	r->args[3].ty = VFPGA_T_U32;
	r->args[3].value = n;
}

/* Runs vadd_u32; returns 0 with the run's status in *r, or the errno. */
static int vadd(int fd, struct vfpga_ioc_run *r)
{
	return ioctl(fd, VFPGA_IOC_RUN, r) ? errno : 0;
}

static void vadd_ok(int fd, struct vfpga_ioc_run *r, const char *what)
{
	int err = vadd(fd, r);

	if (err || r->status != VFPGA_S_OK)
		fail("%s: %s, status %u", what, strerror(err), r->status);
}

static void expect_errno(int got, int want, const char *what)
{
	if (got != want)
		fail("%s: got %s, want %s", what, got ? strerror(got) : "success",
		     strerror(want));
	printf("regbuf: %s: %s (as it should)\n", what, strerror(want));
}

static void check_sums(const uint32_t *c, uint32_t c0, const uint32_t *a, const uint32_t *b,
		       uint32_t n, const char *what)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (c[c0 + i] != a[i] + b[i])
			fail("%s: element %u is %u, want %u", what, i, c[c0 + i], a[i] + b[i]);
}

struct racer {
	int fd;
	uint64_t session;
	struct buf a, b, c;
	int ok, gone, other;
};

/* Runs until the registration is gone: every run either completes right or gets ENOENT. */
static void *race(void *arg)
{
	struct racer *x = arg;
	struct vfpga_ioc_run r;
	int i, err;

	for (i = 0; i < 100000 && !__atomic_load_n(&x->gone, __ATOMIC_SEQ_CST); i++) {
		vadd_args(&r, x->session, x->a, x->b, x->c, N);
		err = vadd(x->fd, &r);
		if (!err && r.status == VFPGA_S_OK)
			__atomic_add_fetch(&x->ok, 1, __ATOMIC_SEQ_CST);
		else if (err == ENOENT)
			__atomic_add_fetch(&x->gone, 1, __ATOMIC_SEQ_CST);
		else
			x->other++;
	}
	return NULL;
}

static void hugetlb(int fd, uint64_t session)
{
	uint32_t *a = map(BYTES, MAP_HUGETLB), *b = map(BYTES, MAP_HUGETLB);
	uint32_t *c = map(BYTES, MAP_HUGETLB), *p = map(BYTES, 0), segs = 0, i;
	struct vfpga_ioc_run r;
	uint32_t ia, ib, ic;
	unsigned int plain;

	if (!a || !b || !c || !p)
		fail("map 3 x 4 MiB of huge pages: %s (vm.nr_hugepages too low?)", strerror(errno));
	for (i = 0; i < N; i++) {
		a[i] = a_val(i, 3);
		b[i] = b_val(i);
		p[i] = a[i];
	}
	/* Not registered: pinned per run, but still one descriptor per contiguous stretch. */
	vadd_args(&r, session, (struct buf){ .p = a }, (struct buf){ .p = b },
		  (struct buf){ .p = c }, N);
	vadd_ok(fd, &r, "vadd on huge pages");
	check_sums(c, 0, a, b, N, "vadd on huge pages");
	/* 2 huge pages per vector at most, plus the header and the response. */
	if (r.segments > 2 + 3 * (BYTES / HUGE))
		fail("vadd on huge pages took %u descriptors", r.segments);
	vadd_args(&r, session, (struct buf){ .p = p }, (struct buf){ .p = b },
		  (struct buf){ .p = c }, N);
	vadd_ok(fd, &r, "vadd with one vector on 4 KiB pages");
	plain = r.segments;
	ia = reg(fd, a, BYTES, VFPGA_REG_READ_ONLY, &segs);
	if (!ia || segs > BYTES / HUGE)
		fail("register 4 MiB of huge pages: id %u, %u segments, %s", ia, segs,
		     strerror(errno));
	ib = reg(fd, b, BYTES, VFPGA_REG_READ_ONLY, NULL);
	ic = reg(fd, c, BYTES, 0, NULL);
	if (!ib || !ic)
		fail("register huge pages: %s", strerror(errno));
	memset(c, 0, BYTES);
	vadd_args(&r, session, (struct buf){ .id = ia }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	vadd_ok(fd, &r, "vadd on registered huge pages");
	check_sums(c, 0, a, b, N, "vadd on registered huge pages");
	printf("regbuf: hugetlb: %u segments per registered 4 MiB vector; a vadd took %u descriptors on huge pages, %u with one vector on 4 KiB pages\n",
	       segs, r.segments, plain);
	/*
	 * Ranges that start 4 KiB and 12 bytes into a huge page and end inside
	 * one: cuts of the registrations' entries, checked element by element.
	 */
	memset(c, 0xff, BYTES);
	vadd_args(&r, session, (struct buf){ .id = ia, .off = 4096 + 12 },
		  (struct buf){ .id = ib, .off = 4096 + 12 },
		  (struct buf){ .id = ic, .off = HUGE + 4096 + 12 }, 500000);
	vadd_ok(fd, &r, "vadd on ranges of registered huge pages");
	check_sums(c, (HUGE + 4096 + 12) / 4, a + 1027, b + 1027, 500000,
		   "vadd on ranges of registered huge pages");
	for (i = 0; i < N; i++)
		if ((i < (HUGE + 4108) / 4 || i >= (HUGE + 4108) / 4 + 500000) &&
		    c[i] != 0xffffffffu)
			fail("vadd on ranges of huge pages wrote element %u outside its range", i);
	if (r.segments > 2 + 3 * 2)
		fail("ranges of registered huge pages took %u descriptors", r.segments);
	if (unreg(fd, ia) || unreg(fd, ib) || unreg(fd, ic))
		fail("unregister huge pages");
}

int main(int argc, char **argv)
{
	uint32_t *a = map(BYTES, 0), *b = map(BYTES, 0), *c = map(BYTES, 0), *ro;
	uint32_t ia, ib, ic, ids[80], segs = 0, i, n;
	struct vfpga_ioc_register rr;
	struct vfpga_ioc_run r;
	struct racer x;
	pthread_t t[2];
	long base, lck, pinned;
	uint64_t session;
	int fd, fd2, status;
	pid_t pid;

	if (!a || !b || !c)
		fail("map buffers: %s", strerror(errno));
	fd = open(dev, O_RDWR);
	if (fd < 0)
		fail("open %s: %s", dev, strerror(errno));
	session = open_session(fd);
	for (i = 0; i < N; i++) {
		a[i] = a_val(i, 0);
		b[i] = b_val(i);
	}
	base = vmpin();

	/*
	 * Whole buffers, registered once: 3072 pages pinned, by the kernel's
	 * system-wide counters (nothing else here pins meanwhile: no I/O). They
	 * are summed from per-CPU counters folded in batches, so they may lag by
	 * a batch per CPU: a quarter of the pages either way (one buffer's worth
	 * left pinned would show).
	 */
	pinned = pins();
	ia = reg(fd, a, BYTES, VFPGA_REG_READ_ONLY, &segs);
	ib = reg(fd, b, BYTES, VFPGA_REG_READ_ONLY, NULL);
	ic = reg(fd, c, BYTES, 0, NULL);
	lck = pins() - pinned;
	if (!ia || !ib || !ic)
		fail("register 3 x 4 MiB: %s", strerror(errno));
	if (labs(lck - 3072) > 768)
		fail("3 x 4 MiB registered: %ld pages pinned, want 3072", lck);
	if (unreg(fd, ia) || unreg(fd, ib) || unreg(fd, ic) || labs(pins() - pinned) > 768)
		fail("unregistered: %ld pages still pinned", pins() - pinned);
	ia = reg(fd, a, BYTES, VFPGA_REG_READ_ONLY, &segs);
	ib = reg(fd, b, BYTES, VFPGA_REG_READ_ONLY, NULL);
	ic = reg(fd, c, BYTES, 0, NULL);
	if (!ia || !ib || !ic)
		fail("register 3 x 4 MiB again: %s", strerror(errno));
	lck = vmpin();
	if (lck - base != 3 * (long)BYTES / 1024)
		fail("VmPin grew by %ld KiB for 3 registered buffers of %zu KiB", lck - base,
		     BYTES / 1024);
	printf("regbuf: registered 3 x 4 MiB (ids %u %u %u, %u segments for the first), VmPin +%ld KiB\n",
	       ia, ib, ic, segs, lck - base);
	vadd_args(&r, session, (struct buf){ .id = ia }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	vadd_ok(fd, &r, "vadd on registered buffers");
	check_sums(c, 0, a, b, N, "vadd on registered buffers");
	printf("regbuf: vadd on registered buffers: bit-exact, %u descriptors\n", r.segments);

	/* Changed after registration: the device reads the live pages. */
	for (i = 0; i < N; i++)
		a[i] = a_val(i, 1);
	vadd_ok(fd, &r, "vadd after changing a registered input");
	check_sums(c, 0, a, b, N, "vadd after changing a registered input");

	/* A range cut out of each, at odd offsets; the rest of the output untouched. */
	memset(c, 0xff, BYTES);
	n = 300000;
	vadd_args(&r, session, (struct buf){ .id = ia, .off = 777 * 4 },
		  (struct buf){ .id = ib, .off = 777 * 4 }, (struct buf){ .id = ic, .off = 5001 * 4 },
		  n);
	vadd_ok(fd, &r, "vadd on ranges of registered buffers");
	check_sums(c, 5001, a + 777, b + 777, n, "vadd on ranges");
	for (i = 0; i < N; i++)
		if ((i < 5001 || i >= 5001 + n) && c[i] != 0xffffffffu)
			fail("vadd on ranges wrote element %u outside its range", i);

	/* Mixed: a registered, b plain memory, c registered. */
	vadd_args(&r, session, (struct buf){ .id = ia }, (struct buf){ .p = b },
		  (struct buf){ .id = ic }, N);
	vadd_ok(fd, &r, "vadd on registered and plain buffers");
	check_sums(c, 0, a, b, N, "vadd on registered and plain buffers");
	printf("regbuf: ranges, mixed and changed buffers: bit-exact\n");

	/* Hostile runs: each refused with its errno, nothing run. */
	vadd_args(&r, session, (struct buf){ .id = 9999 }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	expect_errno(vadd(fd, &r), ENOENT, "an id this file never had");
	r.args[0].buf_id = 0;
	expect_errno(vadd(fd, &r), ENOENT, "id 0");
	vadd_args(&r, session, (struct buf){ .id = ia, .off = 4 }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	expect_errno(vadd(fd, &r), EINVAL, "a range 4 bytes past the end");
	r.args[0].addr = UINT64_MAX - 3;
	r.args[0].value = 8;
	expect_errno(vadd(fd, &r), EINVAL, "an offset that wraps around");
	vadd_args(&r, session, (struct buf){ .id = ia }, (struct buf){ .id = ib },
		  (struct buf){ .id = ia }, N);
	expect_errno(vadd(fd, &r), EACCES, "a read-only registration as the output");
	vadd_args(&r, session, (struct buf){ .p = a }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	r.args[0].buf_id = ia;
	expect_errno(vadd(fd, &r), EINVAL, "an id without the registered flag");
	vadd_args(&r, session, (struct buf){ .id = ia }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	r.args[0].flags |= 2;
	expect_errno(vadd(fd, &r), EINVAL, "an unknown argument flag");
	vadd_args(&r, session, (struct buf){ .id = ia }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	r.args[3].flags = VFPGA_IOC_ARG_REGISTERED;
	expect_errno(vadd(fd, &r), EINVAL, "a scalar flagged registered");

	/* Hostile registrations. */
	expect_errno(reg(fd, a, 0, 0, NULL) ? 0 : errno, EINVAL, "registering 0 bytes");
	expect_errno(reg(fd, a, (1ull << 30) + 1, 0, NULL) ? 0 : errno, EINVAL,
		     "registering more than 1 GiB");
	expect_errno(reg(fd, (void *)4096, 4096, 0, NULL) ? 0 : errno, EFAULT,
		     "registering unmapped memory");
	expect_errno(reg(fd, (void *)(UINTPTR_MAX - 4095), 8192, 0, NULL) ? 0 : errno, EINVAL,
		     "registering a range that wraps around");
	expect_errno(reg(fd, a, 4096, 2, NULL) ? 0 : errno, EINVAL, "an unknown registration flag");
	memset(&rr, 0, sizeof(rr));
	rr.addr = (uintptr_t)a;
	rr.len = 4096;
	rr.reserved = 1;
	expect_errno(ioctl(fd, VFPGA_IOC_REGISTER, &rr) ? errno : 0, EINVAL,
		     "a non-zero reserved field");
	/* Populated, then made read-only: pages of its own, not the zero page. */
	ro = map(8192, 0);
	if (!ro || memset(ro, 1, 8192) != ro || mprotect(ro, 8192, PROT_READ))
		fail("map read-only memory");
	expect_errno(reg(fd, ro, 8192, 0, NULL) ? 0 : errno, EFAULT,
		     "registering read-only memory for writing");
	i = reg(fd, ro, 8192, VFPGA_REG_READ_ONLY, NULL);
	if (!i || unreg(fd, i))
		fail("register read-only memory read-only: %s", strerror(errno));
	expect_errno(unreg(fd, 4242), ENOENT, "unregistering an unknown id");

	/* Another open file (another tenant of the device node) cannot use these ids. */
	fd2 = open(dev, O_RDWR);
	if (fd2 < 0)
		fail("open %s again", dev);
	vadd_args(&r, open_session(fd2), (struct buf){ .id = ia }, (struct buf){ .id = ib },
		  (struct buf){ .id = ic }, N);
	expect_errno(vadd(fd2, &r), ENOENT, "another file's ids");
	expect_errno(unreg(fd2, ia), ENOENT, "unregistering another file's id");

	/* The table is bounded (max_registered, 64 by default); closing frees it all. */
	for (i = 0; i < 80; i++) {
		ids[i] = reg(fd2, a, 4096, VFPGA_REG_READ_ONLY, NULL);
		if (!ids[i])
			break;
	}
	if (i != 64 || errno != ENOSPC)
		fail("registered %u one-page buffers before %s; want 64 then ENOSPC", i,
		     strerror(errno));
	printf("regbuf: 64 registrations, the 65th: ENOSPC (as it should)\n");
	close(fd2);
	if (vmpin() != lck)
		fail("VmPin %ld KiB after closing a file with 64 registrations, want %ld", vmpin(),
		     lck);

	/* Unregistered while runs use it: each run completes right or gets ENOENT. */
	memset(&x, 0, sizeof(x));
	x.fd = fd;
	x.session = session;
	x.a = (struct buf){ .id = ia };
	x.b = (struct buf){ .id = ib };
	x.c = (struct buf){ .id = ic };
	/* Two threads: runs sharing one registration, whole, at the same time. */
	if (pthread_create(&t[0], NULL, race, &x) || pthread_create(&t[1], NULL, race, &x))
		fail("start a thread");
	while (__atomic_load_n(&x.ok, __ATOMIC_SEQ_CST) < 4)
		usleep(1000);
	if (unreg(fd, ib))
		fail("unregister a buffer in use");
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	if (!x.gone || x.other)
		fail("runs racing an unregistration: %d ok, %d ENOENT, %d other", x.ok, x.gone,
		     x.other);
	printf("regbuf: unregistered under running vadds: %d completed, then ENOENT (as it should)\n",
	       x.ok);
	if (unreg(fd, ib) != ENOENT)
		fail("a second unregistration succeeded");
	if (unreg(fd, ia) || unreg(fd, ic))
		fail("unregister");
	if (vmpin() != base)
		fail("after unregistering everything: VmPin %ld KiB, want %ld", vmpin(), base);
	printf("regbuf: every pinned page given back (VmPin %ld KiB; the kernel's pin counters: about 3072 pages while 3 x 4 MiB were registered, none after)\n",
	       base);

	/* A request's byte count cannot be wrapped around by a registered argument. */
	vadd_args(&r, session, (struct buf){ .p = a }, (struct buf){ .p = b },
		  (struct buf){ .p = (void *)0x1000 }, N);
	r.args[2].value = UINT64_MAX - 0x2000;
	ia = reg(fd, a, BYTES, 0, NULL);
	if (!ia)
		fail("register again: %s", strerror(errno));
	r.args[1].flags = VFPGA_IOC_ARG_REGISTERED;
	r.args[1].buf_id = ia;
	r.args[1].addr = 0;
	r.args[1].kind = VFPGA_ARG_OUT;
	r.args[1].value = 1 << 20;
	expect_errno(vadd(fd, &r), EINVAL, "outputs whose byte count wraps around");
	if (unreg(fd, ia))
		fail("unregister");

	/* Read-only, registered before it is ever written: the device sees what comes later. */
	ro = map(BYTES, 0);
	i = ro ? reg(fd, ro, BYTES, VFPGA_REG_READ_ONLY, NULL) : 0;
	if (!i)
		fail("register fresh memory read-only: %s", strerror(errno));
	for (n = 0; n < N; n++)
		ro[n] = a_val(n, 7);
	memset(c, 0, BYTES);
	vadd_args(&r, session, (struct buf){ .id = i }, (struct buf){ .p = b },
		  (struct buf){ .p = c }, N);
	vadd_ok(fd, &r, "vadd on memory registered read-only before it was written");
	check_sums(c, 0, ro, b, N, "vadd on memory registered read-only before it was written");
	if (unreg(fd, i))
		fail("unregister");
	printf("regbuf: memory registered read-only, then written: the device reads the writes\n");

	/*
	 * An unprivileged user: registrations count against its RLIMIT_MEMLOCK,
	 * and keep counting after the process that made them is gone (the file
	 * lives on), until they are unregistered.
	 */
	for (n = 0; n < 3; n++) {
		pid = fork();
		if (pid == 0) {
			struct rlimit lim = { 64 << 10, 64 << 10 };
			uint32_t id;

			if (setrlimit(RLIMIT_MEMLOCK, &lim) || setgid(65534) || setuid(65534))
				fail("drop privileges: %s", strerror(errno));
			if (n == 0) {
				if (reg(fd, a, 1 << 20, VFPGA_REG_READ_ONLY, NULL) || errno != ENOMEM)
					fail("1 MiB registered under a 64 KiB limit: %s", strerror(errno));
				id = reg(fd, a, 40 << 10, VFPGA_REG_READ_ONLY, NULL);
				if (!id)
					fail("40 KiB under a 64 KiB limit: %s", strerror(errno));
				printf("regbuf: unprivileged, ulimit -l 64: 1 MiB refused with ENOMEM, 40 KiB registered (as it should)\n");
				exit(id);
			}
			/* 40 KiB still counted: 40 more are over; once given back, not. */
			id = reg(fd, b, 40 << 10, VFPGA_REG_READ_ONLY, NULL);
			if (n == 1 && (id || errno != ENOMEM))
				fail("the charge ended with the process that registered: %s", strerror(errno));
			if (n == 2 && !id)
				fail("40 KiB once the first 40 were unregistered: %s", strerror(errno));
			exit(0);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    (n > 0 && WEXITSTATUS(status)) || (n == 0 && !WEXITSTATUS(status)))
			fail("unprivileged child %u failed", n);
		if (n == 0)
			i = WEXITSTATUS(status);
		if (n == 1 && unreg(fd, i))
			fail("unregister the unprivileged registration");
	}
	printf("regbuf: an exited process's registration still counts for its user, until unregistered (as it should)\n");

	if (argc > 1 && !strcmp(argv[1], "hugetlb"))
		hugetlb(fd, session);
	close(fd);
	printf("regbuf: OK\n");
	return 0;
}
