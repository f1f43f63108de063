/*
 * net_support.c — see net_support.h.
 */
#include "net_support.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

size_t fill_socket(int fd)
{
    static char buf[65536];
    size_t total = 0;
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 100000; i++) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            return total;
        }
        total += (size_t)n;
    }
    fail_msg("fill_socket: the socket never filled up");
    return total;
}

size_t drain_socket(int fd)
{
    static char buf[65536];
    size_t total = 0;
    for (int i = 0; i < 100000; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            return total;
        }
        if (n == 0)
            return total;
        total += (size_t)n;
    }
    fail_msg("drain_socket: the socket never emptied");
    return total;
}

bool have_ipv6_loopback(void)
{
    static int cached = -1;
    if (cached < 0) {
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_loopback;
        cached = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
    }
    return cached == 1;
}

void recv_exactly(ctrio_stream *s, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = ctrio_stream_receive_some(s, (char *)buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

void tmpdir_make(tmpdir *t, const char *name)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/ctrio-%s-XXXXXX", name);
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/sock", t->dir);
    snprintf(t->other, sizeof t->other, "%s/other", t->dir);
}

void tmpdir_remove(tmpdir *t)
{
    unlink(t->path);
    unlink(t->other);
    assert_int_equal(rmdir(t->dir), 0);
}

int fake_sockopt_acceptconn(int level, int name, void *val, socklen_t *len, bool listening)
{
    if (level == SOL_SOCKET && name == SO_ACCEPTCONN && *len >= sizeof(int)) {
        *(int *)val = listening;
        *len = sizeof(int);
        return 0;
    }
    return -ENOPROTOOPT;
}

int fake_getsockopt_listening(ctrio_socket *s, int level, int name, void *val, socklen_t *len)
{
    (void)s;
    return fake_sockopt_acceptconn(level, name, val, len, true);
}

int fake_setsockopt_ignore(ctrio_socket *s, int level, int name, const void *val, socklen_t len)
{
    (void)s, (void)level, (void)name, (void)val, (void)len;
    return 0;
}
