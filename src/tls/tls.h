/*
 * tls.h — what the files of libctrio_tls share. libctrio_tls sees only
 * libctrio's public API (ctrio.h; ctrio_testing.h is the rest of it, which
 * the TLS library does not use): the shared libctrio exports nothing else.
 */
#ifndef CTRIO_TLS_INTERNAL_H
#define CTRIO_TLS_INTERNAL_H

#include "ctrio_tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ctrio_tls_context {
    SSL_CTX *ssl_ctx;
    atomic_uint refs;
    BIO_METHOD *bio_method; /* the streams' memory BIO (tls_stream.c) */
    unsigned char *alpn;    /* wire format (RFC 7301): length-prefixed names */
    size_t alpn_len;
};

/* The method of the buffers a stream's SSL reads and writes (stream.c). */
BIO_METHOD *ctrio__tls_bio_method_new(void);

void ctrio__tls_context_ref(ctrio_tls_context *ctx);

/* The code for an OpenSSL failure left in this thread's error queue: a
 * system error as -errno, else fallback. Leaves the queue as it is. */
int ctrio__tls_queue_error(int fallback);

#endif
