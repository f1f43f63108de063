/*
 * stream_check.h — Trio's generic stream conformance checks
 * (trio/testing/_check_streams.py), as a reusable test helper.
 *
 * A maker returns a fresh connected pair (*a sends to *b and back) or a
 * negative error; it is called inside the run, from the checking task. The
 * clogged maker (may be NULL: those checks are skipped, as Trio's None) must
 * return a pair in which send_all and wait_send_all_might_not_block block
 * until the peer calls receive_some: for a SocketStream, fill the buffers;
 * for memory streams, a lockstep pair.
 *
 * The checks run inside a task (call them from a run_real/run_mock body) and
 * fail through cmocka asserts. They return 0.
 *
 * Differences from Python that C imposes: a stream handle is freed by
 * ctrio_stream_close (like fclose), so Trio's checks that call methods on a
 * closed stream, or close it twice, become checks on the peer or on tasks
 * blocked in the stream when it is closed; argument-type checks
 * (bytearray, memoryview, 1.5) become NULL/zero-length checks.
 */
#ifndef CTRIO_TEST_STREAM_CHECK_H
#define CTRIO_TEST_STREAM_CHECK_H

#include <ctrio.h>

typedef int (*stream_pair_maker)(void *ctx, ctrio_stream **a, ctrio_stream **b);

/* check_one_way_stream: a sends, b receives. */
int check_one_way_stream(stream_pair_maker make, stream_pair_maker make_clogged, void *ctx);
/* check_two_way_stream: both directions, then a 1 MiB full-duplex transfer. */
int check_two_way_stream(stream_pair_maker make, stream_pair_maker make_clogged, void *ctx);
/* check_half_closeable_stream: the above, then send_eof. */
int check_half_closeable_stream(stream_pair_maker make, stream_pair_maker make_clogged,
                                void *ctx);

/* Trio's fill_stream (tests/test_highlevel_socket.py): send_all until it
 * blocks, then cancel it. For clogged makers of real streams. */
int stream_check_fill(ctrio_stream *s);

/* Trio's aclose_forcefully: close inside an already-cancelled scope. */
int stream_check_aclose_forcefully(ctrio_stream *s);

#endif
