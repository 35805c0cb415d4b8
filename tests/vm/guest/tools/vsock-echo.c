// SPDX-License-Identifier: GPL-3.0-or-later
/*
 * vsock-echo: the floor of any RPC over vsock, for the transport benchmark. Connects to
 * the host (CID 2) on PORT, sends N messages of SIZE bytes one at a time, waits for
 * each to come back whole, and prints the round trips' p50, p99 and mean, in the shape
 * of `vfpga bench`'s null-op line. A vAccel-style RPC over vsock pays at least this
 * (plus its own framing); vfpga's null op over vsock is the same round trip carrying a
 * 48-byte header and a 40-byte answer.
 *   vsock-echo PORT [N [SIZE]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = 2 };
	int n = argc > 2 ? atoi(argv[2]) : 1000, size = argc > 3 ? atoi(argv[3]) : 64;
	char buf[4096];
	double *us, sum = 0;
	int fd, i;

	if (argc < 2 || n < 1 || size < 1 || size > (int)sizeof(buf)) {
		fprintf(stderr, "usage: vsock-echo PORT [N [SIZE<=4096]]\n");
		return 2;
	}
	addr.svm_port = atoi(argv[1]);
	fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("vsock-echo: connect");
		return 1;
	}
	us = calloc(n, sizeof(*us));
	if (!us)
		return 1;
	memset(buf, 'x', size);
	for (i = 0; i < n; i++) {
		struct timespec t0, t1;
		int got = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (write(fd, buf, size) != size) {
			perror("vsock-echo: write");
			return 1;
		}
		while (got < size) {
			ssize_t r = read(fd, buf + got, size - got);

			if (r <= 0) {
				perror("vsock-echo: read");
				return 1;
			}
			got += r;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		us[i] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
		sum += us[i];
	}
	qsort(us, n, sizeof(*us), cmp);
	printf("echo %d B: %d round trips, mean %.1f us, p50 %.1f us, p99 %.1f us\n",
	       size, n, sum / n, us[(n - 1) / 2], us[(int)((n - 1) * 0.99 + 0.5)]);
	free(us);
	close(fd);
	return 0;
}
