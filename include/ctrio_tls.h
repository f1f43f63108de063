/*
 * ctrio_tls.h — TLS streams: Trio's SSLStream, SSLListener,
 * open_ssl_over_tcp_stream and serve_ssl_over_tcp, on OpenSSL 3.
 *
 * A separate library (libctrio_tls, pkg-config ctrio-tls), so that a program
 * without TLS never links OpenSSL. Like Trio's SSLObject over two MemoryBIOs,
 * a TLS stream runs OpenSSL sans-I/O over memory buffers, so it wraps any
 * ctrio_stream: a socket stream, a memory stream in a test, another TLS
 * stream (TLS through an HTTPS proxy).
 *
 * The conventions of ctrio.h hold here (negative returns, checkpoints, the
 * NULL rule). The TLS failures have codes of their own, named by
 * ctrio_strerror: CTRIO_ETLS_VERIFY, CTRIO_ETLS_PROTOCOL,
 * CTRIO_ETLS_TRUNCATED (ctrio.h); ctrio_tls_stream_error gives OpenSSL's
 * reason for the last one.
 *
 * Threads: a context may be shared by the runs of several threads (its
 * reference count is atomic; do not change it while another thread's
 * streams use it); a stream belongs to the run that made it.
 */
#ifndef CTRIO_TLS_H
#define CTRIO_TLS_H

#include "ctrio.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct ssl_st;     /* OpenSSL's SSL */

/* ------------------------------------------------------------------------ */
/* Contexts (Python's ssl.SSLContext): settings shared by many streams      */
/* ------------------------------------------------------------------------ */

/* A context wraps one SSL_CTX and is reference-counted: every stream and
 * listener made from it keeps it alive, so ctrio_tls_context_free may be
 * called as soon as they are made. A failure leaves OpenSSL's own reasons in
 * its per-thread error queue (ERR_get_error) as well as returning a code:
 * -ENOENT, -EACCES... for files, -EINVAL for bad PEM or a key that does not
 * match, -ENOMEM. */
typedef struct ctrio_tls_context ctrio_tls_context;

/* ssl.create_default_context(): verify the peer's certificate chain against
 * the system trust store (Debian's ca-certificates) and its name against the
 * stream's server_hostname; TLS 1.2 or later; no renegotiation; no
 * compression. *out gets a context with one reference. Needs no run; not a
 * checkpoint. Returns 0, -EINVAL for a NULL out, -ENOMEM. A machine without
 * a trust store verifies no peer (handshakes fail with CTRIO_ETLS_VERIFY). */
CTRIO_API int ctrio_tls_client_context(ctrio_tls_context **out);
/* A server context with a certificate chain (PEM: the leaf first, then its
 * intermediates) and its private key (PEM). TLS 1.2 or later; no
 * renegotiation; no compression; the peer is not asked for a certificate.
 * Both files NULL: a context with no certificate yet, to be given one through
 * ctrio_tls_context_ssl_ctx or ctrio_tls_test_cert_use (testing). */
CTRIO_API int ctrio_tls_server_context(const char *cert_chain_file, const char *key_file,
                                       ctrio_tls_context **out);
/* load_verify_locations(cafile=...): trust the CA certificates of ca_file
 * (PEM) too, beside the system's, for the streams made from ctx afterwards.
 * Needs no run; not a checkpoint (it reads the file at once). Returns 0;
 * -ENOENT, -EACCES... for a file that cannot be read; -EINVAL for one with no
 * certificate, or NULL arguments. */
CTRIO_API int ctrio_tls_context_load_ca(ctrio_tls_context *ctx, const char *ca_file);
/* ALPN (RFC 7301). A client offers protos in this order; a server picks the
 * first of its own list that the client offers; with no overlap the
 * handshake goes on without ALPN. Each name is 1 to 255 bytes (else -EINVAL);
 * n = 0 clears the list. */
CTRIO_API int ctrio_tls_context_set_alpn(ctrio_tls_context *ctx, const char *const *protos,
                                         size_t n);
/* The SSL_CTX, for every setting this header does not name (ciphers, client
 * certificates, SSL_CTX_set_verify(SSL_VERIFY_NONE, ...) to verify nothing).
 * Change it before making streams from the context. Returns the context's
 * SSL_CTX, owned by ctx (never free it), or NULL for NULL. Not a checkpoint.
 * Settings that contradict this header's (a TLS version below 1.2) are at the
 * caller's risk. */
CTRIO_API struct ssl_ctx_st *ctrio_tls_context_ssl_ctx(ctrio_tls_context *ctx);
/* Drop the caller's reference: the context is freed once the streams and
 * listeners made from it (each holds a reference) are closed, so it may be
 * called as soon as they are made. Any thread; not a checkpoint; NULL does
 * nothing. Nothing to return. */
CTRIO_API void ctrio_tls_context_free(ctrio_tls_context *ctx);

/* ------------------------------------------------------------------------ */
/* Streams (trio.SSLStream)                                                  */
/* ------------------------------------------------------------------------ */

#define CTRIO_TLS_SERVER 1           /* play the server side of the handshake */
#define CTRIO_TLS_HTTPS_COMPATIBLE 2 /* Trio's https_compatible=True */

/* Wrap transport in TLS. The TLS stream owns the transport from then on
 * (closing one closes the other; on failure it stays the caller's). A client
 * gives server_hostname: it is sent as SNI (unless it is an IP address) and
 * the peer's certificate must match it (DNS name or IP address). NULL is
 * allowed only when the context verifies nothing (-EINVAL otherwise).
 * Not a checkpoint; the handshake happens on the first receive or send, or
 * at ctrio_tls_stream_handshake.
 *
 * The result answers the calls of ctrio.h's section 7:
 *  - ctrio_stream_receive_some: decrypted bytes; 0 once the peer sent
 *    close_notify. Bytes already decrypted and buffered are returned without
 *    touching the transport. Cancelling it after the handshake loses nothing.
 *    The transport's EOF without close_notify is CTRIO_ETLS_TRUNCATED, or 0
 *    with CTRIO_TLS_HTTPS_COMPATIBLE.
 *  - ctrio_stream_send_all: whole records, in as few transport sends as it
 *    can (up to 256 KiB of records per send).
 *  - ctrio_stream_send_eof: -EOPNOTSUPP (TLS cannot half-close).
 *  - ctrio_stream_wait_send_all_might_not_block: the transport's.
 *  - ctrio_stream_close: in standards mode sends close_notify if the
 *    handshake is done and no other task is sending (waiting at most 5
 *    seconds for the transport to take it, as Go's crypto/tls), then closes
 *    the transport. No close_notify with CTRIO_TLS_HTTPS_COMPATIBLE, after a
 *    failure, or before any handshake (then none is performed).
 * One receiver and one sender may run at once; a second concurrent receive
 * or send (wait_send_all_might_not_block counts as a send) gets -EBUSY.
 * A TLS failure, a failed transport send, or any failure or cancellation
 * during the handshake or a send_all breaks the stream: the call returns its
 * error and every later call but close returns -EPIPE (Trio's
 * BrokenResourceError). A failed or cancelled transport receive after the
 * handshake breaks nothing (the call returns the transport's error). A call
 * cancelled before it starts does nothing. */
CTRIO_API int ctrio_tls_stream_new(ctrio_stream *transport, ctrio_tls_context *ctx,
                                   const char *server_hostname, int flags, ctrio_stream **out);
/* do_handshake: run the handshake now (to look at the peer's certificate
 * before talking). If another task's handshake is running, wait for it;
 * once done, return 0 at once (still a checkpoint). -EINVAL for a stream
 * that is not TLS. */
CTRIO_API int ctrio_tls_stream_handshake(ctrio_stream *s);
/* SSLStream.selected_alpn_protocol(): returns the protocol ALPN selected
 * (NUL-terminated, owned by the stream), or NULL: none selected, before the
 * handshake, or s is not a TLS stream. Not a checkpoint; to have an answer
 * before talking, call ctrio_tls_stream_handshake first. */
CTRIO_API const char *ctrio_tls_stream_alpn(ctrio_stream *s);
/* SSLStream.version(): returns "TLSv1.3" or "TLSv1.2" (a static string)
 * once the handshake has completed; NULL before that, or when s is not a
 * TLS stream. Not a checkpoint; ctrio_tls_stream_handshake makes sure the
 * handshake is done. */
CTRIO_API const char *ctrio_tls_stream_version(ctrio_stream *s);
/* SSLStream.transport_stream: the stream this one wraps (e.g. to read the
 * peer's address through ctrio_socket_stream_socket); NULL once unwrapped
 * or for a stream that is not TLS. Use it for queries only: bytes read or
 * written on it directly would corrupt the TLS stream. */
CTRIO_API ctrio_stream *ctrio_tls_stream_transport(ctrio_stream *s);
/* Returns the stream's OpenSSL SSL object, for what this header does not
 * name (the peer certificate: SSL_get1_peer_certificate, the cipher...);
 * NULL when s is not a TLS stream. Owned by the stream: never free it; do
 * not read or write through it, nor change its BIOs. Not a checkpoint. */
CTRIO_API struct ssl_st *ctrio_tls_stream_ssl(ctrio_stream *s);
/* OpenSSL's reason for this stream's last TLS failure, such as
 * "certificate verify failed: hostname mismatch" or "tlsv1 alert unknown ca";
 * NULL if none. Valid until the stream's next call or close. */
CTRIO_API const char *ctrio_tls_stream_error(ctrio_stream *s);
/* trio's SSLStream.unwrap: send close_notify, wait for the peer's, then
 * give back the transport (*transport) and the bytes that arrived after the
 * peer's close_notify (up to cap into trailing; *trailing_len says how many;
 * more than cap: -ENOBUFS after giving back everything, the extra bytes
 * lost). The TLS stream is freed: the handle is dead, as after close. On
 * failure the stream is broken, not freed (close it). Needs both the
 * receive and the send side: -EBUSY if another task uses either. */
CTRIO_API int ctrio_tls_stream_unwrap(ctrio_stream *s, ctrio_stream **transport, void *trailing,
                                      size_t cap, size_t *trailing_len);

/* trio.open_ssl_over_tcp_stream: ctrio_open_tcp_stream (happy eyeballs),
 * then a client TLS stream for host over it (ctx NULL: a default client
 * context, made for this call: pass one to share its trust store's parsing
 * between connections). As in Trio the handshake happens at the first
 * receive or send: call ctrio_tls_stream_handshake to have it now. */
CTRIO_API int ctrio_open_tls_over_tcp_stream(const char *host, int port, ctrio_tls_context *ctx,
                                             int flags, ctrio_stream **out);

/* ------------------------------------------------------------------------ */
/* Listeners and servers (trio.SSLListener, trio.serve_ssl_over_tcp)         */
/* ------------------------------------------------------------------------ */

/* Wrap every stream that transport accepts in a server TLS stream (flags:
 * CTRIO_TLS_HTTPS_COMPATIBLE; CTRIO_TLS_SERVER is implied). The handshake
 * runs later, in the task that uses the stream (the handler's, under
 * ctrio_serve_listeners), so a client that stalls or fails its handshake
 * stops no one else. The TLS listener owns transport and keeps ctx alive.
 * Not a checkpoint. Returns 0 and *out (close it with ctrio_listener_close,
 * which closes transport too); -EINVAL for NULL arguments or unknown flags
 * (transport stays the caller's); -ENOMEM. */
CTRIO_API int ctrio_tls_listener_new(ctrio_listener *transport, ctrio_tls_context *ctx, int flags,
                                     ctrio_listener **out);
/* The listener a TLS listener wraps (e.g. to read a port 0 listener's
 * port, through ctrio_socket_listener_socket); the TLS listener still owns
 * it. Returns NULL for another kind of listener, a closed one, or NULL. Not
 * a checkpoint. */
CTRIO_API ctrio_listener *ctrio_tls_listener_transport(ctrio_listener *l);
/* trio.serve_ssl_over_tcp: ctrio_open_tcp_listeners, a TLS listener over
 * each, ctrio_serve_listeners. Reports the listener set through
 * ctrio_task_started like ctrio_serve_tcp. Each handler gets a TLS stream
 * whose handshake runs at its first receive or send. Runs until cancelled
 * (then returns -ECANCELED) or a handler fails (its error); -EINVAL for a
 * NULL h or ctx or unknown flags; an error opening the listeners at once. */
CTRIO_API int ctrio_serve_tls_over_tcp(ctrio_stream_handler h, void *arg, int port,
                                       const char *host, ctrio_tls_context *ctx, int flags,
                                       int backlog);

/* ------------------------------------------------------------------------ */
/* Testing support (Python's trustme): certificates minted in memory         */
/* ------------------------------------------------------------------------ */

/* A throwaway certificate authority (ECDSA P-256 key, self-signed, valid from
 * a day ago for ten years), so that tests need no committed keys. */
typedef struct ctrio_tls_test_ca ctrio_tls_test_ca;
/* trustme.CA(): *out gets a new throwaway CA; ctrio_tls_test_ca_free frees
 * it (NULL: nothing). Needs no run; not a checkpoint. Returns 0, -EINVAL for
 * a NULL out, -ENOMEM (key or certificate generation failed). */
CTRIO_API int ctrio_tls_test_ca_new(ctrio_tls_test_ca **out);
CTRIO_API void ctrio_tls_test_ca_free(ctrio_tls_test_ca *ca);
/* trustme's CA.cert_pem: returns the CA's certificate in PEM
 * (NUL-terminated; owned by ca, valid until ctrio_tls_test_ca_free), for a
 * peer that is not ours (Python's ssl, curl); NULL for NULL. Not a
 * checkpoint. */
CTRIO_API const char *ctrio_tls_test_ca_pem(const ctrio_tls_test_ca *ca);
/* trustme's CA.configure_trust: ctx (a client context, or a server one
 * that verifies client certificates) trusts certificates that ca issued,
 * beside what it trusted already. Returns 0 (trusting the same CA twice
 * too), -EINVAL for NULL. Needs no run; not a checkpoint. */
CTRIO_API int ctrio_tls_test_ca_trust(const ctrio_tls_test_ca *ca, ctrio_tls_context *ctx);

/* A leaf certificate issued by a test CA (trustme's LeafCert). */
typedef struct ctrio_tls_test_cert ctrio_tls_test_cert;
typedef struct ctrio_tls_test_cert_options {
    /* validity relative to now, in seconds; both 0: from a day ago for a
     * year. E.g. not_before -2 days, not_after -1 day: an expired one. */
    double not_before, not_after;
    void *reserved[CTRIO_RESERVED_WORDS]; /* 0 (ctrio.h, "Room to change") */
} ctrio_tls_test_cert_options;
/* names: DNS names ("localhost", "*.example.org") or IP addresses
 * ("127.0.0.1", "::1"), at least one; the first is also the subject's CN.
 * opts may be NULL. */
CTRIO_API int ctrio_tls_test_cert_new(ctrio_tls_test_ca *ca, const char *const *names, size_t n,
                                      const ctrio_tls_test_cert_options *opts,
                                      ctrio_tls_test_cert **out);
CTRIO_API void ctrio_tls_test_cert_free(ctrio_tls_test_cert *c);
/* PEM texts (NUL-terminated; owned by c): the chain (leaf, then the CA) and
 * the private key (PKCS#8, unencrypted). Each returns its text, valid until
 * ctrio_tls_test_cert_free, or NULL for NULL; for peers that take PEM from
 * memory. Not checkpoints. */
CTRIO_API const char *ctrio_tls_test_cert_chain_pem(const ctrio_tls_test_cert *c);
CTRIO_API const char *ctrio_tls_test_cert_key_pem(const ctrio_tls_test_cert *c);
/* trustme's LeafCert.configure_cert: ctx (a server context, or a client one
 * for client certificates) presents this certificate and key, with the CA
 * as its chain. Returns 0, -EINVAL for NULL or a context OpenSSL refuses it
 * to (its reasons in OpenSSL's error queue). Needs no run; not a checkpoint. */
CTRIO_API int ctrio_tls_test_cert_use(const ctrio_tls_test_cert *c, ctrio_tls_context *ctx);
/* Write dir/cert.pem (the chain), dir/key.pem (mode 0600) and dir/ca.pem,
 * for tools that take files (openssl s_server, curl --cacert); existing
 * files are replaced, key.pem's mode set to 0600 even then. Needs no run;
 * not a checkpoint (plain blocking
 * writes). Returns 0, open(2)'s or write(2)'s -errno, -ENAMETOOLONG,
 * -EINVAL for NULL. */
CTRIO_API int ctrio_tls_test_cert_write(const ctrio_tls_test_cert *c, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
