/*
 * stream.c — TLS streams (trio.SSLStream), sans-I/O.
 *
 * OpenSSL reads and writes two buffers of ours through a small BIO (as
 * Trio's SSLObject reads and writes two MemoryBIOs); this file moves bytes
 * between those buffers and the transport stream. The design is Trio's
 * _ssl.py, whose _retry loop is retry() here:
 *   1. call OpenSSL (SSL_do_handshake, SSL_read_ex, SSL_write_ex,
 *      SSL_shutdown) without yielding,
 *   2. then do exactly one thing that may block: send what OpenSSL wrote,
 *      or else, if it wants input, receive some,
 *   3. loop until the call finished.
 * Two tasks may be in retry() at once (one receiving, one sending, Trio's
 * rule): the send lock is FIFO, so records go out in the order OpenSSL made
 * them; the receive count lets a task that waited for the receive lock see
 * that another task's receive already fed OpenSSL, and loop instead of
 * receiving (the data it needed may be all there will be).
 *
 * Our buffers rather than BIO_s_mem: the bytes OpenSSL wrote are taken by
 * swapping buffers (no copy), and the transport receives straight into the
 * buffer OpenSSL reads.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>
#include <stdio.h>

/* Plaintext per SSL_write_ex: 16 records, about 256 KiB per transport send. */
#define WRITE_CHUNK (256u * 1024)
/* The receive buffer: two full records (16 KiB + 256 + 5) fit. */
#define IN_CAP (34u * 1024)
/* Go's crypto/tls waits this long for its close_notify to be written. */
#define CLOSE_NOTIFY_SECONDS 5.0

typedef struct buf {
    unsigned char *p;
    size_t off, len, cap; /* the bytes are p[off .. off + len) */
} buf;

enum state { TLS_OK, TLS_BROKEN, TLS_CLOSED };
enum op { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

typedef struct tls {
    ctrio_stream *transport; /* NULL once closed or unwrapped */
    ctrio_tls_context *ctx;
    SSL *ssl;
    enum state state;
    bool server, https_compatible;
    bool closed;              /* close ran: free when the last task leaves */
    unsigned users;           /* tasks inside this stream's calls */
    bool receiving, sending;  /* for unwrap, which needs both sides */
    bool hs_started;          /* Trio's _Once over _do_handshake */
    ctrio_event hs_done;
    ctrio_lock send_lock, recv_lock; /* Trio's _inner_send_lock / _inner_recv_lock */
    uint64_t recv_count;
    buf in, out, spare;
    bool in_eof;
    bool out_of_memory;       /* a BIO write failed */
    buf delayed;              /* Trio #819: a TLS 1.3 server's tickets */
    char alpn[256];
    char err[256];
} tls;

/* ---- buffers ------------------------------------------------------------ */

static int buf_reserve(buf *b, size_t more)
{
    if (b->cap - b->off - b->len >= more)
        return 0;
    if (b->off && b->cap - b->len >= more) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    unsigned char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    if (b->len)
        memcpy(p, b->p + b->off, b->len);
    free(b->p);
    b->p = p;
    b->off = 0;
    b->cap = cap;
    return 0;
}

static void buf_free(buf *b)
{
    free(b->p);
    *b = (buf){0};
}

/* ---- the BIO OpenSSL reads and writes ------------------------------------ */

static int bio_write(BIO *bio, const char *data, int len)
{
    tls *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if (buf_reserve(&t->out, (size_t)len) < 0) {
        t->out_of_memory = true;
        return -1;
    }
    memcpy(t->out.p + t->out.off + t->out.len, data, (size_t)len);
    t->out.len += (size_t)len;
    return len;
}

static int bio_read(BIO *bio, char *data, int len)
{
    tls *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if (t->in.len == 0) {
        if (t->in_eof)
            return 0; /* the transport's EOF: OpenSSL reports it */
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t n = t->in.len < (size_t)len ? t->in.len : (size_t)len;
    memcpy(data, t->in.p + t->in.off, n);
    t->in.off += n;
    t->in.len -= n;
    if (t->in.len == 0)
        t->in.off = 0;
    return (int)n;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    tls *t = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)t->in.len : 0;
    case BIO_CTRL_WPENDING:
        return t ? (long)t->out.len : 0;
    case BIO_CTRL_EOF:
        return t && t->in_eof && t->in.len == 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static int bio_destroy(BIO *bio)
{
    BIO_set_data(bio, NULL);
    return 1;
}

BIO_METHOD *ctrio__tls_bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ctrio_tls");
    if (m && (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
              !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
              !BIO_meth_set_destroy(m, bio_destroy))) {
        BIO_meth_free(m);
        m = NULL;
    }
    return m;
}

/* ---- life --------------------------------------------------------------- */

static void tls_free(tls *t)
{
    SSL_free(t->ssl); /* frees the BIO */
    ctrio_tls_context_free(t->ctx);
    buf_free(&t->in);
    buf_free(&t->out);
    buf_free(&t->spare);
    buf_free(&t->delayed);
    free(t);
}

static void hold(tls *t)
{
    t->users++;
}

static int check_status(const tls *t)
{
    switch (t->state) {
    case TLS_OK: return 0;
    case TLS_BROKEN: return -EPIPE; /* BrokenResourceError */
    default: return -EBADF;         /* ClosedResourceError */
    }
}

static void unhold(tls *t)
{
    if (--t->users == 0 && t->closed)
        tls_free(t);
}

/* The start of every call: its conflicts and state (Trio's order), then its
 * cancel point, so that a call cancelled before it starts does nothing (a
 * handshake not started is not started, a send sends nothing). */
static int enter(tls *t, bool *side)
{
    if (side && *side)
        return -EBUSY; /* an unwrap holds both sides */
    int rc = check_status(t);
    if (rc == 0)
        rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    hold(t);
    if (side)
        *side = true;
    return 0;
}

static void leave(tls *t, bool *side)
{
    if (side)
        *side = false;
    unhold(t);
}

/* ---- failures ----------------------------------------------------------- */

/* The code and text of a failed OpenSSL call; the stream is broken. */
static int fail(tls *t, int ssl_error)
{
    unsigned long e = ERR_peek_error();
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
    int rc = CTRIO_ETLS_PROTOCOL;
    if (t->out_of_memory || reason == ERR_R_MALLOC_FAILURE)
        rc = -ENOMEM;
    else if (lib == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        rc = CTRIO_ETLS_TRUNCATED;
    else if (lib == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
        rc = CTRIO_ETLS_VERIFY;
    else if (ssl_error == SSL_ERROR_SYSCALL && e == 0)
        rc = CTRIO_ETLS_TRUNCATED; /* an EOF OpenSSL did not name */
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    if (rc == CTRIO_ETLS_VERIFY) {
        snprintf(t->err, sizeof t->err, "%s: %s", why ? why : "certificate verify failed",
                 X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
    } else if (why) {
        snprintf(t->err, sizeof t->err, "%s", why);
    } else {
        snprintf(t->err, sizeof t->err, "%s", ctrio_strerror(rc));
    }
    ERR_clear_error();
    t->state = TLS_BROKEN;
    return rc;
}

/* ---- the retry loop ----------------------------------------------------- */

typedef struct call {
    enum op op;
    void *buf;
    size_t len, done;
} call;

enum { FINISHED = 1, WANT_READ = 0, MORE = 2 };

/* One OpenSSL call: FINISHED (*ret set), WANT_READ, MORE (a write with more
 * to go once this chunk is out), or a failure (the stream is broken). */
static int attempt(tls *t, call *c, ssize_t *ret)
{
    int r;
    size_t n = 0;
    /* SSL_get_error reads this thread's queue: it must start empty. Looked
     * at first: clearing it walks all its slots (1 % of a bulk echo). */
    if (ERR_peek_error() != 0)
        ERR_clear_error();
    switch (c->op) {
    case OP_HANDSHAKE:
        r = SSL_do_handshake(t->ssl);
        break;
    case OP_READ:
        r = SSL_read_ex(t->ssl, c->buf, c->len, &n);
        break;
    case OP_WRITE: {
        size_t chunk = c->len - c->done < WRITE_CHUNK ? c->len - c->done : WRITE_CHUNK;
        r = SSL_write_ex(t->ssl, (char *)c->buf + c->done, chunk, &n);
        break;
    }
    default:
        /* Python's SSLObject.unwrap: 0 means our close_notify went out;
         * call again to read the peer's (WANT_READ until it comes) */
        r = SSL_shutdown(t->ssl);
        if (r == 0)
            r = SSL_shutdown(t->ssl);
        break;
    }
    if (r == 1) {
        if (c->op == OP_WRITE) {
            c->done += n;
            return c->done < c->len ? MORE : FINISHED;
        }
        *ret = (ssize_t)n;
        return FINISHED;
    }
    int err = SSL_get_error(t->ssl, r);
    if (err == SSL_ERROR_WANT_READ)
        return WANT_READ;
    if (err == SSL_ERROR_ZERO_RETURN && c->op == OP_READ) {
        *ret = 0; /* the peer's close_notify */
        return FINISHED;
    }
    return fail(t, err);
}

static int lock(ctrio_lock *l)
{
    if (ctrio_lock_acquire_nowait(l) == 0)
        return 0;
    return ctrio_lock_acquire(l); /* FIFO: queued behind the holder's waiters */
}

/* Send what OpenSSL wrote. Whatever happens, the records are gone from our
 * buffers: on failure some unknown part of them reached the peer, so the
 * stream is broken (Trio: "This stream is doomed"). */
static int send_out(tls *t, buf *b)
{
    int rc = lock(&t->send_lock);
    if (rc == 0) {
        if (t->delayed.len) {
            /* the tickets go first: OpenSSL made them first */
            rc = buf_reserve(b, t->delayed.len);
            if (rc == 0) {
                memmove(b->p + b->off + t->delayed.len, b->p + b->off, b->len);
                memcpy(b->p + b->off, t->delayed.p + t->delayed.off, t->delayed.len);
                b->len += t->delayed.len;
                buf_free(&t->delayed);
            }
        }
        if (rc == 0)
            rc = t->transport ? ctrio_stream_send_all(t->transport, b->p + b->off, b->len) : -EBADF;
        ctrio_lock_release(&t->send_lock);
    }
    b->off = b->len = 0;
    if (!t->spare.p)
        t->spare = *b;
    else
        buf_free(b);
    if (rc < 0 && t->state == TLS_OK)
        t->state = TLS_BROKEN;
    return rc;
}

/* Feed OpenSSL from the transport, unless another task did while this one
 * waited for the lock (then loop: what it received may be all there is).
 * A failure or a cancellation here loses nothing. */
static int receive_in(tls *t)
{
    uint64_t count = t->recv_count;
    int rc = lock(&t->recv_lock);
    if (rc < 0)
        return rc;
    if (count == t->recv_count) {
        rc = t->transport ? 0 : -EBADF;
        if (rc == 0 && !t->in.p) {
            t->in.p = malloc(IN_CAP);
            t->in.cap = IN_CAP;
            if (!t->in.p) {
                t->in.cap = 0;
                rc = -ENOMEM;
            }
        }
        if (rc == 0 && t->in.off && t->in.cap - t->in.off - t->in.len < IN_CAP / 2) {
            memmove(t->in.p, t->in.p + t->in.off, t->in.len);
            t->in.off = 0;
        }
        if (rc == 0 && t->in.cap - t->in.off - t->in.len == 0)
            rc = buf_reserve(&t->in, IN_CAP / 2); /* cannot happen with whole records, but */
        if (rc == 0) {
            size_t room = t->in.cap - t->in.off - t->in.len;
            ssize_t n = ctrio_stream_receive_some(t->transport, t->in.p + t->in.off + t->in.len,
                                                  room);
            if (n < 0) {
                rc = (int)n;
            } else {
                if (n == 0)
                    t->in_eof = true;
                t->in.len += (size_t)n;
                t->recv_count++;
            }
        }
    }
    ctrio_lock_release(&t->recv_lock);
    return rc;
}

/* After a failure, the alert OpenSSL wrote about it (unknown CA, bad
 * certificate, handshake failure, bad record MAC...) goes to the peer, as a
 * socket-BIO peer sends it (openssl s_client and s_server, Python's ssl
 * sockets, Go's crypto/tls): the peer then reports why, not an EOF. Trio
 * drops it with the stream. Best effort: only when no other task is sending
 * (its records and this alert must not interleave, and waiting for it could
 * be long) and within ALERT_SECONDS (the peer may not read); a failure or a
 * cancellation here changes nothing of the failure being reported. */
#define ALERT_SECONDS 1.0
static void send_alert(tls *t)
{
    buf b = t->out;
    t->out = (buf){0};
    buf_free(&t->delayed); /* session tickets: moot now */
    if (b.len && t->transport && ctrio_in_task() && ctrio_lock_acquire_nowait(&t->send_lock) == 0) {
        ctrio_cancel_scope cs;
        ctrio_move_on_after(&cs, ALERT_SECONDS);
        (void)ctrio_stream_send_all(t->transport, b.p + b.off, b.len);
        (void)ctrio_cancel_scope_close(&cs, 0);
        ctrio_lock_release(&t->send_lock);
    }
    buf_free(&b);
}

/* Trio's _retry. ignore_want_read: one call, then send what it wrote (a
 * close's close_notify, without waiting for the peer's). */
static ssize_t retry(tls *t, call *c, bool ignore_want_read, bool is_handshake)
{
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    bool yielded = false, finished = false;
    ssize_t ret = 0;
    while (!finished) {
        rc = attempt(t, c, &ret);
        if (rc < 0) {
            send_alert(t);
            return rc;
        }
        finished = rc == FINISHED;
        bool want_read = rc == WANT_READ;
        if (ignore_want_read) {
            want_read = false;
            finished = true;
        }
        buf to_send = t->out;
        t->out = t->spare;
        t->spare = (buf){0};
        /* Trio #819 (OpenSSL #7948): a TLS 1.3 server writes its session
         * tickets at the end of the handshake, where a client that only
         * sends would not read them; keep them for our next send. */
        if (is_handshake && !want_read && t->server && SSL_version(t->ssl) == TLS1_3_VERSION &&
            to_send.len) {
            buf_free(&t->delayed);
            t->delayed = to_send;
            to_send = (buf){0};
        }
        if (to_send.len) {
            yielded = true;
            rc = send_out(t, &to_send);
        } else {
            if (to_send.p && !t->spare.p)
                t->spare = to_send;
            else
                buf_free(&to_send);
            if (want_read) {
                yielded = true;
                rc = receive_in(t);
            }
        }
        if (rc == 0 && t->closed)
            rc = -EBADF; /* closed by another task meanwhile */
        if (rc < 0)
            return rc;
    }
    if (!yielded)
        ctrio_cancel_shielded_checkpoint();
    return ret;
}

/* Trio's _Once: the first caller runs the handshake, the others wait for it.
 * Any failure, cancellation included, breaks the stream. */
static int ensure_handshake(tls *t, bool checkpoint)
{
    if (!t->hs_started) {
        t->hs_started = true;
        call c = {.op = OP_HANDSHAKE};
        int rc = (int)retry(t, &c, false, true);
        if (rc < 0 && t->state == TLS_OK)
            t->state = TLS_BROKEN;
        if (rc == 0) {
            const unsigned char *p;
            unsigned len;
            SSL_get0_alpn_selected(t->ssl, &p, &len);
            if (len)
                memcpy(t->alpn, p, len); /* len <= 255 by RFC 7301 */
            t->alpn[len] = '\0';
        }
        ctrio_event_set(&t->hs_done);
        return rc;
    }
    if (checkpoint || !ctrio_event_is_set(&t->hs_done)) {
        int rc = ctrio_event_wait(&t->hs_done);
        if (rc < 0)
            return rc;
    }
    return check_status(t);
}

/* ---- the stream operations ---------------------------------------------- */

static ssize_t tls_receive_some(ctrio_stream *s, void *data, size_t max)
{
    tls *t = ctrio_stream_impl(s);
    int rc = enter(t, &t->receiving);
    if (rc < 0)
        return rc;
    ssize_t n = ensure_handshake(t, false);
    if (n == 0) {
        call c = {.op = OP_READ, .buf = data, .len = max};
        n = retry(t, &c, false, false);
    }
    /* https_compatible: an EOF without close_notify is just an EOF (the
     * stream stays broken: closing it is all that is left to do) */
    if (n == CTRIO_ETLS_TRUNCATED && t->https_compatible)
        n = ctrio_checkpoint();
    leave(t, &t->receiving);
    return n;
}

static int tls_send_all(ctrio_stream *s, const void *data, size_t len)
{
    tls *t = ctrio_stream_impl(s);
    int rc = enter(t, &t->sending);
    if (rc < 0)
        return rc;
    rc = ensure_handshake(t, false);
    if (rc == 0 && len == 0) {
        rc = ctrio_checkpoint(); /* SSL_write of nothing would mean EOF */
    } else if (rc == 0) {
        call c = {.op = OP_WRITE, .buf = (void *)data, .len = len};
        rc = (int)retry(t, &c, false, false);
        if (rc < 0 && t->state == TLS_OK)
            t->state = TLS_BROKEN; /* cancelled part-way: records are lost */
    }
    leave(t, &t->sending);
    return rc;
}

/* Trio: the inner send lock, so that a receive's own sends (a key update's
 * answer) and this wait never use the transport's send side together. */
static int tls_wait_send(ctrio_stream *s)
{
    tls *t = ctrio_stream_impl(s);
    int rc = enter(t, &t->sending);
    if (rc < 0)
        return rc;
    rc = lock(&t->send_lock);
    if (rc == 0) {
        rc = t->transport ? ctrio_stream_wait_send_all_might_not_block(t->transport) : -EBADF;
        ctrio_lock_release(&t->send_lock);
    }
    leave(t, &t->sending);
    return rc;
}

/* Trio's aclose. Standards mode sends close_notify without waiting for the
 * peer's (the peer may never read: allowed by RFC 8446 6.1), bounded in
 * time; a peer that already closed makes that send fail, which is fine. */
static int tls_close(ctrio_stream *s)
{
    tls *t = ctrio_stream_impl(s);
    int rc = 0;
    hold(t); /* the sends and the transport's close yield: tasks leave meanwhile */
    bool handshook = ctrio_event_is_set(&t->hs_done) && t->state == TLS_OK;
    if (handshook && !t->https_compatible && ctrio_in_task() &&
        !ctrio_lock_locked(&t->send_lock)) {
        ctrio_cancel_scope cs;
        ctrio_move_on_after(&cs, CLOSE_NOTIFY_SECONDS);
        call c = {.op = OP_SHUTDOWN};
        rc = ctrio_cancel_scope_close(&cs, (int)retry(t, &c, true, false));
        if (rc != -ECANCELED)
            rc = 0; /* the transport's failure: the peer is gone already */
    }
    t->state = TLS_CLOSED;
    t->closed = true;
    if (t->transport) {
        ctrio_stream *tr = t->transport;
        t->transport = NULL;
        int crc = ctrio_stream_close(tr);
        if (rc == 0)
            rc = crc;
    }
    unhold(t);
    return rc;
}

static const ctrio_stream_ops tls_ops = {
    .receive_some = tls_receive_some,
    .send_all = tls_send_all,
    .send_eof = NULL, /* -EOPNOTSUPP: TLS has no half-close */
    .wait_send_all_might_not_block = tls_wait_send,
    .close = tls_close,
};

static tls *tls_of(ctrio_stream *s)
{
    return s && ctrio_stream_get_ops(s) == &tls_ops ? ctrio_stream_impl(s) : NULL;
}

/* ---- the public calls --------------------------------------------------- */

static bool is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* SNI and the name to verify, as Python's ssl: SNI for DNS names only (RFC
 * 6066 forbids IP literals there), no partial wildcards ("f*.example.org"). */
static int set_peer_name(SSL *ssl, const char *host)
{
    if (is_ip_literal(host))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -EINVAL;
    if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)
        return -EINVAL;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return 0;
}

int ctrio_tls_stream_new(ctrio_stream *transport, ctrio_tls_context *ctx,
                         const char *server_hostname, int flags, ctrio_stream **out)
{
    if (out)
        *out = NULL;
    if (!transport || !ctx || !out || (flags & ~(CTRIO_TLS_SERVER | CTRIO_TLS_HTTPS_COMPATIBLE)))
        return -EINVAL;
    bool server = flags & CTRIO_TLS_SERVER;
    if (!server && !server_hostname && SSL_CTX_get_verify_mode(ctx->ssl_ctx) != SSL_VERIFY_NONE)
        return -EINVAL; /* nothing to check the certificate's name against */
    tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    int rc = -ENOMEM;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    BIO *bio = t->ssl ? BIO_new(ctx->bio_method) : NULL;
    if (!bio)
        goto fail;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one reference, for both directions */
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (server_hostname && (rc = set_peer_name(t->ssl, server_hostname)) < 0)
            goto fail;
    }
    t->server = server;
    t->https_compatible = flags & CTRIO_TLS_HTTPS_COMPATIBLE;
    ctrio_event_init(&t->hs_done);
    ctrio_lock_init(&t->send_lock);
    ctrio_lock_init(&t->recv_lock);
    rc = ctrio_stream_new_custom(&tls_ops, t, out);
    if (rc < 0)
        goto fail;
    t->transport = transport;
    ctrio__tls_context_ref(ctx);
    t->ctx = ctx;
    return 0;
fail:
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    return rc;
}

int ctrio_tls_stream_handshake(ctrio_stream *s)
{
    tls *t = tls_of(s);
    if (!t)
        return -EINVAL;
    int rc = enter(t, NULL);
    if (rc < 0)
        return rc;
    rc = ensure_handshake(t, true);
    leave(t, NULL);
    return rc;
}

const char *ctrio_tls_stream_alpn(ctrio_stream *s)
{
    tls *t = tls_of(s);
    return t && t->alpn[0] ? t->alpn : NULL;
}

const char *ctrio_tls_stream_version(ctrio_stream *s)
{
    tls *t = tls_of(s);
    if (!t || !ctrio_event_is_set(&t->hs_done) || !SSL_is_init_finished(t->ssl))
        return NULL;
    return SSL_get_version(t->ssl);
}

ctrio_stream *ctrio_tls_stream_transport(ctrio_stream *s)
{
    tls *t = tls_of(s);
    return t ? t->transport : NULL;
}

struct ssl_st *ctrio_tls_stream_ssl(ctrio_stream *s)
{
    tls *t = tls_of(s);
    return t ? t->ssl : NULL;
}

const char *ctrio_tls_stream_error(ctrio_stream *s)
{
    tls *t = tls_of(s);
    return t && t->err[0] ? t->err : NULL;
}

int ctrio_tls_stream_unwrap(ctrio_stream *s, ctrio_stream **transport, void *trailing,
                            size_t cap, size_t *trailing_len)
{
    tls *t = tls_of(s);
    if (transport)
        *transport = NULL;
    if (trailing_len)
        *trailing_len = 0;
    if (!t || !transport || !trailing_len || (!trailing && cap))
        return -EINVAL;
    if (t->receiving)
        return -EBUSY;
    int rc = enter(t, &t->sending);
    if (rc < 0)
        return rc;
    t->receiving = true;
    rc = ensure_handshake(t, false);
    if (rc == 0) {
        call c = {.op = OP_SHUTDOWN};
        rc = (int)retry(t, &c, false, false);
        if (rc < 0 && t->state == TLS_OK)
            t->state = TLS_BROKEN; /* our close_notify may be half sent */
    }
    t->receiving = false;
    leave(t, &t->sending);
    if (rc < 0)
        return rc;
    size_t n = t->in.len < cap ? t->in.len : cap;
    if (n)
        memcpy(trailing, t->in.p + t->in.off, n);
    *trailing_len = n;
    rc = n < t->in.len ? -ENOBUFS : 0;
    *transport = t->transport;
    t->transport = NULL;
    t->state = TLS_CLOSED;
    ctrio_stream_close(s); /* frees the handle; the transport is no longer ours */
    return rc;
}

int ctrio_open_tls_over_tcp_stream(const char *host, int port, ctrio_tls_context *ctx, int flags,
                                   ctrio_stream **out)
{
    if (out)
        *out = NULL;
    if (!host || !out || (flags & ~CTRIO_TLS_HTTPS_COMPATIBLE))
        return -EINVAL;
    ctrio_tls_context *own = NULL;
    int rc = 0;
    if (!ctx) {
        rc = ctrio_tls_client_context(&own);
        if (rc < 0)
            return rc;
        ctx = own;
    }
    ctrio_stream *tcp;
    rc = ctrio_open_tcp_stream(host, port, &tcp);
    if (rc == 0) {
        rc = ctrio_tls_stream_new(tcp, ctx, host, flags, out);
        if (rc < 0)
            ctrio_stream_close(tcp);
    }
    ctrio_tls_context_free(own); /* the stream keeps its own reference */
    return rc;
}
