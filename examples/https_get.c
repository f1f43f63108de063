/*
 * https_get.c — fetch one URL over HTTPS and print the body: a small curl.
 *
 *   https_get [-v] [--cafile FILE] [--alpn] URL
 *        URL          https://HOST[:PORT][/PATH]  (HOST may be [IPv6])
 *        --cafile     trust the CA certificates of FILE (PEM) too, beside
 *                     the system's (a private CA, a test server)
 *        --alpn       offer "http/1.1" by ALPN (and say what was picked
 *                     with -v)
 *        -v           the TLS version and the response headers on stderr
 *
 * The body goes to stdout, byte for byte. Exit status 0 for a complete
 * response with a status below 400; 1 otherwise, with one line on stderr
 * saying what failed (ctrio_strerror, and OpenSSL's reason for a TLS
 * failure, such as "certificate verify failed: hostname mismatch");
 * 2 for a bad command line.
 *
 * What it shows:
 *  - ctrio_open_tls_over_tcp_stream: name lookup, happy eyeballs, then a
 *    client TLS stream that sends the host as SNI and checks the server's
 *    certificate against it, as Python's ssl.create_default_context.
 *  - ctrio_tls_stream_handshake to fail early and clearly, before talking
 *    HTTP, and ctrio_tls_stream_error for the reason.
 *  - CTRIO_TLS_HTTPS_COMPATIBLE, Trio's https_compatible=True: many HTTPS
 *    servers close without close_notify, and HTTP tells where the body
 *    ends anyway (Content-Length, chunks). Only a body read until the close
 *    cannot be told from a truncated one, as for every HTTPS client.
 *  - The three ways an HTTP/1.1 body ends, read through one small buffer.
 * stdout is written with plain blocking stdio: this program has one task,
 * so a slow reader of stdout holds up no one else.
 */
#include <ctrio.h>
#include <ctrio_tls.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct options {
    const char *cafile; /* NULL: the system's store only */
    bool alpn, verbose;
    char host[256];
    int port;
    const char *path; /* starts with '/' */
} options;

/* ---- the URL --------------------------------------------------------------- */

/* https://HOST[:PORT][/PATH]: host without brackets into o->host. */
static int parse_url(const char *url, options *o)
{
    const char *p = url, *end;
    if (strncasecmp(p, "https://", 8) != 0)
        return -EINVAL;
    p += 8;
    if (*p == '[') { /* an IPv6 literal */
        end = strchr(++p, ']');
        if (!end)
            return -EINVAL;
    } else {
        end = p + strcspn(p, ":/?#");
    }
    size_t len = (size_t)(end - p);
    if (len == 0 || len >= sizeof o->host)
        return -EINVAL;
    memcpy(o->host, p, len);
    o->host[len] = '\0';
    p = *end == ']' ? end + 1 : end;
    o->port = 443;
    if (*p == ':') {
        char *after;
        long port = strtol(p + 1, &after, 10);
        if (after == p + 1 || port < 1 || port > 65535)
            return -EINVAL;
        o->port = (int)port;
        p = after;
    }
    if (*p && *p != '/')
        return -EINVAL; /* "?query" with no path: not worth the trouble here */
    o->path = *p ? p : "/";
    return 0;
}

/* ---- reading the response through one buffer ------------------------------ */

typedef struct reader {
    ctrio_stream *s;
    char buf[64 * 1024];
    size_t off, len; /* unread bytes: buf[off .. off + len) */
} reader;

/* Receive more into the buffer: > 0 bytes came, 0 at the end, < 0 error. */
static ssize_t fill(reader *r)
{
    if (r->off + r->len == sizeof r->buf) {
        memmove(r->buf, r->buf + r->off, r->len);
        r->off = 0;
    }
    if (r->len == sizeof r->buf)
        return -E2BIG; /* a line longer than the buffer */
    ssize_t n =
        ctrio_stream_receive_some(r->s, r->buf + r->off + r->len, sizeof r->buf - r->off - r->len);
    if (n > 0)
        r->len += (size_t)n;
    return n;
}

/* One line without its CRLF (or LF), NUL-terminated in place: valid until
 * the next read. -EPROTO if the response ends in the middle of it. */
static int read_line(reader *r, char **line)
{
    size_t scanned = 0;
    for (;;) {
        char *start = r->buf + r->off;
        char *nl = memchr(start + scanned, '\n', r->len - scanned);
        if (nl) {
            size_t n = (size_t)(nl - start);
            *nl = '\0';
            if (n > 0 && start[n - 1] == '\r')
                start[n - 1] = '\0';
            r->off += n + 1;
            r->len -= n + 1;
            *line = start;
            return 0;
        }
        scanned = r->len;
        ssize_t n = fill(r);
        if (n <= 0)
            return n == 0 ? -EPROTO : (int)n;
    }
}

/* Copy the next count bytes of the body to stdout (count SIZE_MAX: until
 * the server closes). */
static int copy_body(reader *r, size_t count)
{
    while (count > 0) {
        if (r->len == 0) {
            ssize_t n = fill(r);
            if (n < 0)
                return (int)n;
            if (n == 0)
                return count == SIZE_MAX ? 0 : -EPROTO; /* ended too soon */
        }
        size_t k = r->len < count ? r->len : count;
        if (fwrite(r->buf + r->off, 1, k, stdout) != k)
            return -EIO;
        r->off += k;
        r->len -= k;
        if (count != SIZE_MAX)
            count -= k;
    }
    return 0;
}

/* Transfer-Encoding: chunked (RFC 9112 7.1): "SIZE[;ext]" CRLF, the bytes,
 * CRLF; a last chunk of size 0, then trailer lines up to an empty one. */
static int copy_chunked(reader *r)
{
    char *line, *end;
    int rc;
    for (;;) {
        if ((rc = read_line(r, &line)) < 0)
            return rc;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        if (end == line || errno || (*end && *end != ';' && *end != ' ' && *end != '\t'))
            return -EPROTO;
        if (size == 0)
            break;
        if ((rc = copy_body(r, (size_t)size)) < 0 || (rc = read_line(r, &line)) < 0)
            return rc;
        if (*line)
            return -EPROTO; /* the chunk was longer than it said */
    }
    do { /* trailers: ignored */
        if ((rc = read_line(r, &line)) < 0)
            return rc;
    } while (*line);
    return 0;
}

/* ---- the response's head ----------------------------------------------------- */

typedef struct head {
    int status;
    bool chunked;
    long long length; /* -1: none given */
} head;

static bool header_is(const char *line, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    for (*value = line + n + 1; **value == ' ' || **value == '\t';)
        (*value)++;
    return true;
}

static int parse_header(const char *line, head *h)
{
    const char *v;
    char *end;
    if (header_is(line, "Content-Length", &v)) {
        errno = 0;
        h->length = strtoll(v, &end, 10);
        if (end == v || errno || h->length < 0)
            return -EPROTO;
    } else if (header_is(line, "Transfer-Encoding", &v)) {
        /* chunked is last when present (RFC 9112 6.1) */
        size_t n = strlen(v);
        while (n > 0 && isspace((unsigned char)v[n - 1]))
            n--;
        h->chunked = n >= 7 && strncasecmp(v + n - 7, "chunked", 7) == 0;
    }
    return 0;
}

/* The status line and the headers; 1xx interim responses are skipped. */
static int read_head(reader *r, const options *o, head *h)
{
    char *line;
    int rc;
    do {
        *h = (head){.length = -1};
        if ((rc = read_line(r, &line)) < 0)
            return rc;
        if (o->verbose)
            fprintf(stderr, "< %s\n", line);
        if (sscanf(line, "HTTP/1.%*1[01] %3d", &h->status) != 1 || h->status < 100)
            return -EPROTO;
        while ((rc = read_line(r, &line)) == 0 && *line) {
            if (o->verbose)
                fprintf(stderr, "< %s\n", line);
            if ((rc = parse_header(line, h)) < 0)
                return rc;
        }
        if (rc < 0)
            return rc;
    } while (h->status < 200);
    return 0;
}

static int read_response(reader *r, const options *o, int *status)
{
    head h;
    int rc = read_head(r, o, &h);
    if (rc < 0)
        return rc;
    *status = h.status;
    if (h.status == 204 || h.status == 304)
        return 0; /* no body, whatever the headers say */
    if (h.chunked)
        return copy_chunked(r);
    if (h.length >= 0)
        return copy_body(r, (size_t)h.length);
    return copy_body(r, SIZE_MAX); /* HTTP/1.0 style: until the close */
}

/* ---- the program --------------------------------------------------------------- */

static int make_context(const options *o, ctrio_tls_context **ctx)
{
    static const char *const protos[] = {"http/1.1"};
    int rc = ctrio_tls_client_context(ctx);
    if (rc < 0)
        fprintf(stderr, "https_get: cannot set up TLS: %s\n", ctrio_strerror(rc));
    else if (o->cafile && (rc = ctrio_tls_context_load_ca(*ctx, o->cafile)) < 0)
        fprintf(stderr, "https_get: cannot load %s: %s\n", o->cafile, ctrio_strerror(rc));
    else if (o->alpn && (rc = ctrio_tls_context_set_alpn(*ctx, protos, 1)) < 0)
        fprintf(stderr, "https_get: cannot set ALPN: %s\n", ctrio_strerror(rc));
    return rc;
}

static int send_request(ctrio_stream *s, const options *o)
{
    char req[2048];
    /* an IPv6 literal goes back into brackets in Host */
    bool v6 = strchr(o->host, ':') != NULL;
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUser-Agent: ctrio-https_get\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     o->path, v6 ? "[" : "", o->host, v6 ? "]" : "", o->port);
    if (n < 0 || (size_t)n >= sizeof req)
        return -E2BIG;
    return ctrio_stream_send_all(s, req, (size_t)n);
}

/* One line on stderr: what failed, why, and OpenSSL's reason if any. */
static void report(const char *what, const options *o, int rc, ctrio_stream *s)
{
    const char *why = s ? ctrio_tls_stream_error(s) : NULL;
    fprintf(stderr, "https_get: %s %s:%d: %s%s%s\n", what, o->host, o->port, ctrio_strerror(rc),
            why ? ": " : "", why ? why : "");
}

static int get(const options *o, ctrio_tls_context *ctx)
{
    ctrio_stream *s = NULL;
    int status = 0;
    reader *r = NULL;
    int rc = ctrio_open_tls_over_tcp_stream(o->host, o->port, ctx, CTRIO_TLS_HTTPS_COMPATIBLE, &s);
    if (rc < 0) {
        report("cannot connect to", o, rc, NULL);
        goto cleanup;
    }
    if ((rc = ctrio_tls_stream_handshake(s)) < 0) {
        report("TLS handshake failed with", o, rc, s);
        goto cleanup;
    }
    if (o->verbose) {
        const char *alpn = ctrio_tls_stream_alpn(s);
        fprintf(stderr, "* %s, ALPN %s\n", ctrio_tls_stream_version(s), alpn ? alpn : "none");
    }
    if ((rc = send_request(s, o)) < 0) {
        report("cannot send the request to", o, rc, s);
        goto cleanup;
    }
    if (!(r = malloc(sizeof *r))) {
        rc = -ENOMEM;
        goto cleanup;
    }
    *r = (reader){.s = s};
    if ((rc = read_response(r, o, &status)) < 0) {
        report("bad or incomplete response from", o, rc, s);
        goto cleanup;
    }
    if (status >= 400) {
        fprintf(stderr, "https_get: %s:%d answered with status %d\n", o->host, o->port, status);
        rc = -EPROTO;
    }
cleanup:
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "https_get: cannot write the body: %s\n", strerror(errno));
        rc = -EIO;
    }
    free(r);
    if (s)
        ctrio_stream_close(s);
    return rc;
}

static int main_task(void *arg)
{
    const options *o = arg;
    ctrio_tls_context *ctx = NULL;
    int rc = make_context(o, &ctx);
    if (rc == 0)
        rc = get(o, ctx);
    ctrio_tls_context_free(ctx);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: https_get [-v] [--cafile FILE] [--alpn] https://HOST[:PORT][/PATH]\n");
    return 2;
}

int main(int argc, char **argv)
{
    options o = {0};
    int i;
    for (i = 1; i < argc - 1; i++) {
        if (strcmp(argv[i], "--cafile") == 0 && i + 2 < argc)
            o.cafile = argv[++i];
        else if (strcmp(argv[i], "--alpn") == 0)
            o.alpn = true;
        else if (strcmp(argv[i], "-v") == 0)
            o.verbose = true;
        else
            return usage();
    }
    if (i != argc - 1 || parse_url(argv[i], &o) < 0)
        return usage();
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
