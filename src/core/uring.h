/*
 * uring.h — a minimal io_uring over the raw system calls (uring.c), the layer
 * under the io_uring backend (issue #11).
 *
 * Raw calls, not liburing: libctrio must load where liburing is missing and
 * fall back to epoll at run time. The ring is used by one thread, the one
 * that made it (IORING_SETUP_SINGLE_ISSUER when the kernel has it). The
 * kernel needs 5.11 (IORING_FEAT_EXT_ARG: a wait with a timeout costs no
 * timeout SQE); everything newer is optional and probed.
 *
 * The calls, one line each:
 * - init: set up a ring (flags tried, then dropped step by step on EINVAL); 0 or -errno.
 * - fini: unmap and close it.
 * - sqe: the next SQE, zeroed, or NULL when the SQ is full (submit, then retry).
 * - submit: give the queued SQEs to the kernel without waiting (enter with wait_nr 0).
 * - enter: submit and wait for wait_nr completions up to a timeout; 0 or -errno.
 * - peek / advance: see the CQEs the kernel posted, then hand them back.
 * - has_op: whether the kernel knows an IORING_OP_* (probed at init).
 * - buf_ring_setup / _buf / _add / _fini: a provided-buffer ring (5.19).
 * - mark_defined: tell valgrind that the kernel wrote a buffer.
 */
#ifndef CTRIO_URING_H
#define CTRIO_URING_H

#include "internal.h"

#include <linux/io_uring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ctrio__uring {
    int fd;
    unsigned features; /* IORING_FEAT_* the kernel reported */
    unsigned flags;    /* IORING_SETUP_* the ring was made with */
    /* the submission queue: the kernel's words, then our tail not yet published */
    _Atomic unsigned *sq_head, *sq_tail, *sq_flags;
    unsigned sq_mask, sq_entries;
    unsigned sqe_tail; /* SQEs handed out; published to *sq_tail at enter */
    struct io_uring_sqe *sqes;
    /* the completion queue */
    _Atomic unsigned *cq_head, *cq_tail, *cq_overflow;
    unsigned cq_mask, cq_entries;
    struct io_uring_cqe *cqes;
    /* the mappings (one ring mapping with IORING_FEAT_SINGLE_MMAP) */
    void *sq_map, *cq_map;
    size_t sq_map_size, cq_map_size, sqes_size;
    uint64_t ops[4]; /* IORING_OP_* the kernel supports, one bit each */
} ctrio__uring;

/* The flags init tries first: the cheapest task-work mode (6.1). */
#define CTRIO__URING_FLAGS                                                                         \
    (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL)

/* Set up a ring of `entries` SQEs (a power of two is used; CQ 4x as large)
 * with flags_wanted (CTRIO__URING_FLAGS or fewer). On EINVAL the optional flags
 * are dropped step by step (DEFER_TASKRUN for COOP_TASKRUN, then those, then
 * the CQ size). The error of io_uring_setup otherwise: -ENOSYS (old kernel,
 * qemu-user, seccomp), -EPERM (kernel.io_uring_disabled), ... u is then unset. */
CTRIO__HIDDEN int ctrio__uring_init(ctrio__uring *u, unsigned entries, unsigned flags_wanted);
/* Unmap and close the ring (its pending operations are cancelled by the kernel). */
CTRIO__HIDDEN void ctrio__uring_fini(ctrio__uring *u);
/* The next SQE, zeroed, or NULL when every SQ entry is queued: the caller then
 * submits (ctrio__uring_submit) and asks again. */
CTRIO__HIDDEN struct io_uring_sqe *ctrio__uring_sqe(ctrio__uring *u);
/* SQEs handed out by ctrio__uring_sqe and not taken by the kernel yet. */
CTRIO__HIDDEN unsigned ctrio__uring_sq_pending(const ctrio__uring *u);
/* Submit every queued SQE without waiting: ctrio__uring_enter(u, 0, 0). */
CTRIO__HIDDEN int ctrio__uring_submit(ctrio__uring *u);
/* Submit every queued SQE, then, if wait_nr, wait until wait_nr CQEs are there
 * or `timeout` seconds passed (< 0: no limit). An expired timeout or a signal is
 * no error (0). With a full CQ (EBUSY/EAGAIN) it returns 0 with SQEs still
 * queued: reap, then call again. -EBADR: the kernel dropped CQEs (no memory
 * for the overflow). -errno for anything else. */
CTRIO__HIDDEN int ctrio__uring_enter(ctrio__uring *u, unsigned wait_nr, double timeout);
/* Up to max CQEs posted and not yet advanced over, oldest first, into cqes;
 * their number. They stay valid until ctrio__uring_advance. */
CTRIO__HIDDEN unsigned ctrio__uring_peek(ctrio__uring *u, struct io_uring_cqe **cqes, unsigned max);
/* Hand the n oldest CQEs back to the kernel. */
CTRIO__HIDDEN void ctrio__uring_advance(ctrio__uring *u, unsigned n);
/* Whether the kernel supports IORING_OP_<opcode> (IORING_REGISTER_PROBE at init). */
CTRIO__HIDDEN bool ctrio__uring_has_op(const ctrio__uring *u, int opcode);

/* A provided-buffer ring (IORING_REGISTER_PBUF_RING): nbufs buffers of bufsize
 * bytes in one mapping, which the kernel picks from for an SQE with
 * IOSQE_BUFFER_SELECT and buf_group = bgid; the CQE names the buffer
 * (flags >> IORING_CQE_BUFFER_SHIFT, with IORING_CQE_F_BUFFER). */
typedef struct ctrio__uring_buf_ring {
    struct io_uring_buf_ring *ring; /* the entries, at the start of map */
    char *bufs;                     /* the buffers, after the entries */
    void *map;
    size_t map_size;
    unsigned nbufs, bufsize;
    uint16_t bgid, tail;
} ctrio__uring_buf_ring;

/* Map and register the ring and give it all its buffers; nbufs a power of two
 * up to 32768. 0 or -errno (-EINVAL before 5.19); br is then unset. */
CTRIO__HIDDEN int ctrio__uring_buf_ring_setup(ctrio__uring *u, ctrio__uring_buf_ring *br,
                                              uint16_t bgid, unsigned nbufs, unsigned bufsize);
/* The address of buffer bid. */
CTRIO__HIDDEN void *ctrio__uring_buf_ring_buf(const ctrio__uring_buf_ring *br, uint16_t bid);
/* Give buffer bid back to the kernel (after its data was consumed). */
CTRIO__HIDDEN void ctrio__uring_buf_ring_add(ctrio__uring_buf_ring *br, uint16_t bid);
/* Unregister and unmap the buffer ring. */
CTRIO__HIDDEN void ctrio__uring_buf_ring_fini(ctrio__uring *u, ctrio__uring_buf_ring *br);

/* Valgrind's memcheck does not see what the kernel writes through the ring:
 * mark the n bytes at p as defined (a CQE's res bytes of a read). No-op
 * without <valgrind/memcheck.h> or outside valgrind. */
CTRIO__HIDDEN void ctrio__uring_mark_defined(void *p, size_t n);

#endif
