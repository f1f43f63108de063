/*
 * ctrio_testing.h — trio.testing in C: what a test of code written on ctrio
 * needs and a server does not. A program that only serves includes ctrio.h;
 * a test includes this header too (it includes ctrio.h). Same library
 * (libctrio, pkg-config ctrio): only the declarations live apart, as Trio
 * keeps them in trio.testing, apart from trio.
 *
 * Held here: the mock clock's jump (the clock itself is chosen by
 * ctrio_config.mock_clock, as trio.run's clock= argument takes a MockClock),
 * the checkpoint counters behind assert_checkpoints, wait_all_tasks_blocked,
 * the cancel- and fault-injection switches, Sequencer, memory and lockstep
 * streams, and the fake network. The generic stream checks (Trio's
 * check_half_closeable_stream and friends) are a test helper of this
 * repository, not library API: tests/stream_check.h.
 * Conventions (errors, NULL, checkpoints) are ctrio.h's.
 */
#ifndef CTRIO_TESTING_H
#define CTRIO_TESTING_H

#include "ctrio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* 8. Testing support (trio.testing)                                         */
/* ------------------------------------------------------------------------ */

/* Advance a mock clock by `seconds` (>= 0), firing the deadlines it passes at
 * the next scheduler turn. Does nothing (and prints a message) on a real clock
 * or with a negative value. */
CTRIO_API void ctrio_mock_clock_jump(double seconds);

typedef struct ctrio_checkpoint_counts {
    uint64_t cancel_points, schedule_points;
} ctrio_checkpoint_counts;
/* Returns the current task's counters since it started (cancel points and
 * schedule points reached; all zero outside a task): compare two readings
 * to assert that a call was (or was not) a checkpoint, as Trio's
 * trio.testing.assert_checkpoints / assert_no_checkpoints. Not a checkpoint. */
CTRIO_API ctrio_checkpoint_counts ctrio_task_checkpoint_counts(void);
/* trio.testing.wait_all_tasks_blocked: return once every other task of the
 * run has been blocked for `cushion` real seconds (waiters with smaller
 * cushions are woken first). A checkpoint; cancellable. */
CTRIO_API int ctrio_wait_all_tasks_blocked(double cushion);

/* Cancel-injection switch (Trio has no equivalent). Once set, scope cs is
 * cancelled just before the cancel check of the n-th cancel point (n >= 1)
 * that any task of the run reaches from now on. A test replays a scenario for
 * n = 1, 2, ... inside cs and checks each time that everything unwinds
 * cleanly; it stops when ctrio_testing_cancel_fired() says the scenario
 * finished before the n-th cancel point. n = 0 disarms. Neither is a
 * checkpoint. ctrio_testing_cancel_fired returns true once the armed
 * cancellation was delivered, false while it has not been (or outside a run). */
CTRIO_API void ctrio_testing_cancel_at_checkpoint(ctrio_cancel_scope *cs, uint64_t n);
CTRIO_API bool ctrio_testing_cancel_fired(void);
/* Returns the number of cancel points reached by all tasks of the run so
 * far (0 outside a run): run a scenario once to learn how far a
 * ctrio_testing_cancel_at_checkpoint sweep must go. Not a checkpoint. */
CTRIO_API uint64_t ctrio_testing_run_checkpoints(void);

/* System-call fault switch (SQLite's way; Trio has no equivalent). Once
 * set, the n-th system call (n >= 1) that the library makes on the run's
 * thread from now on is not made: it fails with errno err (EINTR, ENOMEM,
 * EMFILE, ECONNRESET, EAGAIN...; a negative err is taken as -err), once;
 * then the switch is off. A test replays a scenario for n = 1, 2, ... and
 * checks each time that it ends with a clear error or a correct result and
 * leaks nothing; it stops when ctrio_testing_syscall_fault_fired() says the
 * scenario finished before the n-th call. n = 0 or err = 0 disarms. Calls
 * made by worker threads are not counted. EINTR never reaches the caller:
 * the library makes an interrupted call again (PEP 475's rule), so a sweep
 * with EINTR must end with the full result. close() is made in any case
 * (Linux frees the descriptor even when it reports EINTR) and the fault only
 * changes what it returns. An injected EAGAIN makes the socket's next wait
 * ask the kernel for its current state, as a true EAGAIN promises an edge.
 * Outside a run: does nothing. */
CTRIO_API void ctrio_testing_fail_syscall_at(uint64_t n, int err);
CTRIO_API bool ctrio_testing_syscall_fault_fired(void);
/* Returns the number of system calls the library made on the run's thread
 * so far (0 outside a run; worker threads' calls not counted): run a
 * scenario once to learn how far a ctrio_testing_fail_syscall_at sweep must
 * go, or assert how many calls a path makes. Not a checkpoint. */
CTRIO_API uint64_t ctrio_testing_run_syscalls(void);

/* How long an idle worker thread of the current run (ctrio_to_thread_run_sync,
 * name lookups) waits for another job before it exits: 10 seconds by default,
 * as Trio's thread cache (IDLE_TIMEOUT, which Trio's own test_idle_threads_exit
 * shortens the same way). Idle workers start their wait anew with the new
 * time. A worker that exited is joined by the next job or at the end of the
 * run. Returns 0; -EINVAL unless 0 < seconds <= 86400; -EPERM outside a run.
 * Not a checkpoint. */
CTRIO_API int ctrio_testing_set_worker_idle(double seconds);

/* trio.testing.Sequencer: make tasks run sections in a fixed order.
 * ctrio_sequencer_enter(s, i) blocks until sections 0..i-1 have been left;
 * ctrio_sequencer_leave(s, i) ends section i. Entering a position twice, or
 * after the sequencer broke (a waiter was cancelled), returns -EPERM. */
typedef struct ctrio_sequencer {
    /* private */
    ctrio__waitq waiters;
    size_t next;
    bool broken;
    uint64_t claimed[4]; /* bit per position, positions 0..255 */
} ctrio_sequencer;
/* init: make s a sequencer at position 0 (caller's storage, no cleanup).
 * enter(s, i), i in 0..255: a checkpoint that returns 0 once sections
 * 0..i-1 have been left; -ECANCELED if cancelled (the sequencer then breaks:
 * every waiter gets -EPERM); -EPERM for a position entered twice, a broken
 * sequencer or outside a task; -EINVAL for NULL or i > 255. leave(s, i): not a
 * checkpoint; returns 0, or -EPERM when i is not the current section. */
CTRIO_API void ctrio_sequencer_init(ctrio_sequencer *s);
CTRIO_API int ctrio_sequencer_enter(ctrio_sequencer *s, size_t position);
CTRIO_API int ctrio_sequencer_leave(ctrio_sequencer *s, size_t position);

/* ------------------------------------------------------------------------ */
/* 8b. Memory streams and stream checks (trio.testing)                       */
/* ------------------------------------------------------------------------ */
/* (The generic stream checks, Trio's check_half_closeable_stream and
 * friends, are a test helper, not library API: tests/stream_check.h.) */

/* trio.testing.memory_stream_pair: two connected in-memory half-closeable
 * streams (data sent on *a is received on *b and back), with unbounded
 * buffers: send_all never waits for the peer. Free each end with
 * ctrio_stream_close. Semantics, as Trio's:
 *  - every call is a checkpoint; a second concurrent receiver or sender on
 *    one end gets -EBUSY;
 *  - send_eof: the peer receives what was sent, then 0 (for ever); it is
 *    idempotent, and send_all / wait_send_all_might_not_block after it get
 *    -EBADF; the other direction keeps working;
 *  - closing an end: a task of that end blocked in receive_some gets -EBADF;
 *    the peer receives what was sent before the close, then 0; the peer's
 *    non-empty send_all gets -EPIPE (BrokenResourceError) from then on.
 * Usable outside a run (e.g. to make the pair before ctrio_run). Returns 0,
 * -EINVAL for a NULL argument, -ENOMEM. */
CTRIO_API int ctrio_memory_stream_pair(ctrio_stream **a, ctrio_stream **b);

/* trio.testing.lockstep_stream_pair: as ctrio_memory_stream_pair, but with
 * no buffering at all: each send_all waits until the peer has received every
 * byte of it, and wait_send_all_might_not_block waits until the peer is in
 * receive_some. A pair is thus "clogged" from the start (what the generic
 * stream checks need). If the peer closes while a send_all waits with bytes
 * not yet received, that send_all gets -EPIPE; a send_all cancelled while it
 * waits leaves its unreceived bytes queued. Returns as above. */
CTRIO_API int ctrio_lockstep_stream_pair(ctrio_stream **a, ctrio_stream **b);

/* ------------------------------------------------------------------------ */
/* 8c. Fake network (trio.testing)                                           */
/* ------------------------------------------------------------------------ */
/*
 * A scripted network on the two hooks of ctrio.h's section 6, for testing
 * code that resolves names and connects (open_tcp_stream's happy eyeballs),
 * as the Scenario of Trio's tests/test_highlevel_open_tcp_stream.py does.
 * No descriptor is involved: a fake socket's fileno is -1.
 *
 *  - Names: ctrio_fake_net_add_host scripts getaddrinfo's answer for a host
 *    name (compared without case): numeric IPv4/IPv6 addresses, in order,
 *    each with the numeric port of the service asked for, as SOCK_STREAM /
 *    IPPROTO_TCP entries (hints may pick a family or SOCK_DGRAM). An unknown
 *    name is CTRIO_EAI_NONAME. A name with no addresses (or none of the
 *    family asked for) answers an empty list, as Trio's Scenario can, which
 *    ctrio_getaddrinfo reports as CTRIO_EAI_NONAME. Each lookup is a
 *    checkpoint. Numeric hosts never reach a resolver (ctrio.h, section 6),
 *    but their connections still go to fake sockets. getnameinfo is not
 *    faked.
 *  - Sockets: while installed, ctrio_socket_open makes fake SOCK_STREAM
 *    and SOCK_DGRAM sockets of AF_INET or AF_INET6 (other families, and a family switched
 *    off with ctrio_fake_net_set_family: -EAFNOSUPPORT; other types:
 *    -ESOCKTNOSUPPORT). connect to an address waits `delay` seconds on the
 *    run's clock (so a mock clock with autojump gives exact times), then
 *    returns the scripted result (ctrio_fake_net_set_connect; an address
 *    without a script is refused at once: -ECONNREFUSED). As a real socket:
 *    a cancelled connect returns -ECANCELED and leaves the socket dead
 *    (every later call -EBADF, except close, which must still be called);
 *    closing the socket from another task wakes its connect with -EBADF.
 *    Also supported: bind (a checkpoint; records the address; -EINVAL if
 *    already bound or too short, -EAFNOSUPPORT for another family),
 *    setsockopt/getsockopt of int options (stored; SO_TYPE, SO_DOMAIN,
 *    SO_PROTOCOL and SO_ERROR answered), getsockname, getpeername,
 *    shutdown, wait_writable (a checkpoint once connected). No data moves
 *    on SOCK_STREAM: send/recv/accept/listen return -EOPNOTSUPP.
 *  - Datagrams: SOCK_DGRAM sockets (IPPROTO_UDP) carry datagrams between
 *    the fake sockets of the network: one sent to an address goes to the
 *    open datagram socket bound to it (or to its family's wildcard) and its
 *    port, else it is dropped, as UDP drops it. bind to port 0, connect or a
 *    first send gives a socket a port from 49152 up; connect only sets the
 *    peer. sendmsg/sendto/sendmmsg complete at once; recvmsg/recvfrom/
 *    recvmmsg wait for a datagram (the sender's address in msg_name,
 *    MSG_TRUNC when cut; MSG_DONTWAIT: -EAGAIN) and a batch takes what is
 *    queued; each call is one checkpoint, as a kernel socket's; a close
 *    wakes a receive with -EBADF; is_readable says whether one is queued.
 *  - Records: every fake socket made is one attempt, in creation order,
 *    kept until ctrio_fake_net_free: where connect went and when, how it
 *    ended, the local address bound, whether it was closed.
 */
typedef struct ctrio_fake_net ctrio_fake_net;

#define CTRIO_FAKE_PENDING 1 /* connect_result: connect not called, or not finished */

typedef struct ctrio_fake_attempt {
    int family;                   /* of the socket */
    struct sockaddr_storage peer; /* where connect went */
    socklen_t peer_len;           /* 0: connect was never called */
    double connect_time;          /* the run's clock when connect was called */
    int connect_result;           /* 0, -errno (-ECANCELED, -EBADF...), or CTRIO_FAKE_PENDING */
    struct sockaddr_storage local; /* what bind was given */
    socklen_t local_len;          /* 0: never bound */
    unsigned setsockopt_calls;    /* every setsockopt call, failed or not */
    bool closed;                  /* ctrio_socket_close was called */
} ctrio_fake_attempt;

typedef struct ctrio_fake_lookup {
    char host[256], service[32]; /* "" for NULL (truncated if longer) */
    int flags, family, socktype, protocol; /* the hints (all 0 for NULL hints) */
} ctrio_fake_lookup;

/* *out gets a new, empty network (no hosts, no scripts, both families on),
 * to script with the calls below and then install in a run. Usable inside
 * or outside a run; not a checkpoint. Returns 0, -EINVAL for a NULL out,
 * -ENOMEM. Free it with ctrio_fake_net_free. */
CTRIO_API int ctrio_fake_net_new(ctrio_fake_net **out);
/* Uninstall if installed in the current run, then free the network and its
 * records. Close every fake socket first (their handles point into it).
 * Not a checkpoint; nothing to return; NULL does nothing. The attempt and
 * lookup pointers read from it die with it. */
CTRIO_API void ctrio_fake_net_free(ctrio_fake_net *net);
/* getaddrinfo(name) answers addrs[0..n) (numeric, "1.2.3.4" or "::1"), in
 * that order; replaces an earlier script for the name. -EINVAL for a bad
 * address or NULL name, -ENOMEM. */
CTRIO_API int ctrio_fake_net_add_host(ctrio_fake_net *net, const char *name,
                                      const char *const *addrs, size_t n);
/* connect to addr (numeric; any port) waits delay seconds (INFINITY: until
 * cancelled), then returns result: 0 to connect, or a -errno. Replaces an
 * earlier script for addr. -EINVAL for a bad address, a negative or NaN
 * delay, or a positive result. */
CTRIO_API int ctrio_fake_net_set_connect(ctrio_fake_net *net, const char *addr, double delay,
                                         int result);
/* Let sockets of family (AF_INET or AF_INET6) be made or not (Trio's
 * ipv4_supported/ipv6_supported): off, ctrio_socket_open returns
 * -EAFNOSUPPORT and records nothing. Returns 0, or -EINVAL for NULL or
 * another family. Not a checkpoint; takes effect at the next socket made. */
CTRIO_API int ctrio_fake_net_set_family(ctrio_fake_net *net, int family, bool supported);
/* Make every setsockopt on this network's sockets return err (a -errno;
 * 0, the default: they succeed), after counting the call (the attempt's
 * setsockopt_calls), to test how code copes with refused options. Not a
 * checkpoint; nothing to return; NULL does nothing. */
CTRIO_API void ctrio_fake_net_fail_setsockopt(ctrio_fake_net *net, int err);
/* Install as the current run's socket factory and hostname resolver (the
 * previous hooks are kept and put back by uninstall). -EPERM outside a run
 * or if already installed. The network must outlive its installation. */
CTRIO_API int ctrio_fake_net_install(ctrio_fake_net *net);
/* Put the previous hooks back; a no-op if not installed or if the run it
 * was installed in has ended. From then on ctrio_socket_open and
 * ctrio_getaddrinfo reach the previous hooks (or the kernel); fake sockets
 * already made keep working. Not a checkpoint; NULL does nothing. */
CTRIO_API void ctrio_fake_net_uninstall(ctrio_fake_net *net);
/* The fake sockets made so far, in order; the pointers stay valid until
 * ctrio_fake_net_free. attempt_count returns how many (0 for NULL);
 * attempt(net, i) returns the i-th record (0: the first made), NULL past the
 * end. Neither is a checkpoint: read them after the code under test ran. */
CTRIO_API size_t ctrio_fake_net_attempt_count(const ctrio_fake_net *net);
CTRIO_API const ctrio_fake_attempt *ctrio_fake_net_attempt(const ctrio_fake_net *net, size_t i);
/* The first attempt whose connect went to addr (numeric, port ignored), or
 * NULL if none did (or addr is not numeric, or net is NULL). For checks
 * such as "the IPv6 attempt was made 0.25 s before the IPv4 one" (its
 * connect_time). Not a checkpoint. */
CTRIO_API const ctrio_fake_attempt *ctrio_fake_net_find_attempt(const ctrio_fake_net *net,
                                                                const char *addr);
/* Lookups that reached the fake resolver (numeric hosts never do):
 * lookup_count returns how many (0 for NULL), last_lookup the last one's
 * host, service and hints (NULL if none), a record that the next lookup
 * overwrites, freed by ctrio_fake_net_free. Neither is a checkpoint. */
CTRIO_API size_t ctrio_fake_net_lookup_count(const ctrio_fake_net *net);
CTRIO_API const ctrio_fake_lookup *ctrio_fake_net_last_lookup(const ctrio_fake_net *net);

#ifdef __cplusplus
}
#endif
#endif /* CTRIO_TESTING_H */
