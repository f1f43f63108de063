/*
 * error.c — ctrio_strerror: a text for every return code of the library.
 *
 * A -errno value may come from the kernel as well as from the library (EPERM
 * from socket(AF_PACKET), ETIMEDOUT from connect, EPIPE from send), so its
 * text is the system's: a library meaning there would misdescribe the
 * kernel's. Only the codes the library alone produces (CTRIO_EAI_*) get the
 * library's text. Every text is a static string: the call is thread-safe and
 * two results may be printed side by side.
 */
#include "internal.h"

#include <netdb.h>

static const char *library_text(int rc)
{
    switch (rc) {
    case CTRIO_EAI_BADFLAGS: return "CTRIO_EAI_BADFLAGS: bad value for ai_flags";
    case CTRIO_EAI_NONAME: return "CTRIO_EAI_NONAME: name or service not known";
    case CTRIO_EAI_AGAIN: return "CTRIO_EAI_AGAIN: temporary failure in name resolution";
    case CTRIO_EAI_FAIL: return "CTRIO_EAI_FAIL: non-recoverable failure in name resolution";
    case CTRIO_EAI_NODATA: return "CTRIO_EAI_NODATA: no address associated with name";
    case CTRIO_EAI_FAMILY: return "CTRIO_EAI_FAMILY: address family not supported";
    case CTRIO_EAI_SOCKTYPE: return "CTRIO_EAI_SOCKTYPE: socket type not supported";
    case CTRIO_EAI_SERVICE: return "CTRIO_EAI_SERVICE: service not supported for socket type";
    case CTRIO_EAI_ADDRFAMILY: return "CTRIO_EAI_ADDRFAMILY: address family for name not supported";
    case CTRIO_EAI_MEMORY: return "CTRIO_EAI_MEMORY: memory allocation failure";
    case CTRIO_EAI_OVERFLOW: return "CTRIO_EAI_OVERFLOW: argument buffer overflow";
    case CTRIO_EAI_SYSTEM: return "CTRIO_EAI_SYSTEM: system error (returned as -errno instead)";
    case CTRIO_EAI_IDN_ENCODE: return "CTRIO_EAI_IDN_ENCODE: host name cannot be IDNA-encoded";
    case CTRIO_ETLS_VERIFY: return "CTRIO_ETLS_VERIFY: TLS peer certificate or name did not verify";
    case CTRIO_ETLS_PROTOCOL: return "CTRIO_ETLS_PROTOCOL: TLS handshake failure, alert or bad record";
    case CTRIO_ETLS_TRUNCATED: return "CTRIO_ETLS_TRUNCATED: TLS transport ended without close_notify";
    default: return NULL;
    }
}

/* glibc >= 2.32 has the text without a buffer; before it, strerror_r into a
 * per-thread one (the GNU strerror_r returns static text for known codes). */
static const char *errno_text(int e)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
    const char *s = strerrordesc_np(e);
    return s ? s : "unknown error code";
#else
    static __thread char buf[64];
    return strerror_r(e, buf, sizeof buf);
#endif
}

const char *ctrio_strerror(int rc)
{
    if (rc >= 0)
        return "success";
    const char *s = library_text(rc);
    if (s)
        return s;
    if (rc > -4096)
        return errno_text(-rc);
    return "unknown error code";
}
