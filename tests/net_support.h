/*
 * net_support.h — what the socket, stream and listener test programs share
 * (test_io, test_socket, test_stream, test_listeners, test_serve; added to
 * them with CTRIO_TEST_EXTRA_<name> in tests/CMakeLists.txt): filling and
 * draining a raw socket, the IPv6 probe, exact receives, a private directory
 * for Unix socket paths, and the ctrio_socket_ops entries that the fake
 * sockets (ctrio_socket_new_custom) of several programs have in common.
 */
#ifndef CTRIO_TEST_NET_SUPPORT_H
#define CTRIO_TEST_NET_SUPPORT_H

#include "support.h"

#include <stdbool.h>
#include <sys/socket.h>

/* Trio's fill_socket / drain_socket: raw non-blocking send/recv on a
 * descriptor until EAGAIN (drain: or EOF). Return the number of bytes moved. */
size_t fill_socket(int fd);
size_t drain_socket(int fd);

/* Whether this host can bind an IPv6 loopback socket (probed once). */
bool have_ipv6_loopback(void);

/* Receive exactly n bytes (bounded by the caller's scopes). */
void recv_exactly(ctrio_stream *s, void *buf, size_t n);

/* Whether something (a file, a socket, a dangling link) is at path. */
bool exists(const char *path);

/* A private temporary directory for Unix socket paths:
 * /tmp/ctrio-<name>-XXXXXX; tmpdir_remove unlinks path and other, then
 * removes the directory (which must then be empty). */
typedef struct tmpdir {
    char dir[64];
    char path[128];  /* dir/sock */
    char other[128]; /* dir/other */
} tmpdir;
void tmpdir_make(tmpdir *t, const char *name);
void tmpdir_remove(tmpdir *t);

/* ---- pieces of fake sockets (ctrio_socket_ops) ----------------------------- */

/* getsockopt of a fake socket: SO_ACCEPTCONN reads `listening`; any other
 * option is -ENOPROTOOPT. */
int fake_sockopt_acceptconn(int level, int name, void *val, socklen_t *len, bool listening);

/* A getsockopt entry for a fake listening socket: SO_ACCEPTCONN is always 1
 * (what ctrio_socket_listener_new checks, as SocketListener.__init__ does). */
int fake_getsockopt_listening(ctrio_socket *s, int level, int name, void *val, socklen_t *len);

/* A setsockopt entry that accepts every option and does nothing. */
int fake_setsockopt_ignore(ctrio_socket *s, int level, int name, const void *val, socklen_t len);

#endif
