/*
 * testing.c — certificates minted in memory for tests, as Python's trustme
 * (which Trio's test_ssl.py uses): a CA, leaf certificates it issues for
 * any names, trust and use them in contexts, or write them out as PEM files
 * for tools that take files.
 */
#include "tls.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

struct ctrio_tls_test_ca {
    EVP_PKEY *key;
    X509 *cert;
    char *pem;
};

struct ctrio_tls_test_cert {
    EVP_PKEY *key;
    X509 *cert;
    X509 *ca_cert; /* a reference to the issuer's, for chains */
    char *chain_pem, *key_pem, *ca_pem;
};

#define DAY (24L * 3600)

/* The text a memory BIO holds, NUL-terminated, in malloc'd memory. */
static char *bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    return s;
}

static char *cert_pem(X509 *c1, X509 *c2)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && PEM_write_bio_X509(b, c1) == 1 && (!c2 || PEM_write_bio_X509(b, c2) == 1))
        s = bio_text(b);
    BIO_free(b);
    return s;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1)
        s = bio_text(b);
    BIO_free(b);
    return s;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    int ok = ext && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -EINVAL;
}

/* A certificate for key, its validity from now + nb to now + na seconds,
 * subject CN cn, issued by issuer with issuer_key; issuer NULL: a
 * self-signed CA, else a server and client leaf for the names of san (a
 * subjectAltName value). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, long nb, long na, X509 *issuer,
                       EVP_PKEY *issuer_key, const char *san)
{
    X509 *c = X509_new();
    BIGNUM *serial = BN_new();
    bool ok = c && serial && X509_set_version(c, X509_VERSION_3) == 1 &&
              BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
              BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(c)) &&
              X509_gmtime_adj(X509_getm_notBefore(c), nb) &&
              X509_gmtime_adj(X509_getm_notAfter(c), na) && X509_set_pubkey(c, key) == 1 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "O", MBSTRING_UTF8,
                                         (const unsigned char *)"ctrio test", -1, -1, 0) == 1 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_UTF8,
                                         (const unsigned char *)cn, -1, -1, 0) == 1 &&
              X509_set_issuer_name(c, X509_get_subject_name(issuer ? issuer : c)) == 1 &&
              add_ext(c, issuer ? issuer : c, NID_subject_key_identifier, "hash") == 0 &&
              add_ext(c, issuer ? issuer : c, NID_authority_key_identifier, "keyid:always") == 0;
    BN_free(serial);
    if (ok && !issuer)
        ok = add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
             add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
    if (ok && issuer)
        ok = add_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(c, issuer, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(c, issuer, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
             add_ext(c, issuer, NID_subject_alt_name, san) == 0;
    if (ok && X509_sign(c, issuer_key, EVP_sha256()) <= 0)
        ok = false;
    if (!ok) {
        X509_free(c);
        c = NULL;
    }
    return c;
}

int ctrio_tls_test_ca_new(ctrio_tls_test_ca **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    ctrio_tls_test_ca *ca = calloc(1, sizeof *ca);
    if (!ca)
        return -ENOMEM;
    ca->key = EVP_EC_gen("P-256");
    if (ca->key)
        ca->cert = make_cert(ca->key, "ctrio test CA", -DAY, 3650 * DAY, NULL, ca->key, NULL);
    if (ca->cert)
        ca->pem = cert_pem(ca->cert, NULL);
    if (!ca->pem) {
        ctrio_tls_test_ca_free(ca);
        ERR_clear_error();
        return -ENOMEM;
    }
    *out = ca;
    return 0;
}

void ctrio_tls_test_ca_free(ctrio_tls_test_ca *ca)
{
    if (!ca)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca->pem);
    free(ca);
}

const char *ctrio_tls_test_ca_pem(const ctrio_tls_test_ca *ca)
{
    return ca ? ca->pem : NULL;
}

int ctrio_tls_test_ca_trust(const ctrio_tls_test_ca *ca, ctrio_tls_context *ctx)
{
    if (!ca || !ctx)
        return -EINVAL;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl_ctx);
    if (X509_STORE_add_cert(store, ca->cert) != 1) {
        ERR_clear_error(); /* e.g. trusted twice: already there */
    }
    return 0;
}

/* The subjectAltName value for names: "DNS:a,IP:b". */
static char *san_value(const char *const *names, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(names[i]) + 5;
    char *v = malloc(len);
    if (!v)
        return NULL;
    char *p = v;
    for (size_t i = 0; i < n; i++) {
        unsigned char a[16];
        bool ip = inet_pton(AF_INET, names[i], a) == 1 || inet_pton(AF_INET6, names[i], a) == 1;
        p += sprintf(p, "%s%s:%s", i ? "," : "", ip ? "IP" : "DNS", names[i]);
    }
    return v;
}

static bool valid_names(const char *const *names, size_t n)
{
    if (!names || n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!names[i] || !names[i][0] || strpbrk(names[i], ",\n"))
            return false; /* a comma would start another name in the SAN text */
    return true;
}

int ctrio_tls_test_cert_new(ctrio_tls_test_ca *ca, const char *const *names, size_t n,
                            const ctrio_tls_test_cert_options *opts, ctrio_tls_test_cert **out)
{
    if (out)
        *out = NULL;
    if (!ca || !out || !valid_names(names, n))
        return -EINVAL;
    double nb = -DAY, na = 365.0 * DAY;
    if (opts && (opts->not_before != 0 || opts->not_after != 0)) {
        nb = opts->not_before;
        na = opts->not_after;
        if (!(nb < na) || nb < (double)LONG_MIN || na > (double)LONG_MAX)
            return -EINVAL;
    }
    ctrio_tls_test_cert *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    char *san = san_value(names, n);
    c->key = san ? EVP_EC_gen("P-256") : NULL;
    if (c->key)
        c->cert = make_cert(c->key, names[0], (long)nb, (long)na, ca->cert, ca->key, san);
    free(san);
    if (c->cert && X509_up_ref(ca->cert) == 1) {
        c->ca_cert = ca->cert;
        c->chain_pem = cert_pem(c->cert, ca->cert);
        c->key_pem = key_pem(c->key);
        c->ca_pem = cert_pem(ca->cert, NULL);
    }
    if (!c->chain_pem || !c->key_pem || !c->ca_pem) {
        /* names OpenSSL refuses (a bad IP literal) fail here as well */
        int rc = c->cert ? -ENOMEM : -EINVAL;
        ctrio_tls_test_cert_free(c);
        ERR_clear_error();
        return rc;
    }
    *out = c;
    return 0;
}

void ctrio_tls_test_cert_free(ctrio_tls_test_cert *c)
{
    if (!c)
        return;
    EVP_PKEY_free(c->key);
    X509_free(c->cert);
    X509_free(c->ca_cert);
    free(c->chain_pem);
    free(c->key_pem);
    free(c->ca_pem);
    free(c);
}

const char *ctrio_tls_test_cert_chain_pem(const ctrio_tls_test_cert *c)
{
    return c ? c->chain_pem : NULL;
}

const char *ctrio_tls_test_cert_key_pem(const ctrio_tls_test_cert *c)
{
    return c ? c->key_pem : NULL;
}

int ctrio_tls_test_cert_use(const ctrio_tls_test_cert *c, ctrio_tls_context *ctx)
{
    if (!c || !ctx)
        return -EINVAL;
    SSL_CTX *sc = ctx->ssl_ctx;
    ERR_clear_error();
    if (SSL_CTX_use_certificate(sc, c->cert) != 1 || SSL_CTX_use_PrivateKey(sc, c->key) != 1 ||
        SSL_CTX_clear_chain_certs(sc) != 1 || SSL_CTX_add1_chain_cert(sc, c->ca_cert) != 1)
        return ctrio__tls_queue_error(-EINVAL);
    return 0;
}

static int write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text), off = 0;
    /* open's mode only applies to a new file: a key.pem left by an earlier
     * run with wider rights would keep them (test_tls's
     * test_context_files) */
    int rc = fchmod(fd, mode) < 0 ? -errno : 0;
    while (off < len && rc == 0) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            off += (size_t)w;
    }
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

int ctrio_tls_test_cert_write(const ctrio_tls_test_cert *c, const char *dir)
{
    if (!c || !dir)
        return -EINVAL;
    int rc = write_file(dir, "cert.pem", c->chain_pem, 0644);
    if (rc == 0)
        rc = write_file(dir, "key.pem", c->key_pem, 0600);
    if (rc == 0)
        rc = write_file(dir, "ca.pem", c->ca_pem, 0644);
    return rc;
}
