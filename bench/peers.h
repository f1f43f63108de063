#ifndef CTRIO_BENCH_PEERS_H
#define CTRIO_BENCH_PEERS_H
#include <stddef.h>
double bench_now(void);
double peer_fcontext_ns_per_switch(long iters);
double peer_swapcontext_ns_per_switch(long iters);
double peer_uv_timer_ns(long iters);
double peer_page_touch_ms(long n, size_t stride);
#endif
