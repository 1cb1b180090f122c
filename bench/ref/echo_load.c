/* The leanest echo load generator, to see how much of bench/serve.py's echo
 * ceiling is the (tokio) generator's: CLIENTS connections to 127.0.0.1:PORT,
 * each with one 64-byte request in flight, one thread, level-triggered
 * epoll; prints requests per second over SECS and the median and p99
 * round trip (each request timed from its write to its reply's last byte).
 * Build: cc -O2 -o target/echo_load bench/ref/echo_load.c
 * Run:   target/echo_load PORT CLIENTS SECS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
/* Round trips kept for the percentiles (the first ones of a long run). */
#define KEEP (16 * 1024 * 1024)

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: echo_load PORT CLIENTS SECS\n");
        return 2;
    }
    int port = atoi(argv[1]), clients = atoi(argv[2]);
    double secs = atof(argv[3]);
    int one = 1, ep = epoll_create1(0);
    char msg[MSG];
    memset(msg, 'x', sizeof msg);
    /* Bytes of the current reply received so far, by descriptor. */
    int *got = calloc((size_t)clients + 1024, sizeof(int));
    /* When the request in flight on each descriptor was written. */
    double *sent = calloc((size_t)clients + 1024, sizeof(double));
    double *rtt = malloc(KEEP * sizeof(double));
    if (!got || !sent || !rtt)
        return 1;
    for (int i = 0; i < clients; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&a, sizeof a)) {
            perror("connecting");
            return 1;
        }
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = s};
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
        sent[s] = now();
        if (write(s, msg, MSG) != MSG)
            return 1;
    }
    long requests = 0;
    double start = now();
    struct epoll_event ready[256];
    char buf[4096];
    while (now() - start < secs) {
        int n = epoll_wait(ep, ready, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                close(fd);
                continue;
            }
            for (got[fd] += (int)r; got[fd] >= MSG; got[fd] -= MSG) {
                double t = now();
                if (requests < KEEP)
                    rtt[requests] = t - sent[fd];
                requests++;
                sent[fd] = t;
                if (write(fd, msg, MSG) != MSG)
                    break;
            }
        }
    }
    double elapsed = now() - start;
    long kept = requests < KEEP ? requests : KEEP;
    qsort(rtt, (size_t)kept, sizeof(double), cmp);
    double p50 = kept ? rtt[kept / 2] * 1e6 : 0, p99 = kept ? rtt[kept * 99 / 100] * 1e6 : 0;
    printf("requests_per_sec=%.0f p50_us=%.1f p99_us=%.1f requests=%ld\n",
           (double)requests / elapsed, p50, p99, requests);
    return 0;
}
