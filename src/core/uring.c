/*
 * uring.c — the raw io_uring layer of uring.h: setting a ring up with the
 * best flags the kernel takes, queueing SQEs, one io_uring_enter for the
 * submissions and the wait, reaping CQEs, the opcode probe and provided
 * buffer rings. What the backend does with the completions is io_uring.c's.
 *
 * The ring's head and tail words are shared with the kernel, which reads and
 * writes them from any CPU (task work, io-wq workers): each is read with
 * acquire and written with release, as liburing's io_uring_smp_* do, so that
 * an SQE is complete before the kernel sees its tail and a CQE is read before
 * the kernel may reuse its slot.
 *
 * io_uring_setup, _enter and _register are counted through CTRIO__SYS, so the
 * fault switch (fault.c) fails them like any other call of a run.
 */
#include "uring.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef CTRIO_HAVE_MEMCHECK_H
#include <valgrind/memcheck.h>
#endif

/* IORING_MAX_ENTRIES and IORING_MAX_CQ_ENTRIES of the kernel. */
#define CTRIO__URING_MAX_SQ 32768u
#define CTRIO__URING_MAX_CQ 65536u

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned wait_nr, unsigned flags, void *arg,
                     size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait_nr, flags, arg, argsz);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned nargs)
{
    return (int)syscall(__NR_io_uring_register, fd, op, arg, nargs);
}

/* ---- setup ---------------------------------------------------------------- */

/* The flags to try after `f` was refused with EINVAL, or f itself when nothing
 * is left to drop. Each step is an older kernel: DEFER_TASKRUN 6.1,
 * SINGLE_ISSUER 6.0, COOP_TASKRUN 5.19, SUBMIT_ALL 5.18, CQSIZE 5.5. */
static unsigned fallback_flags(unsigned f)
{
    if (f & IORING_SETUP_DEFER_TASKRUN)
        return (f & ~IORING_SETUP_DEFER_TASKRUN) | IORING_SETUP_COOP_TASKRUN;
    if (f & IORING_SETUP_SINGLE_ISSUER)
        return f & ~IORING_SETUP_SINGLE_ISSUER;
    if (f & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL))
        return f & ~(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL);
    return f & ~IORING_SETUP_CQSIZE;
}

/* io_uring_setup with flags, then fewer on EINVAL; the ring's fd or -errno.
 * Any other error (ENOSYS, EPERM from kernel.io_uring_disabled or seccomp,
 * ENOMEM, EMFILE) is the answer. */
static int setup_ring(unsigned entries, unsigned flags, struct io_uring_params *p)
{
    unsigned cq = entries > CTRIO__URING_MAX_CQ / 4 ? CTRIO__URING_MAX_CQ : 4 * entries;
    for (;;) {
        memset(p, 0, sizeof *p);
        p->flags = flags;
        p->cq_entries = cq;
        int fd = CTRIO__SYS(sys_setup(entries, p));
        if (fd >= 0)
            return fd;
        unsigned next = fallback_flags(flags);
        if (errno != EINVAL || next == flags)
            return -errno;
        flags = next;
    }
}

static void *map_ring(int fd, size_t size, off_t off)
{
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off);
    return m == MAP_FAILED ? NULL : m;
}

/* Map the SQ and CQ rings (one mapping with IORING_FEAT_SINGLE_MMAP) and the
 * SQE array. 0 or -errno; what was mapped is left for unmap_rings. */
static int map_rings(ctrio__uring *u, const struct io_uring_params *p)
{
    u->sq_map_size = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    u->cq_map_size = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    if (p->features & IORING_FEAT_SINGLE_MMAP) {
        if (u->cq_map_size > u->sq_map_size)
            u->sq_map_size = u->cq_map_size;
        u->cq_map_size = u->sq_map_size;
    }
    u->sq_map = map_ring(u->fd, u->sq_map_size, IORING_OFF_SQ_RING);
    if (!u->sq_map)
        return -errno;
    if (p->features & IORING_FEAT_SINGLE_MMAP)
        u->cq_map = u->sq_map;
    else if (!(u->cq_map = map_ring(u->fd, u->cq_map_size, IORING_OFF_CQ_RING)))
        return -errno;
    u->sqes_size = p->sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = map_ring(u->fd, u->sqes_size, IORING_OFF_SQES);
    return u->sqes ? 0 : -errno;
}

static void unmap_rings(ctrio__uring *u)
{
    if (u->sqes)
        munmap(u->sqes, u->sqes_size);
    if (u->cq_map && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_map_size);
    if (u->sq_map)
        munmap(u->sq_map, u->sq_map_size);
}

/* The pointers into the mapped rings, from the offsets the kernel gave. */
static void locate_rings(ctrio__uring *u, const struct io_uring_params *p)
{
    char *sq = u->sq_map, *cq = u->cq_map;
    u->sq_head = (_Atomic unsigned *)(sq + p->sq_off.head);
    u->sq_tail = (_Atomic unsigned *)(sq + p->sq_off.tail);
    u->sq_flags = (_Atomic unsigned *)(sq + p->sq_off.flags);
    u->sq_mask = *(unsigned *)(sq + p->sq_off.ring_mask);
    u->sq_entries = p->sq_entries;
    u->sqe_tail = *(unsigned *)(sq + p->sq_off.tail);
    u->cq_head = (_Atomic unsigned *)(cq + p->cq_off.head);
    u->cq_tail = (_Atomic unsigned *)(cq + p->cq_off.tail);
    u->cq_overflow = (_Atomic unsigned *)(cq + p->cq_off.overflow);
    u->cq_mask = *(unsigned *)(cq + p->cq_off.ring_mask);
    u->cq_entries = p->cq_entries;
    u->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
    /* SQE i always sits in slot i: the indirection array is set once. */
    unsigned *array = (unsigned *)(sq + p->sq_off.array);
    for (unsigned i = 0; i < p->sq_entries; i++)
        array[i] = i;
}

/* IORING_REGISTER_PROBE into u->ops. */
static int probe_ops(ctrio__uring *u)
{
    enum { NOPS = 256 };
    size_t size = sizeof(struct io_uring_probe) + NOPS * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *pr = calloc(1, size);
    if (!pr)
        return -ENOMEM;
    int r = CTRIO__SYS(sys_register(u->fd, IORING_REGISTER_PROBE, pr, NOPS)) < 0 ? -errno : 0;
    for (unsigned i = 0; r == 0 && i < pr->ops_len && i < NOPS; i++)
        if (pr->ops[i].flags & IO_URING_OP_SUPPORTED)
            u->ops[pr->ops[i].op / 64] |= UINT64_C(1) << (pr->ops[i].op % 64);
    free(pr);
    return r;
}

int ctrio__uring_init(ctrio__uring *u, unsigned entries, unsigned flags_wanted)
{
    struct io_uring_params p;
    memset(u, 0, sizeof *u);
    u->fd = -1;
    if (entries == 0 || entries > CTRIO__URING_MAX_SQ)
        return -EINVAL;
    int r = setup_ring(entries, flags_wanted | IORING_SETUP_CQSIZE, &p);
    if (r < 0)
        return r;
    u->fd = r;
    u->features = p.features;
    u->flags = p.flags;
    /* A wait with a timeout needs IORING_ENTER_EXT_ARG (5.11); every feature
     * the backend wants is newer, so an older kernel is not worth a timeout SQE. */
    r = (p.features & IORING_FEAT_EXT_ARG) ? map_rings(u, &p) : -ENOSYS;
    if (r == 0) {
        locate_rings(u, &p);
        r = probe_ops(u);
    }
    if (r < 0)
        ctrio__uring_fini(u);
    return r;
}

void ctrio__uring_fini(ctrio__uring *u)
{
    unmap_rings(u);
    if (u->fd >= 0)
        close(u->fd);
    memset(u, 0, sizeof *u);
    u->fd = -1;
}

/* ---- submission ----------------------------------------------------------- */

unsigned ctrio__uring_sq_pending(const ctrio__uring *u)
{
    return u->sqe_tail - atomic_load_explicit(u->sq_head, memory_order_acquire);
}

struct io_uring_sqe *ctrio__uring_sqe(ctrio__uring *u)
{
    if (ctrio__uring_sq_pending(u) >= u->sq_entries)
        return NULL;
    struct io_uring_sqe *sqe = &u->sqes[u->sqe_tail & u->sq_mask];
    u->sqe_tail++;
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

/* What the kernel must be told besides the SQEs: GETEVENTS to wait, to run
 * deferred task work (with DEFER_TASKRUN completions are only posted then,
 * even with nothing to wait for), to flush CQEs that overflowed, or to run
 * the task work IORING_SQ_TASKRUN announces (COOP_TASKRUN). */
static unsigned enter_flags(const ctrio__uring *u, unsigned wait_nr)
{
    unsigned sqf = atomic_load_explicit(u->sq_flags, memory_order_relaxed);
    if (wait_nr || (u->flags & IORING_SETUP_DEFER_TASKRUN) ||
        (sqf & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)))
        return IORING_ENTER_GETEVENTS;
    return 0;
}

static struct __kernel_timespec to_timespec(double timeout)
{
    if (timeout > 1e9) /* some 31 years: as good as forever, and no overflow */
        timeout = 1e9;
    long long sec = (long long)timeout;
    struct __kernel_timespec ts = {.tv_sec = sec,
                                   .tv_nsec = (long long)((timeout - (double)sec) * 1e9)};
    return ts;
}

static bool cq_ready(const ctrio__uring *u)
{
    return atomic_load_explicit(u->cq_tail, memory_order_acquire) !=
           atomic_load_explicit(u->cq_head, memory_order_relaxed);
}

/* EBUSY (overflowed CQEs could not all be flushed) or EAGAIN (no memory for
 * a request): both ask the caller to reap first. That is no error when there
 * is something to reap; the SQEs not taken stay queued for the next enter. */
static int busy(ctrio__uring *u, int err)
{
    unsigned sqf = atomic_load_explicit(u->sq_flags, memory_order_relaxed);
    return cq_ready(u) || (sqf & IORING_SQ_CQ_OVERFLOW) ? 0 : -err;
}

int ctrio__uring_enter(ctrio__uring *u, unsigned wait_nr, double timeout)
{
    /* release: the SQEs are written before the kernel can see the tail */
    atomic_store_explicit(u->sq_tail, u->sqe_tail, memory_order_release);
    unsigned submit = ctrio__uring_sq_pending(u);
    unsigned flags = enter_flags(u, wait_nr);
    if (!submit && !flags)
        return 0;
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;
#ifdef CTRIO_HAVE_MEMCHECK_H
    /* Valgrind (3.19) keeps its one big lock across io_uring_enter, as for
     * a call that cannot block: a wait that only another thread can end (a
     * worker's result posted through the eventfd, a datagram a thread
     * sends) would never end, since that thread cannot run. Its scheduler
     * counts time in blocks executed, which a thread waiting in the kernel
     * hardly executes. Under valgrind, waits are cut into 10 ms slices (the
     * portable layer waits again after each), and each first lets the other
     * threads run: sched_yield is a call valgrind lets go of its lock for. */
    if (wait_nr && RUNNING_ON_VALGRIND) {
        sched_yield();
        if (timeout < 0 || timeout > 0.01)
            timeout = 0.01;
    }
#endif
    if (wait_nr && timeout >= 0) {
        ts = to_timespec(timeout);
        arg = (struct io_uring_getevents_arg){.ts = (uint64_t)(uintptr_t)&ts};
        argp = &arg;
        argsz = sizeof arg;
        flags |= IORING_ENTER_EXT_ARG;
    }
    if (CTRIO__SYS_ONCE(sys_enter(u->fd, submit, wait_nr, flags, argp, argsz)) >= 0)
        return 0;
    if (errno == EINTR || errno == ETIME) /* the caller looks at its clock */
        return 0;
    if (errno == EBUSY || errno == EAGAIN)
        return busy(u, errno);
    return -errno;
}

int ctrio__uring_submit(ctrio__uring *u)
{
    return ctrio__uring_enter(u, 0, 0);
}

/* ---- completion ----------------------------------------------------------- */

unsigned ctrio__uring_peek(ctrio__uring *u, struct io_uring_cqe **cqes, unsigned max)
{
    /* acquire: the CQEs up to the tail are written before we read them */
    unsigned tail = atomic_load_explicit(u->cq_tail, memory_order_acquire);
    unsigned head = atomic_load_explicit(u->cq_head, memory_order_relaxed);
    unsigned n = tail - head < max ? tail - head : max;
    for (unsigned i = 0; i < n; i++)
        cqes[i] = &u->cqes[(head + i) & u->cq_mask];
    return n;
}

void ctrio__uring_advance(ctrio__uring *u, unsigned n)
{
    unsigned head = atomic_load_explicit(u->cq_head, memory_order_relaxed);
    /* release: we are done reading those CQEs before the kernel reuses them */
    atomic_store_explicit(u->cq_head, head + n, memory_order_release);
}

bool ctrio__uring_has_op(const ctrio__uring *u, int opcode)
{
    if (opcode < 0 || opcode >= 256)
        return false;
    return (u->ops[opcode / 64] >> (opcode % 64)) & 1;
}

/* ---- provided buffers ----------------------------------------------------- */

static void buf_ring_put(ctrio__uring_buf_ring *br, uint16_t bid)
{
    struct io_uring_buf *b = &br->ring->bufs[br->tail & (br->nbufs - 1)];
    /* resv of bufs[0] is the ring's tail: it is not written here */
    b->addr = (uint64_t)(uintptr_t)(br->bufs + (size_t)bid * br->bufsize);
    b->len = br->bufsize;
    b->bid = bid;
    br->tail++;
}

static void buf_ring_publish(ctrio__uring_buf_ring *br)
{
    /* release: the entries are written before the kernel sees the tail */
    atomic_store_explicit((_Atomic uint16_t *)&br->ring->tail, br->tail, memory_order_release);
}

int ctrio__uring_buf_ring_setup(ctrio__uring *u, ctrio__uring_buf_ring *br, uint16_t bgid,
                                unsigned nbufs, unsigned bufsize)
{
    memset(br, 0, sizeof *br);
    if (nbufs == 0 || nbufs > 32768 || (nbufs & (nbufs - 1)) || bufsize == 0)
        return -EINVAL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t ring_size = (nbufs * sizeof(struct io_uring_buf) + page - 1) & ~(page - 1);
    size_t map_size = ring_size + (size_t)nbufs * bufsize;
    void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)map, .ring_entries = nbufs, .bgid = bgid};
    if (CTRIO__SYS(sys_register(u->fd, IORING_REGISTER_PBUF_RING, &reg, 1)) < 0) {
        int e = -errno;
        munmap(map, map_size);
        return e;
    }
    *br = (ctrio__uring_buf_ring){.ring = map,
                                  .bufs = (char *)map + ring_size,
                                  .map = map,
                                  .map_size = map_size,
                                  .nbufs = nbufs,
                                  .bufsize = bufsize,
                                  .bgid = bgid};
    for (unsigned i = 0; i < nbufs; i++)
        buf_ring_put(br, (uint16_t)i);
    buf_ring_publish(br);
    return 0;
}

void *ctrio__uring_buf_ring_buf(const ctrio__uring_buf_ring *br, uint16_t bid)
{
    return br->bufs + (size_t)bid * br->bufsize;
}

void ctrio__uring_buf_ring_add(ctrio__uring_buf_ring *br, uint16_t bid)
{
    buf_ring_put(br, bid);
    buf_ring_publish(br);
}

void ctrio__uring_buf_ring_fini(ctrio__uring *u, ctrio__uring_buf_ring *br)
{
    if (!br->map)
        return;
    struct io_uring_buf_reg reg = {.bgid = br->bgid};
    /* Only fails if the group is not registered: nothing is left to undo. */
    (void)CTRIO__SYS(sys_register(u->fd, IORING_UNREGISTER_PBUF_RING, &reg, 1));
    munmap(br->map, br->map_size);
    memset(br, 0, sizeof *br);
}

void ctrio__uring_mark_defined(void *p, size_t n)
{
#ifdef CTRIO_HAVE_MEMCHECK_H
    VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
    (void)p;
    (void)n;
#endif
}
