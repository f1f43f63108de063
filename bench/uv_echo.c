/*
 * uv_echo.c — the libuv echo server of the echo benchmark, written the way
 * a typical libuv server is (libuv's own docs/examples): uv_read_start with
 * an alloc callback, a copy of each read into a uv_write request freed in
 * the write callback. The read buffer is one static 64 KiB block (the loop
 * is single-threaded and read_cb runs before the next alloc), TCP_NODELAY
 * as the other servers.
 *
 *   uv_echo PORT [HOST]     prints "listening on HOST:PORT", exits 0 on
 *                           SIGTERM or SIGINT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BUF 65536

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigterm, sigint;
static char rbuf[BUF];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(rbuf, BUF);
}

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    uv_handle_t *client = (uv_handle_t *)req->handle;
    free(wr->buf.base);
    free(wr);
    if (status < 0 && !uv_is_closing(client))
        uv_close(client, on_close);
}

static void on_read(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        write_req *wr = malloc(sizeof *wr);
        char *copy = malloc((size_t)nread);
        if (!wr || !copy) {
            free(wr);
            free(copy);
            uv_close((uv_handle_t *)client, on_close);
            return;
        }
        memcpy(copy, buf->base, (size_t)nread);
        wr->buf = uv_buf_init(copy, (unsigned)nread);
        if (uv_write(&wr->req, client, &wr->buf, 1, on_write) < 0) {
            free(copy);
            free(wr);
            uv_close((uv_handle_t *)client, on_close);
        }
        return;
    }
    if (nread < 0 && !uv_is_closing((uv_handle_t *)client))
        uv_close((uv_handle_t *)client, on_close); /* UV_EOF or an error */
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *client = malloc(sizeof *client);
    if (!client)
        return;
    uv_tcp_init(loop, client);
    if (uv_accept(srv, (uv_stream_t *)client) == 0) {
        uv_tcp_nodelay(client, 1);
        uv_read_start((uv_stream_t *)client, on_alloc, on_read);
    } else {
        uv_close((uv_handle_t *)client, on_close);
    }
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h == (uv_handle_t *)&server || h == (uv_handle_t *)&sigterm ||
                            h == (uv_handle_t *)&sigint
                        ? NULL
                        : on_close);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    uv_walk(loop, close_any, NULL); /* the loop ends when every handle is closed */
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: uv_echo PORT [HOST]\n");
        return 2;
    }
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    struct sockaddr_in sa;
    if (uv_ip4_addr(host, atoi(argv[1]), &sa) != 0) {
        fprintf(stderr, "uv_echo: bad address %s:%s\n", host, argv[1]);
        return 2;
    }
    /* libuv writes with write(2), not send(MSG_NOSIGNAL): without this a
     * peer that resets with an echo pending kills the server */
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (rc) {
        fprintf(stderr, "uv_echo: %s\n", uv_strerror(rc));
        return 1;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &len);
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
