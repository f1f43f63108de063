/*
 * udp_echo.c — a UDP echo server and client, with trio.socket-style calls.
 *
 *   udp_echo server PORT [HOST]           echo datagrams until Ctrl-C/SIGTERM
 *                                         (PORT 0: pick one; the first line
 *                                         on stdout is "listening on ADDR")
 *   udp_echo client HOST PORT MESSAGE...  send each, print each reply
 *   udp_echo pair [MESSAGE...]            both, as two tasks of one program
 *
 * What it shows:
 *  - Datagram sockets: recvfrom tells who sent a datagram, sendto answers.
 *  - UDP may lose a datagram, so the client waits for each reply under
 *    move_on_after and sends again if nothing came back (three tries).
 *  - `pair` starts the server with ctrio_start, which returns once the
 *    server's socket is bound (its address comes back through
 *    ctrio_task_started), runs the client against it, then cancels the
 *    server through its nursery.
 */
#include <ctrio.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A UDP socket bound to (listen) or connected to (client) host:port. */
static int udp_socket(const char *host, const char *port, bool listen, ctrio_socket **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = listen ? AI_PASSIVE : 0};
    struct addrinfo *ai;
    int rc = ctrio_getaddrinfo(host, port, &hints, &ai);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_open(ai->ai_family, ai->ai_socktype, ai->ai_protocol, out);
    if (rc == 0) {
        rc = listen ? ctrio_socket_bind(*out, ai->ai_addr, ai->ai_addrlen)
                    : ctrio_socket_connect(*out, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0)
            ctrio_socket_close(*out);
    }
    ctrio_freeaddrinfo(ai);
    return rc;
}

typedef struct server_args {
    const char *host, *port;
    char address[128]; /* filled in once bound: "127.0.0.1:PORT" */
    int port_number;
} server_args;

/* The server: launched with ctrio_start, runs until cancelled. */
static int server(void *arg)
{
    server_args *a = arg;
    ctrio_socket *sock;
    int rc = udp_socket(a->host, a->port, true, &sock);
    if (rc < 0)
        return rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ctrio_socket_getsockname(sock, (struct sockaddr *)&ss, &len);
    ctrio_sockaddr_format((struct sockaddr *)&ss, len, a->address, sizeof a->address);
    a->port_number = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
    ctrio_task_started(a);
    char buf[65536];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = ctrio_socket_recvfrom(sock, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
        if (n >= 0)
            n = ctrio_socket_sendto(sock, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
        if (n == -ECANCELED || n == -EBADF) {
            ctrio_socket_close(sock);
            return (int)n;
        }
        /* any other error concerns one datagram (say, an ICMP "port
         * unreachable" for an earlier reply): go on */
    }
}

/* The client: each message, and its echo, with three tries. */
static int client(const char *host, const char *port, int count, char **messages)
{
    ctrio_socket *sock;
    int rc = udp_socket(host, port, false, &sock);
    if (rc < 0) {
        fprintf(stderr, "udp_echo: %s port %s: %s\n", host, port, ctrio_strerror(rc));
        return rc;
    }
    for (int i = 0; i < count && rc == 0; i++) {
        const char *msg = messages[i];
        char reply[65536];
        ssize_t n = -ETIMEDOUT;
        for (int attempt = 1; attempt <= 3 && n == -ETIMEDOUT; attempt++) {
            rc = (int)ctrio_socket_send(sock, msg, strlen(msg), 0);
            if (rc < 0)
                break;
            ctrio_cancel_scope cs;
            ctrio_move_on_after(&cs, 0.5);
            n = ctrio_socket_recv(sock, reply, sizeof reply, 0);
            if (ctrio_cancel_scope_close(&cs, (int)n) == 0 && ctrio_cancel_scope_cancelled_caught(&cs))
                n = -ETIMEDOUT; /* no reply in time: send it again */
        }
        rc = n < 0 ? (int)n : 0;
        if (rc == 0)
            printf("%.*s\n", (int)n, reply);
        else
            fprintf(stderr, "udp_echo: '%s': %s\n", msg, ctrio_strerror(rc));
    }
    fflush(stdout);
    ctrio_socket_close(sock);
    return rc;
}

static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return sig < 0 ? sig : 0;
}

typedef struct options {
    const char *mode, *host, *port;
    int count;
    char **messages;
} options;

static int main_task(void *arg)
{
    options *o = arg;
    if (strcmp(o->mode, "client") == 0)
        return client(o->host, o->port, o->count, o->messages);

    /* server, or pair: the server in a nursery, and what to do meanwhile */
    server_args sa = {.host = o->host, .port = o->port};
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start(&top, server, &sa, NULL);
    if (rc < 0) {
        fprintf(stderr, "udp_echo: cannot listen: %s\n", ctrio_strerror(rc));
    } else if (strcmp(o->mode, "server") == 0) {
        printf("listening on %s\n", sa.address);
        fflush(stdout);
        ctrio_start_soon(&top, watch_signals, &top);
    } else {
        char port[8];
        snprintf(port, sizeof port, "%d", sa.port_number);
        printf("server on %s\n", sa.address);
        rc = client(o->host, port, o->count, o->messages);
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top)); /* stop the server */
    }
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    static char *default_messages[] = {"ping", "hello, UDP", "bye"};
    options o = {argc > 1 ? argv[1] : "", NULL, NULL, 0, NULL};
    if (strcmp(o.mode, "server") == 0 && (argc == 3 || argc == 4)) {
        o.port = argv[2];
        o.host = argc == 4 ? argv[3] : NULL;
    } else if (strcmp(o.mode, "client") == 0 && argc >= 5) {
        o.host = argv[2];
        o.port = argv[3];
        o.count = argc - 4;
        o.messages = argv + 4;
    } else if (strcmp(o.mode, "pair") == 0) {
        o.host = "127.0.0.1";
        o.port = "0";
        o.count = argc > 2 ? argc - 2 : 3;
        o.messages = argc > 2 ? argv + 2 : default_messages;
    } else {
        fprintf(stderr, "usage: %s server PORT [HOST]\n"
                        "       %s client HOST PORT MESSAGE...\n"
                        "       %s pair [MESSAGE...]\n", argv[0], argv[0], argv[0]);
        return 2;
    }
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
