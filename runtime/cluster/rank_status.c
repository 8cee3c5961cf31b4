/* What this rank is doing, kept for the message printed when a signal stops it. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cluster/node_impl.h"

static char g_status[256] = "starting";
static int g_rank = 0;
static volatile int *g_graceful;

void brt_rank_status_init(int rank) { g_rank = rank; }

void brt_rank_status(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_status, sizeof g_status, fmt, ap);
    va_end(ap);
}

static void on_term(int sig)
{
    if (g_graceful && !*g_graceful) {
        *g_graceful = sig;
        return;
    }
    char line[400];
    int n = snprintf(line, sizeof line, "beaconrt[rank %d]: stopped by signal %d while %s\n", g_rank, sig, g_status);
    if (n > 0 && write(2, line, (size_t)n) < 0) { /* nothing to do */
    }
    _exit(128 + sig);
}

void brt_rank_signals(volatile int *graceful)
{
    g_graceful = graceful;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}
