#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank = 0, g_world = 1;
static int g_level = -1;

void brt_log_set_rank(int rank, int world)
{
    g_rank = rank;
    g_world = world;
}

void brt_log_set_level(int level) { g_level = level; }

int brt_log_level(void)
{
    if (g_level < 0) {
        const char *e = getenv("BRT_LOG");
        g_level = BRT_LOG_INFO;
        if (e) {
            if (!strcmp(e, "error")) g_level = BRT_LOG_ERROR;
            else if (!strcmp(e, "warn")) g_level = BRT_LOG_WARN;
            else if (!strcmp(e, "debug")) g_level = BRT_LOG_DEBUG;
        }
    }
    return g_level;
}

void brt_log(int level, const char *fmt, ...)
{
    if (level > brt_log_level())
        return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    int n;
    if (g_world > 1)
        n = snprintf(line, sizeof line, "beaconrt[rank %d] %s: ", g_rank, names[level]);
    else
        n = snprintf(line, sizeof line, "beaconrt: %s: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* one write per line so lines of different ranks do not interleave mid-line */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len++] = '\n';
        line[len] = '\0';
    }
    fputs(line, stderr);
    fflush(stderr);
}

double brt_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
