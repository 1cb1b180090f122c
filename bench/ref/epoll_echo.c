/* A floor for bench/serve.py's echo rows: the smallest useful echo server
 * (one thread, level-triggered epoll, read then write back, nothing else).
 * It shows what the kernel alone costs per request on this machine, so that
 * sonde's ratio to ncat can be read against what any server could reach.
 * Build: cc -O2 -o target/epoll_echo bench/ref/epoll_echo.c
 * Run:   target/epoll_echo PORT   (listens on 127.0.0.1) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopback.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: epoll_echo PORT\n");
        return 2;
    }
    int one = 1;
    int l = listen_loopback(argv[1], 4096);
    if (l < 0)
        return 1;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    struct epoll_event ready[256];
    static char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, ready, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == l) {
                int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
                if (c < 0)
                    continue;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                close(fd);
                continue;
            }
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(fd, buf + off, (size_t)(r - off));
                if (w <= 0)
                    break;
                off += w;
            }
        }
    }
}
