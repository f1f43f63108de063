/*
 * resolve.c — name lookup: ctrio_getaddrinfo, ctrio_getnameinfo,
 * ctrio_getprotobyname (trio.socket.getaddrinfo & co.).
 *
 * getaddrinfo first asks the system with AI_NUMERICHOST|AI_NUMERICSERV
 * added, in the calling thread: a numeric host and service are answered at
 * once, with no thread and no custom resolver, as in Trio. Only a failure
 * that a real lookup could fix (EAI_NONAME, and the caller did not ask for
 * numeric-only itself) goes on to the custom resolver, or to a worker thread
 * that a cancel abandons. Trio starts that thread even when it cannot help
 * (Trio #1249); we do not.
 *
 * Name lookups take their worker threads from their own limiter (20 per run),
 * so that slow DNS cannot starve other work sent to threads (Trio #10).
 *
 * Every result is copied into one block of our own, so ctrio_freeaddrinfo is
 * a free() whatever produced it (the system, or a custom resolver, whose own
 * freeaddrinfo is called right after the copy).
 */
#include "net.h"

#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#ifndef AI_NUMERICSERV /* Trio #3133: old systems may lack it */
#define AI_NUMERICSERV 0
#endif

static int map_eai(int e, int err)
{
    switch (e) {
    case 0:
        return 0;
    case EAI_SYSTEM:
        return err ? -err : -EIO;
    case EAI_BADFLAGS:
    case EAI_NONAME:
    case EAI_AGAIN:
    case EAI_FAIL:
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_SERVICE:
    case EAI_MEMORY:
    case EAI_OVERFLOW:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return CTRIO_EAI_BASE + e; /* glibc's EAI_* are small negative numbers */
#ifdef EAI_IDN_ENCODE
    case EAI_IDN_ENCODE:
        return CTRIO_EAI_IDN_ENCODE;
#endif
    default:
        return CTRIO_EAI_FAIL;
    }
}

/* Copy a result list into one allocation that free() releases. */
static int copy_addrinfo(const struct addrinfo *src, struct addrinfo **out)
{
    size_t size = 0;
    for (const struct addrinfo *a = src; a; a = a->ai_next) {
        size += sizeof(struct addrinfo) + a->ai_addrlen;
        if (a->ai_canonname)
            size += strlen(a->ai_canonname) + 1;
        size = (size + 15) & ~(size_t)15;
    }
    *out = NULL;
    if (!src)
        return CTRIO_EAI_NONAME;
    char *block = malloc(size);
    if (!block)
        return -ENOMEM;
    char *p = block;
    struct addrinfo *prev = NULL;
    for (const struct addrinfo *a = src; a; a = a->ai_next) {
        struct addrinfo *n = (struct addrinfo *)p;
        p += sizeof *n;
        *n = *a;
        n->ai_next = NULL;
        n->ai_addr = (struct sockaddr *)p;
        memcpy(p, a->ai_addr, a->ai_addrlen);
        p += a->ai_addrlen;
        if (a->ai_canonname) {
            size_t l = strlen(a->ai_canonname) + 1;
            memcpy(p, a->ai_canonname, l);
            n->ai_canonname = p;
            p += l;
        }
        p = block + (((size_t)(p - block) + 15) & ~(size_t)15);
        if (prev)
            prev->ai_next = n;
        prev = n;
    }
    *out = (struct addrinfo *)block;
    return 0;
}

void ctrio_freeaddrinfo(struct addrinfo *res)
{
    free(res);
}

static bool has_non_ascii(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* IDNA 2008 with UTS-46 mapping, as Trio (idna.encode(host, uts46=True)),
 * through libidn2, loaded when first needed so that it is not a build
 * dependency. glibc's AI_IDN would need the host in the locale's charset;
 * ours is always UTF-8. */
typedef int (*idn2_to_ascii_8z_fn)(const char *in, char **out, int flags);
static idn2_to_ascii_8z_fn idn2_encode;
static void (*idn2_release)(void *);
static pthread_once_t idn2_once = PTHREAD_ONCE_INIT;

static void idn2_load(void)
{
    void *h = dlopen("libidn2.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    idn2_encode = (idn2_to_ascii_8z_fn)dlsym(h, "idn2_to_ascii_8z");
    idn2_release = (void (*)(void *))dlsym(h, "idn2_free");
}

#define IDN2_NFC_INPUT 1
#define IDN2_NONTRANSITIONAL 8

/* Encode a non-ASCII UTF-8 host name to its ASCII (punycode) form. */
static int idna_encode(const char *host, char **out)
{
    pthread_once(&idn2_once, idn2_load);
    if (!idn2_encode) {
        ctrio__misuse("ctrio_getaddrinfo: \"%s\" needs IDNA encoding and libidn2.so.0 "
                      "is not installed",
                      host);
        return CTRIO_EAI_IDN_ENCODE;
    }
    char *enc = NULL;
    if (idn2_encode(host, &enc, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != 0 || !enc)
        return CTRIO_EAI_IDN_ENCODE;
    *out = strdup(enc);
    if (idn2_release)
        idn2_release(enc);
    return *out ? 0 : -ENOMEM;
}

/* ---- the lookup in a worker thread ------------------------------------ */

typedef struct gai_job {
    char *host, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res; /* the system's */
    int e, err;           /* getaddrinfo's result, and errno for EAI_SYSTEM */
} gai_job;

static void gai_job_free(gai_job *j)
{
    if (j->res)
        freeaddrinfo(j->res);
    free(j->host);
    free(j->service);
    free(j);
}

static int gai_in_thread(void *p)
{
    gai_job *j = p;
    j->e = getaddrinfo(j->host, j->service, j->has_hints ? &j->hints : NULL, &j->res);
    j->err = errno;
    if (j->e)
        j->res = NULL;
    return 0;
}

static void gai_abandoned(void *p, int rc)
{
    (void)rc;
    gai_job_free(p);
}

static char *dup_or_null(const char *s, bool *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = true;
    return d;
}

static int gai_slow(ctrio__run *r, const char *host, const char *service,
                    const struct addrinfo *hints, struct addrinfo **res)
{
    const ctrio__net_run *net = ctrio__net_run_find(r);
    const ctrio_hostname_resolver *hr = net ? net->hostname_resolver : NULL;
    if (hr && hr->getaddrinfo) {
        struct addrinfo *theirs = NULL;
        int rc = hr->getaddrinfo(hr->ctx, host, service, hints, &theirs);
        if (rc == 0) {
            rc = copy_addrinfo(theirs, res);
            if (hr->freeaddrinfo && theirs)
                hr->freeaddrinfo(hr->ctx, theirs);
        }
        return rc;
    }
    bool fail = false;
    gai_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->host = dup_or_null(host, &fail);
    j->service = dup_or_null(service, &fail);
    if (hints) {
        j->hints = *hints;
        j->hints.ai_addr = NULL;
        j->hints.ai_canonname = NULL;
        j->hints.ai_next = NULL;
        j->has_hints = true;
    }
    if (fail) {
        gai_job_free(j);
        return -ENOMEM;
    }
    bool abandoned;
    int rc = ctrio__to_thread(gai_in_thread, j, CTRIO_ABANDON_ON_CANCEL, gai_abandoned,
                              &r->dns_limiter, &abandoned);
    if (abandoned)
        return rc; /* the job is the worker's to free */
    if (rc == 0)
        rc = j->e == 0 ? copy_addrinfo(j->res, res) : map_eai(j->e, j->err);
    gai_job_free(j);
    return rc;
}

static int lookup(ctrio__task *t, const char *host, const char *service,
                  const struct addrinfo *hp, int asked, struct addrinfo **res);

int ctrio_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                      struct addrinfo **res)
{
    ctrio__task *t = ctrio__need_task("ctrio_getaddrinfo");
    if (!t)
        return -EPERM;
    if (!res)
        return -EINVAL;
    *res = NULL;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    if (!host && !service) { /* always EAI_NONAME: no thread can help */
        ctrio_cancel_shielded_checkpoint();
        return CTRIO_EAI_NONAME;
    }
    struct addrinfo h;
    memset(&h, 0, sizeof h);
    if (hints) {
        h.ai_flags = hints->ai_flags;
        h.ai_family = hints->ai_family;
        h.ai_socktype = hints->ai_socktype;
        h.ai_protocol = hints->ai_protocol;
    }
    int asked = h.ai_flags;
    char *ascii = NULL;
    if (has_non_ascii(host)) {
        rc = idna_encode(host, &ascii);
        if (rc < 0) {
            ctrio_cancel_shielded_checkpoint();
            return rc;
        }
        host = ascii;
    }
    rc = lookup(t, host, service, &h, asked, res);
    free(ascii);
    return rc;
}

static int lookup(ctrio__task *t, const char *host, const char *service,
                  const struct addrinfo *hp, int asked, struct addrinfo **res)
{
    struct addrinfo h = *hp;
    int rc;
    struct addrinfo numeric = h;
    numeric.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    struct addrinfo *sys = NULL;
    int e = getaddrinfo(host, service, &numeric, &sys);
    int err = errno;
    bool numeric_only = (asked & AI_NUMERICHOST) && (asked & AI_NUMERICSERV || !service);
    if (e == 0 || e != EAI_NONAME || numeric_only) {
        rc = e == 0 ? copy_addrinfo(sys, res) : map_eai(e, err);
        if (sys)
            freeaddrinfo(sys);
        ctrio_cancel_shielded_checkpoint();
        return rc;
    }
    /* A real lookup. A checkpoint already happened (the cancel point above);
     * the slow path's thread wait (or the resolver) is the schedule point. */
    return gai_slow(t->run, host, service, &h, res);
}

/* ---- getnameinfo ---------------------------------------------------------- */

typedef struct gni_job {
    struct sockaddr_storage sa;
    socklen_t salen;
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    size_t hostlen, servlen;
    int flags, e, err;
} gni_job;

static int gni_in_thread(void *p)
{
    gni_job *j = p;
    j->e = getnameinfo((struct sockaddr *)&j->sa, j->salen, j->hostlen ? j->host : NULL,
                        (socklen_t)j->hostlen, j->servlen ? j->serv : NULL,
                        (socklen_t)j->servlen, j->flags);
    j->err = errno;
    return 0;
}

static void free_abandoned(void *p, int rc)
{
    (void)rc;
    free(p);
}

int ctrio_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, size_t hostlen,
                      char *serv, size_t servlen, int flags)
{
    ctrio__task *t = ctrio__need_task("ctrio_getnameinfo");
    if (!t)
        return -EPERM;
    if (!sa || salen > sizeof(struct sockaddr_storage) || (!host && hostlen) ||
        (!serv && servlen))
        return -EINVAL;
    int rc = ctrio_checkpoint_if_cancelled();
    if (rc < 0)
        return rc;
    const ctrio__net_run *net = ctrio__net_run_find(t->run);
    const ctrio_hostname_resolver *hr = net ? net->hostname_resolver : NULL;
    if (hr && hr->getnameinfo)
        return hr->getnameinfo(hr->ctx, sa, salen, host, hostlen, serv, servlen, flags);
    gni_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    memcpy(&j->sa, sa, salen);
    j->salen = salen;
    j->hostlen = hostlen < sizeof j->host ? hostlen : sizeof j->host;
    j->servlen = servlen < sizeof j->serv ? servlen : sizeof j->serv;
    j->flags = flags;
    bool abandoned;
    rc = ctrio__to_thread(gni_in_thread, j, CTRIO_ABANDON_ON_CANCEL, free_abandoned,
                          &t->run->dns_limiter, &abandoned);
    if (abandoned)
        return rc;
    if (rc == 0)
        rc = map_eai(j->e, j->err);
    if (rc == 0) {
        if (hostlen)
            memcpy(host, j->host, j->hostlen);
        if (servlen)
            memcpy(serv, j->serv, j->servlen);
    }
    free(j);
    return rc;
}

/* ---- getprotobyname -------------------------------------------------------- */

typedef struct proto_job {
    char name[64];
    int proto;
} proto_job;

static int proto_in_thread(void *p)
{
    proto_job *j = p;
    struct protoent pe, *res = NULL;
    char buf[1024];
    if (getprotobyname_r(j->name, &pe, buf, sizeof buf, &res) != 0 || !res)
        return -ENOENT;
    j->proto = res->p_proto;
    return 0;
}

int ctrio_getprotobyname(const char *name)
{
    ctrio__task *t = ctrio__need_task("ctrio_getprotobyname");
    if (!t)
        return -EPERM;
    if (!name)
        return -EINVAL;
    if (strlen(name) >= sizeof(((proto_job *)0)->name)) {
        /* no protocol has such a name; still a checkpoint, as every lookup */
        int rc = ctrio_checkpoint();
        return rc < 0 ? rc : -ENOENT;
    }
    proto_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    strcpy(j->name, name);
    bool abandoned;
    int rc = ctrio__to_thread(proto_in_thread, j, CTRIO_ABANDON_ON_CANCEL, free_abandoned,
                              &t->run->dns_limiter, &abandoned);
    if (abandoned)
        return rc;
    if (rc == 0)
        rc = j->proto;
    free(j);
    return rc;
}
