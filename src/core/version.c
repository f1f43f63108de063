/*
 * version.c — ctrio_version and ctrio_version_hex: the version of the
 * library itself, compiled in here from the header's macros, so that a
 * program can compare it with the CTRIO_VERSION_* it was built with (a
 * shared library may have been updated since; libuv's uv_version).
 */
#include "internal.h"

const char *ctrio_version(void)
{
    return CTRIO_VERSION_STRING;
}

unsigned ctrio_version_hex(void)
{
    return CTRIO_VERSION_HEX;
}
