/*
 * error.c — ctrio_strerror: a name for every return code of the library.
 */
#include "internal.h"

#include <netdb.h>

static const char *eai_text(int rc)
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
    case CTRIO_EAI_IDN_ENCODE: return "CTRIO_EAI_IDN_ENCODE: host name cannot be IDNA-encoded";
    default: return NULL;
    }
}

const char *ctrio_strerror(int rc)
{
    if (rc >= 0)
        return "success";
    const char *s = eai_text(rc);
    if (s)
        return s;
    switch (rc) {
    case -ECANCELED: return "ECANCELED: cancelled (unwind and return it)";
    case -EBADF: return "EBADF: closed (by this side), or not an open descriptor";
    case -EBUSY: return "EBUSY: another task is already waiting for this";
    case -ETIMEDOUT: return "ETIMEDOUT: too slow (a fail_* deadline passed)";
    case -EPERM: return "EPERM: called in the wrong state or place";
    case -EWOULDBLOCK: return "EWOULDBLOCK: would block";
    case -EPIPE: return "EPIPE: broken pipe (the other side is gone)";
    case -ESHUTDOWN: return "ESHUTDOWN: the run has ended";
    default: break;
    }
    if (rc > -4096)
        return strerror(-rc); /* glibc: static text for every known errno */
    return "unknown ctrio error code";
}
