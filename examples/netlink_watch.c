/*
 * netlink_watch.c — print the kernel's address and link changes as they
 * happen, as `ip monitor address link` does.
 *
 *   netlink_watch          until Ctrl-C/SIGTERM; the first line on stdout is
 *                          "watching netlink:PID:0x111", then one line a change:
 *     addr added 10.0.0.1/24 on eth0      addr removed 2001:db8::1/64 on lo
 *     link eth0 up                        link veth0 removed
 *
 * What it shows:
 *  - A NETLINK_ROUTE socket is a datagram socket like any other: bound to
 *    the multicast groups RTMGRP_LINK | RTMGRP_IPV4_IFADDR |
 *    RTMGRP_IPV6_IFADDR (written "netlink:0:0x111" and parsed by
 *    ctrio_sockaddr_parse), each receive brings one or more messages.
 *  - ENOBUFS on a receive means the kernel dropped notifications (the
 *    socket's buffer was full): say so and go on, the socket stays usable.
 *  - Ctrl-C/SIGTERM cancel the receive and the program exits 0.
 * No privilege is needed to listen; changing addresses needs CAP_NET_ADMIN.
 */
#include <ctrio.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The interface's name: from the message if it has one, else the kernel's
 * name for the index (or the index itself). */
static const char *ifname_of(unsigned index, const char *given, char *buf)
{
    if (given)
        return given;
    if (if_indextoname(index, buf))
        return buf;
    snprintf(buf, IF_NAMESIZE, "#%u", index);
    return buf;
}

/* RTM_NEWADDR / RTM_DELADDR: "addr added|removed ADDRESS/PREFIX on IFNAME". */
static void print_addr(const struct nlmsghdr *h)
{
    const struct ifaddrmsg *ifa = NLMSG_DATA(h);
    int len = (int)IFA_PAYLOAD(h);
    const void *address = NULL, *local = NULL;
    const char *label = NULL;
    for (const struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == IFA_ADDRESS)
            address = RTA_DATA(a);
        else if (a->rta_type == IFA_LOCAL) /* the host's own, on point-to-point links */
            local = RTA_DATA(a);
        else if (a->rta_type == IFA_LABEL)
            label = RTA_DATA(a);
    }
    const void *shown = local ? local : address;
    char text[INET6_ADDRSTRLEN], name[IF_NAMESIZE];
    if (!shown || !inet_ntop(ifa->ifa_family, shown, text, sizeof text))
        return; /* not an IP address */
    printf("addr %s %s/%u on %s\n", h->nlmsg_type == RTM_NEWADDR ? "added" : "removed", text,
           ifa->ifa_prefixlen, ifname_of(ifa->ifa_index, label, name));
}

/* RTM_NEWLINK / RTM_DELLINK: "link IFNAME up|down|removed". */
static void print_link(const struct nlmsghdr *h)
{
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    int len = (int)IFLA_PAYLOAD(h);
    const char *ifname = NULL;
    for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == IFLA_IFNAME)
            ifname = RTA_DATA(a);
    char name[IF_NAMESIZE];
    const char *state = h->nlmsg_type == RTM_DELLINK ? "removed"
                        : ifi->ifi_flags & IFF_UP    ? "up"
                                                     : "down";
    printf("link %s %s\n", ifname_of((unsigned)ifi->ifi_index, ifname, name), state);
}

/* Each message of one datagram. */
static void print_messages(const void *buf, size_t n)
{
    int len = (int)n;
    for (const struct nlmsghdr *h = buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR)
            print_addr(h);
        else if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK)
            print_link(h);
    }
    fflush(stdout);
}

/* A NETLINK_ROUTE socket bound to the groups; prints its address. */
static int open_watch_socket(ctrio_socket **s)
{
    char text[64];
    snprintf(text, sizeof text, "netlink:0:0x%x",
             RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR);
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = ctrio_sockaddr_parse(0, text, 0, &ss, &len); /* port id 0: the kernel picks */
    if (rc == 0)
        rc = ctrio_socket_open(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, s);
    if (rc < 0)
        return rc;
    rc = ctrio_socket_bind(*s, (struct sockaddr *)&ss, len);
    len = sizeof ss;
    if (rc == 0)
        rc = ctrio_socket_getsockname(*s, (struct sockaddr *)&ss, &len);
    if (rc == 0 && (rc = ctrio_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text)) > 0)
        rc = 0;
    if (rc < 0) {
        ctrio_socket_close(*s);
        return rc;
    }
    printf("watching %s\n", text);
    fflush(stdout);
    return 0;
}

static int watch(void)
{
    ctrio_socket *s;
    int rc = open_watch_socket(&s);
    if (rc < 0) {
        fprintf(stderr, "netlink_watch: cannot open a NETLINK_ROUTE socket: %s\n",
                ctrio_strerror(rc));
        return rc;
    }
    char *buf = malloc(65536); /* the kernel's messages fit in a page; dumps in 32 KiB */
    for (rc = 0; buf && rc == 0;) {
        ssize_t n = ctrio_socket_recv(s, buf, 65536, 0);
        if (n >= 0)
            print_messages(buf, (size_t)n);
        else if (n == -ENOBUFS) /* the kernel dropped some: say so, go on */
            fprintf(stderr, "netlink_watch: notifications lost (receive buffer full)\n");
        else
            rc = (int)n;
    }
    if (rc < 0 && rc != -ECANCELED)
        fprintf(stderr, "netlink_watch: receive: %s\n", ctrio_strerror(rc));
    free(buf);
    ctrio_socket_close(s);
    return buf ? rc : -ENOMEM;
}

/* Wait for Ctrl-C or SIGTERM, then cancel everything in the nursery. */
static int watch_signals(void *arg)
{
    static const int signals[] = {SIGINT, SIGTERM};
    int sig = ctrio_wait_signal(signals, 2);
    if (sig > 0)
        ctrio_cancel_scope_cancel(ctrio_nursery_cancel_scope(arg));
    return sig < 0 ? sig : 0;
}

static int main_task(void *arg)
{
    (void)arg;
    ctrio_nursery top;
    ctrio_nursery_open(&top);
    int rc = ctrio_start_soon(&top, watch_signals, &top);
    if (rc == 0)
        rc = watch(); /* until a signal cancels it: the nursery's own -ECANCELED */
    return ctrio_nursery_close(&top, rc);
}

int main(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "usage: %s   (prints address and link changes until Ctrl-C)\n", argv[0]);
        return 2;
    }
    sigset_t set; /* before any thread exists: see echo_server.c */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return ctrio_run(main_task, NULL) == 0 ? 0 : 1;
}
