/*
 * uv_udp_echo.c — the libuv peer of the UDP benchmark (issue #10,
 * bench/udp_bench.sh), written the way libuv's documentation writes a UDP
 * server: uv_udp_recv_start with an alloc callback, each datagram copied
 * into a uv_udp_send request freed in the send callback (the receive buffer
 * is reused by the next read). The handle is made with UV_UDP_RECVMMSG, so
 * libuv receives with recvmmsg: the alloc callback hands it a buffer of
 * RECV_CHUNKS chunks of 64 KiB, each datagram arrives as a chunk
 * (UV_UDP_MMSG_CHUNK), then a last call (UV_UDP_MMSG_FREE) gives the buffer
 * back. libuv sends each datagram as it is queued (a sendmsg, or sendmmsg of
 * the queue when the socket was full).
 *
 *   uv_udp_echo PORT [HOST]     prints "listening on HOST:PORT", exits 0 on
 *                               SIGTERM or SIGINT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CHUNK 65536
#define RECV_CHUNKS 20 /* libuv's most per recvmmsg (its iovec array) */

typedef struct {
    uv_udp_send_t req;
    char data[];
} send_req;

static uv_loop_t *loop;
static uv_udp_t sock;
static uv_signal_t sigterm, sigint;
static char rbuf[CHUNK * RECV_CHUNKS];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_send(uv_udp_send_t *req, int status)
{
    (void)status; /* one datagram: nothing to close */
    free(req);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    if (nread <= 0 || addr == NULL || (flags & UV_UDP_MMSG_FREE))
        return; /* nothing, an error for one datagram, or the buffer back */
    send_req *r = malloc(sizeof *r + (size_t)nread);
    if (!r)
        return;
    memcpy(r->data, buf->base, (size_t)nread);
    uv_buf_t out = uv_buf_init(r->data, (unsigned)nread);
    if (uv_udp_send(&r->req, h, &out, 1, addr, on_send) < 0)
        free(r);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    /* the loop ends when every handle is closed; sends still queued get
     * their callback (UV_ECANCELED) and are freed */
    uv_close((uv_handle_t *)&sock, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: uv_udp_echo PORT [HOST]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    struct sockaddr_in sa;
    if (port < 0 || port > 65535 || uv_ip4_addr(host, port, &sa) != 0) {
        fprintf(stderr, "uv_udp_echo: bad address %s:%s\n", host, argv[1]);
        return 2;
    }
    loop = uv_default_loop();
    int rc = uv_udp_init_ex(loop, &sock, AF_INET | UV_UDP_RECVMMSG);
    if (rc == 0)
        rc = uv_udp_bind(&sock, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&sock, on_alloc, on_recv);
    if (rc < 0) {
        fprintf(stderr, "uv_udp_echo: %s\n", uv_strerror(rc));
        return 1;
    }
    if (!uv_udp_using_recvmmsg(&sock)) {
        fprintf(stderr, "uv_udp_echo: this libuv does not use recvmmsg\n");
        return 1;
    }
    int len = sizeof sa;
    uv_udp_getsockname(&sock, (struct sockaddr *)&sa, &len);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
