#ifndef CTRIO_BENCH_PEERS_H
#define CTRIO_BENCH_PEERS_H
double bench_now(void);
double peer_fcontext_ns_per_switch(long iters);
double peer_swapcontext_ns_per_switch(long iters);
double peer_uv_timer_ns(long iters);
#endif
