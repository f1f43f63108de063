/*
 * context.c — TLS contexts (Python's ssl.SSLContext): one SSL_CTX shared by
 * many streams, with the secure defaults of ssl.create_default_context.
 */
#include "tls.h"

#include <openssl/x509v3.h>

int ctrio__tls_queue_error(int fallback)
{
    /* A system error is the first entry: OpenSSL 3 queues "calling fopen"
     * (ERR_LIB_SYS, errno), then each library that passed it on adds its
     * own (BIO, then SSL's ERR_R_SYS_LIB) after it. A missing file must be
     * -ENOENT (test_tls's test_context_files). */
    unsigned long first = ERR_peek_error();
    if (ERR_GET_LIB(first) == ERR_LIB_SYS && ERR_GET_REASON(first) > 0)
        return -ERR_GET_REASON(first);
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SYS && ERR_GET_REASON(e) > 0)
        return -ERR_GET_REASON(e);
    if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
        return -ENOMEM;
    return fallback;
}

/* Settings both sides share: TLS 1.2 or later (RFC 8996 retired 1.0 and
 * 1.1), no renegotiation (Trio's test_renegotiation_* expect the peer's
 * attempt to fail), no compression (CRIME). */
static int context_new(const SSL_METHOD *method, ctrio_tls_context **out)
{
    *out = NULL;
    ctrio_tls_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -ENOMEM;
    ctx->ssl_ctx = SSL_CTX_new(method);
    if (!ctx->ssl_ctx) {
        free(ctx);
        return ctrio__tls_queue_error(-ENOMEM);
    }
    atomic_init(&ctx->refs, 1);
    /* made here, not at the first stream: a context may be shared by the
     * runs of several threads */
    ctx->bio_method = ctrio__tls_bio_method_new();
    if (!ctx->bio_method) {
        SSL_CTX_free(ctx->ssl_ctx);
        free(ctx);
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* records may be written from a buffer that moved since the last try */
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    *out = ctx;
    return 0;
}

int ctrio_tls_client_context(ctrio_tls_context **out)
{
    if (!out)
        return -EINVAL;
    int rc = context_new(TLS_client_method(), out);
    if (rc < 0)
        return rc;
    SSL_CTX *c = (*out)->ssl_ctx;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    /* The system trust store. A machine without one verifies nothing
     * successfully: every handshake fails with CTRIO_ETLS_VERIFY, which is
     * the safe way to fail. */
    SSL_CTX_set_default_verify_paths(c);
    ERR_clear_error();
    return 0;
}

int ctrio_tls_server_context(const char *cert_chain_file, const char *key_file,
                             ctrio_tls_context **out)
{
    if (!out || (!cert_chain_file) != (!key_file))
        return -EINVAL;
    int rc = context_new(TLS_server_method(), out);
    if (rc < 0)
        return rc;
    if (!cert_chain_file)
        return 0;
    SSL_CTX *c = (*out)->ssl_ctx;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(c, cert_chain_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c) != 1) {
        rc = ctrio__tls_queue_error(-EINVAL);
        ctrio_tls_context_free(*out);
        *out = NULL;
    }
    return rc;
}

int ctrio_tls_context_load_ca(ctrio_tls_context *ctx, const char *ca_file)
{
    if (!ctx || !ca_file)
        return -EINVAL;
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL) != 1)
        return ctrio__tls_queue_error(-EINVAL);
    return 0;
}

/* The server's choice: the first of its own names that the client offers
 * (SSL_select_next_proto walks the server's list first). No overlap: go on
 * without ALPN, as Python's ssl does, rather than fail the handshake. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    ctrio_tls_context *ctx = arg;
    unsigned char *chosen;
    if (!ctx->alpn ||
        SSL_select_next_proto(&chosen, outlen, ctx->alpn, (unsigned)ctx->alpn_len, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

int ctrio_tls_context_set_alpn(ctrio_tls_context *ctx, const char *const *protos, size_t n)
{
    if (!ctx || (!protos && n))
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = protos[i] ? strlen(protos[i]) : 0;
        if (l == 0 || l > 255)
            return -EINVAL;
        len += 1 + l;
    }
    if (len > 0xffff)
        return -EINVAL;
    unsigned char *wire = NULL;
    if (n) {
        wire = malloc(len);
        if (!wire)
            return -ENOMEM;
        unsigned char *p = wire;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(protos[i]);
            *p++ = (unsigned char)l;
            memcpy(p, protos[i], l);
            p += l;
        }
    }
    /* a client offers the list (0 is success here, unlike the rest of
     * OpenSSL); a server answers from it */
    if (SSL_CTX_set_alpn_protos(ctx->ssl_ctx, wire, (unsigned)len) != 0) {
        free(wire);
        return -ENOMEM;
    }
    free(ctx->alpn);
    ctx->alpn = wire;
    ctx->alpn_len = len;
    SSL_CTX_set_alpn_select_cb(ctx->ssl_ctx, n ? select_alpn : NULL, ctx);
    return 0;
}

struct ssl_ctx_st *ctrio_tls_context_ssl_ctx(ctrio_tls_context *ctx)
{
    return ctx ? ctx->ssl_ctx : NULL;
}

void ctrio__tls_context_ref(ctrio_tls_context *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void ctrio_tls_context_free(ctrio_tls_context *ctx)
{
    if (!ctx || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    if (ctx->bio_method)
        BIO_meth_free(ctx->bio_method);
    free(ctx->alpn);
    free(ctx);
}
