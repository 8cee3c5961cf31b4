/* Logging to stderr with the rank in front, so that interleaved output of many ranks stays
 * readable. Level from BRT_LOG (error|warn|info|debug), default info. */
#ifndef BRT_LOG_H
#define BRT_LOG_H

enum { BRT_LOG_ERROR = 0, BRT_LOG_WARN = 1, BRT_LOG_INFO = 2, BRT_LOG_DEBUG = 3 };

void brt_log_set_rank(int rank, int world);
void brt_log_set_level(int level);
int brt_log_level(void);
void brt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define brt_log_error(...) brt_log(BRT_LOG_ERROR, __VA_ARGS__)
#define brt_log_warn(...) brt_log(BRT_LOG_WARN, __VA_ARGS__)
#define brt_log_info(...) brt_log(BRT_LOG_INFO, __VA_ARGS__)
#define brt_log_debug(...) brt_log(BRT_LOG_DEBUG, __VA_ARGS__)

/* Monotonic seconds (for timings and timeouts). */
double brt_now(void);

#endif
