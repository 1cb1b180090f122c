/* A diagnostic for the rtt reflector's read size (BENCHMARKS.md, seventh
 * rtt run): the smallest blocking TCP echo, one client at a time, reading
 * at most READ bytes per recv. Pinned to one CPU with 16 KiB messages, a
 * READ of 262144 settles at ~32 us round trips where 65536 stays at ~23 us.
 * Build: cc -O2 -o target/blocking_echo bench/ref/blocking_echo.c
 * Run:   taskset -c 1 target/blocking_echo PORT READ &
 *        taskset -c 1 target/release/sonde rtt 127.0.0.1:PORT -m 16K -t 4 --csv FILE */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopback.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: blocking_echo PORT READ\n");
        return 2;
    }
    int one = 1;
    int l = listen_loopback(argv[1], 16);
    if (l < 0)
        return 1;
    size_t size = (size_t)atol(argv[2]);
    char *buf = malloc(size);
    if (!buf)
        return 1;
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (;;) {
            ssize_t r = recv(c, buf, size, 0);
            if (r <= 0 || send(c, buf, (size_t)r, 0) != r)
                break;
        }
        close(c);
    }
}
