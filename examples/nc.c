/*
 * nc.c — a small netcat: copy stdin to a socket and the socket to stdout.
 *
 *   nc [-u] [-w SECS] HOST PORT          connect (TCP, or UDP with -u)
 *   nc -l [-u] [-w SECS] [HOST] PORT     wait for one peer (PORT 0: pick one)
 *   nc -U [-l] [-w SECS] PATH            the same over a Unix-domain socket
 *   nc --tls [--cafile FILE] [-w SECS] HOST PORT
 *                                        TLS: verify the peer against the
 *                                        system's CAs (and FILE's), SNI HOST
 *   nc -l --tls --cert FILE --key FILE [-w SECS] [HOST] PORT
 *                                        a TLS server (FILE: PEM chain, key)
 *
 * In listen mode, "listening on ADDRESS" goes to stderr (stdout carries the
 * data). -w gives up when connecting (or waiting for the peer) takes longer
 * than SECS, and closes the connection after SECS without traffic.
 * Ending: over TCP and Unix sockets each direction runs to its end: at the
 * end of stdin we send EOF (a half-close), and the peer's EOF ends the copy
 * to stdout; nc exits when both are done (or at once when the peer closes
 * and stdin is a terminal). UDP has no end of stream: at the end of stdin
 * we stop, or with -w wait until the peer has been quiet for SECS. A UDP
 * listener answers whoever sent the first datagram. TLS cannot half-close
 * (ctrio_stream_send_eof is -EOPNOTSUPP, as in Trio's SSLStream): at the end
 * of stdin nc keeps printing until the peer closes, as `openssl s_client
 * -quiet`; closing sends close_notify. Ctrl-C (or SIGTERM) ends it cleanly
 * at any time.
 *
 * What it shows:
 *  - Two tasks in a nursery, one per direction: the nursery ends when both
 *    are done, and cancelling it (the peer hung up on a terminal, UDP's
 *    end of stdin) stops both. Ctrl-C cancels the top nursery the same way.
 *  - -w as cancel scopes: fail_after around connecting, and an idle scope
 *    whose deadline is pushed back each time data moves.
 *  - Waiting for several listeners at once (nc -l without HOST listens on
 *    IPv4 and IPv6): the first accept wins and cancels the others, the same
 *    race as happy eyeballs.
 *  - stdin is not a socket: a pipe or terminal is waited for with
 *    ctrio_wait_readable; a regular file (which epoll cannot watch) is read
 *    in a worker thread with ctrio_to_thread_run_sync.
 */
#include "nc.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- the program (the flow is in nc_flow.c) -------------------------------- */

static int watch_signals(void *arg)
{
    ctrio_nursery *top = arg;
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(top));
    return sig < 0 ? sig : 0;
}

static int main_task(void *arg)
{
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    ctrio_start_soon(&top, watch_signals, &top);
    int rc = nc_flow(arg);
    /* Finished (or stopped by a signal: then rc is the nursery's own
     * cancellation, which nursery_close turns into 0). */
    ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(&top));
    return ctrio_nursery_close(&top, rc);
}

static int usage(void)
{
    fprintf(stderr, "usage: nc [-u] [-w SECS] HOST PORT\n"
                    "       nc -l [-u] [-w SECS] [HOST] PORT\n"
                    "       nc -U [-l] [-w SECS] PATH\n"
                    "       nc --tls [--cafile FILE] [-w SECS] HOST PORT\n"
                    "       nc -l --tls --cert FILE --key FILE [-w SECS] [HOST] PORT\n");
    return 2;
}

int main(int argc, char **argv)
{
    nc_options o = {.wait = INFINITY, .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO, .err = stderr};
    int opt;
    char *end;
    static const struct option long_opts[] = {{"tls", no_argument, NULL, 'T'},
                                              {"cafile", required_argument, NULL, 'A'},
                                              {"cert", required_argument, NULL, 'C'},
                                              {"key", required_argument, NULL, 'K'},
                                              {NULL, 0, NULL, 0}};
    while ((opt = getopt_long(argc, argv, "luUw:", long_opts, NULL)) != -1) {
        switch (opt) {
        case 'l': o.listen = true; break;
        case 'u': o.udp = true; break;
        case 'U': o.unix_socket = true; break;
        case 'T': o.tls = true; break;
        case 'A': o.cafile = optarg; break;
        case 'C': o.cert = optarg; break;
        case 'K': o.key = optarg; break;
        case 'w':
            o.wait = strtod(optarg, &end);
            if (*end || !(o.wait > 0))
                return usage();
            break;
        default: return usage();
        }
    }
    int nargs = argc - optind;
    if (o.unix_socket && !o.udp && nargs == 1)
        o.port = argv[optind];
    else if (!o.unix_socket && nargs == 2)
        o.host = argv[optind], o.port = argv[optind + 1];
    else if (!o.unix_socket && o.listen && nargs == 1)
        o.port = argv[optind];
    else
        return usage();
    /* TLS over TCP only; a server needs its certificate, a client a name */
    if (o.tls ? o.udp || o.unix_socket || (o.listen && (!o.cert || !o.key)) ||
                    (!o.listen && (o.cert || o.key))
              : o.cafile || o.cert || o.key)
        return usage();
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, &o) == 0 ? 0 : 1;
}
