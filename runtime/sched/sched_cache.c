/* The state cache's part in scheduling: look a job's prompt up when it is admitted (a hit loads
 * the cached state on every stage of its pipeline and starts the job at that step), keep states
 * worth keeping (the last step boundary inside each prompt, where a question after the same
 * document would branch off, in device memory when that tier has room, else host memory, else
 * disk; and periodic or final mid-document checkpoints, on disk), and apply what the stages
 * report back: confirmed copies, failed loads (the job then starts from token 0), evictions under
 * each tier's budget (a copy moves down a tier: device, host, disk). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "sched/sched_impl.h"

int brt_sc_queue(brt_sched *s, int32_t pi, uint32_t kind, uint32_t tier, uint64_t job, const brt_cache_key *k)
{
    pipeline *p = &s->pipes[pi];
    if (p->n_ops == p->cap_ops) {
        int32_t cap = p->cap_ops ? p->cap_ops * 2 : 8;
        brt_cache_op *o = realloc(p->ops, (size_t)cap * sizeof *o);
        if (!o)
            return -1;
        p->ops = o;
        p->cap_ops = cap;
    }
    brt_cache_op *o = &p->ops[p->n_ops++];
    *o = (brt_cache_op){kind, tier, job, {0}};
    memcpy(o->key, k->b, sizeof o->key);
    return 0;
}

/* An entry with no copy and nothing pending is forgotten. */
static void forget_if_empty(brt_sched *s, brt_cache_entry *e)
{
    if (!e->dev && !e->dev_pending && !e->host && !e->host_pending && !e->disk && !e->disk_pending && !e->pins)
        brt_cache_index_remove(s->cache, e);
}

static void drop_disk_everywhere(brt_sched *s, brt_cache_entry *e)
{
    for (int32_t p = 0; p < s->o.n_pipelines; p++) /* a folder per node: each pipeline's stages remove theirs */
        brt_sc_queue(s, p, BRT_CACHE_DROP_DISK, 0, 0, &e->key);
    e->disk = 0;
}

/* Take v's device copy out of pipeline p's device memory: it moves to the next tier down that
 * does not hold it yet (host memory, else disk), or is dropped. */
static void dev_out(brt_sched *s, int32_t p, brt_cache_entry *v)
{
    brt_cache_index *x = s->cache;
    brt_cache_counters *c = brt_cache_index_counters(x);
    const uint32_t bit = 1u << p;
    if (brt_cache_index_host(x) && !((v->host | v->host_pending) & bit)) {
        brt_sc_queue(s, p, BRT_CACHE_DEMOTE_DEV, BRT_TIER_HOST, 0, &v->key);
        v->host_pending |= bit;
        c->demotions++;
    } else if (brt_cache_index_disk(x) && !v->disk && !v->disk_pending) {
        brt_sc_queue(s, p, BRT_CACHE_DEMOTE_DEV, BRT_TIER_DISK, 0, &v->key);
        v->disk_pending = 1;
        c->demotions++;
    } else {
        brt_sc_queue(s, p, BRT_CACHE_DROP_DEV, 0, 0, &v->key);
        c->evictions++;
    }
    v->dev &= ~bit;
    brt_cache_index_account(x);
    forget_if_empty(s, v);
}

/* Bring every stage within its budgets: least recently used first; a device copy moves to host
 * memory or disk, a host copy to disk, when that tier exists and the state is not there yet. */
static void evict(brt_sched *s)
{
    brt_cache_index *x = s->cache;
    brt_cache_counters *c = brt_cache_index_counters(x);
    for (int32_t p = 0; p < s->o.n_pipelines; p++) {
        brt_cache_entry *v;
        while ((v = brt_cache_index_victim(x, BRT_TIER_DEVICE, p, NULL)))
            dev_out(s, p, v);
        while ((v = brt_cache_index_victim(x, BRT_TIER_HOST, p, NULL))) {
            if (brt_cache_index_disk(x) && !v->disk && !v->disk_pending) {
                brt_sc_queue(s, p, BRT_CACHE_DEMOTE, 0, 0, &v->key);
                v->disk_pending = 1;
                c->demotions++;
            } else {
                brt_sc_queue(s, p, BRT_CACHE_DROP_HOST, 0, 0, &v->key);
                c->evictions++;
            }
            v->host &= ~(1u << p);
            brt_cache_index_account(x);
            forget_if_empty(s, v);
        }
    }
    brt_cache_entry *v;
    while ((v = brt_cache_index_victim(x, BRT_TIER_DISK, 0, NULL))) {
        drop_disk_everywhere(s, v);
        c->evictions++;
        brt_cache_index_account(x);
        forget_if_empty(s, v);
    }
}

static void save_manifest(brt_sched *s)
{
    brt_err e;
    if (brt_cache_index_disk(s->cache) && brt_cache_index_save_manifest(s->cache, &e) != BRT_OK)
        brt_log_warn("state cache: %s", e.msg);
}

/* The keys of a stream's steps before its end, planned as they will be (tokens [0, len)): *keys
 * [*n] malloc'ed, and with them the fed count after each. */
static int plan_keys(brt_sched *s, const brt_key_chain *start, const int32_t *tokens, int64_t len,
                     brt_cache_key **keys, int64_t **fed, int32_t *n)
{
    brt_plan p;
    brt_plan_init(&p, &s->cfg);
    brt_key_chain c = *start;
    int32_t cap = 64;
    *n = 0;
    *keys = malloc((size_t)cap * sizeof **keys);
    *fed = malloc((size_t)cap * sizeof **fed);
    for (;;) {
        brt_step st;
        brt_err e;
        memset(&st, 0, sizeof st);
        if (!*keys || !*fed || s->pol->plan_next(&p, &s->cfg, tokens, len, s->o.prefill_chunk, &st, &e) <= 0)
            break;
        brt_key_chain_step(&c, &st);
        brt_step_free_arrays(&st);
        if (*n == cap) {
            cap *= 2;
            brt_cache_key *k = realloc(*keys, (size_t)cap * sizeof *k);
            int64_t *f = realloc(*fed, (size_t)cap * sizeof *f);
            if (k)
                *keys = k;
            if (f)
                *fed = f;
            if (!k || !f)
                break;
        }
        (*keys)[*n] = brt_key_chain_key(&c);
        (*fed)[(*n)++] = p.fed;
    }
    return *keys && *fed ? 0 : -1;
}

/* Where j's state is worth keeping: the deepest step boundary inside its prompt that a longer
 * prompt starting the same way would also reach with the same state (a question after the same
 * document). Found by planning the prompt once more with tokens after it: the steps whose keys
 * agree are the shared ones (beacon windows are aligned from the start; LongLLaMA's are too, up
 * to the last context; an adaptive ratio chosen from the whole length shares none). */
static void shared_boundaries(brt_sched *s, const brt_job *j, const brt_cache_key *keys, const int64_t *fed,
                              int32_t n, int32_t out[2])
{
    out[0] = out[1] = -1;
    const int64_t more = 2 * (int64_t)s->max_step_rows + 64;
    int32_t *ext = malloc((size_t)(j->prompt_len + more) * sizeof *ext);
    if (!ext)
        return;
    memcpy(ext, j->tokens, (size_t)j->prompt_len * sizeof *ext);
    for (int64_t i = 0; i < more; i++)
        ext[j->prompt_len + i] = j->tokens[j->prompt_len - 1];
    brt_key_chain c;
    brt_key_chain_init(&c, brt_cache_index_settings(s->cache));
    brt_cache_key *k2 = NULL;
    int64_t *f2 = NULL;
    int32_t n2 = 0;
    if (plan_keys(s, &c, ext, j->prompt_len + more, &k2, &f2, &n2) == 0)
        for (int32_t i = 0; i < n && i < n2 && brt_key_equal(&keys[i], &k2[i]); i++)
            if (fed[i] < j->prompt_len) {
                out[1] = out[0];
                out[0] = i;
            }
    free(k2);
    free(f2);
    free(ext);
}

void brt_sc_admitted(brt_sched *s, brt_job *j)
{
    j->save_index[0] = j->save_index[1] = -1;
    if (!s->cache)
        return;
    brt_cache_index *x = s->cache;
    brt_key_chain_init(&j->chain, brt_cache_index_settings(x));
    if (j->prompt_logprob || j->full) { /* every prompt row's scores are wanted: compute them all */
        j->no_cache = 1;
        return;
    }
    /* the job's own prompt steps, planned ahead as they will be: the key after each, and the
     * deepest one kept; the state is only ever taken from inside the prompt (its last step
     * gives the logits of the first token) */
    brt_cache_key *keys = NULL;
    int64_t *fed = NULL;
    int32_t n = 0, hit = -1;
    if (plan_keys(s, &j->chain, j->tokens, j->prompt_len, &keys, &fed, &n) == 0)
        for (int32_t i = 0; i < n; i++) {
            brt_cache_entry *en = fed[i] < j->prompt_len ? brt_cache_index_get(x, &keys[i]) : NULL;
            if (en && brt_cache_entry_ready(en, j->pipeline))
                hit = i;
        }
    if (n > 0)
        shared_boundaries(s, j, keys, fed, n, j->save_index);
    brt_cache_entry *best = hit >= 0 ? brt_cache_index_get(x, &keys[hit]) : NULL;
    free(keys);
    free(fed);
    /* the plan and key chain at the hit: the same steps once more, up to it */
    brt_plan best_plan;
    brt_plan_init(&best_plan, &s->cfg);
    brt_key_chain best_chain = j->chain;
    for (int32_t i = 0; best && i <= hit; i++) {
        brt_step st;
        brt_err e;
        memset(&st, 0, sizeof st);
        if (s->pol->plan_next(&best_plan, &s->cfg, j->tokens, j->prompt_len, s->o.prefill_chunk, &st, &e) <= 0) {
            best = NULL;
            break;
        }
        brt_key_chain_step(&best_chain, &st);
        brt_step_free_arrays(&st);
    }
    brt_cache_counters *cn = brt_cache_index_counters(x);
    cn->lookups++;
    if (!best) {
        cn->misses++;
        return;
    }
    if (brt_sc_queue(s, j->pipeline, BRT_CACHE_LOAD, 0, j->id, &best->key) != 0) {
        cn->misses++;
        return;
    }
    cn->hits++;
    cn->hit_tokens += best_plan.fed;
    j->restore_dev = (best->dev >> j->pipeline & 1u) != 0; /* the stages load the nearest copy */
    cn->dev_hits += j->restore_dev;
    best->pins++;
    brt_cache_index_touch(x, best);
    j->plan = best_plan;
    j->chain = best_chain;
    j->restoring = 1;
    j->restore_key = best->key;
    j->cached_tokens = best_plan.fed;
    /* the cached tokens are not computed: take them off the pipeline's work and count them done */
    pipeline *pp = &s->pipes[j->pipeline];
    pp->load -= best_plan.fed;
    j->work_left -= best_plan.fed;
    j->tokens_done += best_plan.fed;
    s->tokens_done += best_plan.fed;
}

/* Room in pipeline p's device memory for a state of need bytes per stage (the job's reservation:
 * a state within its prompt takes at most that), made by moving older copies down a tier; 0 when
 * there is none (the copies there are in use or still being made). */
static int dev_room(brt_sched *s, int32_t p, const int64_t *need)
{
    brt_cache_index *x = s->cache;
    if (!brt_cache_index_could_fit(x, BRT_TIER_DEVICE, p, need)) /* move nothing in vain */
        return 0;
    brt_cache_entry *v;
    while ((v = brt_cache_index_victim(x, BRT_TIER_DEVICE, p, need)))
        dev_out(s, p, v);
    return brt_cache_index_fits(x, BRT_TIER_DEVICE, p, need);
}

/* Keep j's state after its step `index` in a tier (device memory when it has room, else the next
 * tier down); owner: a mid-document checkpoint of that job. */
static void keep(brt_sched *s, brt_job *j, uint32_t tier, uint64_t owner)
{
    brt_cache_index *x = s->cache;
    const brt_cache_key k = brt_key_chain_key(&j->chain);
    brt_cache_entry *e = brt_cache_index_get(x, &k);
    const uint32_t bit = 1u << j->pipeline;
    /* one save (or move) of a key per pipeline in flight at a time: its report is then its own;
     * and a state already in memory (device or host) for a memory tier, on disk for the disk
     * tier, is not kept twice */
    if (e && (((e->dev_pending | e->host_pending) & bit) || e->disk_pending ||
              (tier != BRT_TIER_DISK ? ((e->dev | e->host) & bit) != 0 : e->disk))) {
        brt_cache_index_touch(x, e);
        return;
    }
    if (tier == BRT_TIER_DEVICE && !dev_room(s, j->pipeline, j->reserved))
        tier = brt_cache_index_host(x) ? BRT_TIER_HOST : BRT_TIER_DISK;
    if (tier == BRT_TIER_DISK && (!brt_cache_index_disk(x) || (e && e->disk)))
        return;
    if (!e && !(e = brt_cache_index_add(x, &k, j->plan.next_index, j->plan.fed)))
        return;
    if (brt_sc_queue(s, j->pipeline, BRT_CACHE_SAVE, tier, j->id, &k) != 0) {
        forget_if_empty(s, e);
        return;
    }
    if (tier == BRT_TIER_DEVICE) {
        if (!e->dev) /* no copy reported its size yet: set the job's reservation aside */
            memcpy(e->dev_bytes, j->reserved, (size_t)s->o.n_stages * sizeof *e->dev_bytes);
        e->dev_pending |= bit;
        brt_cache_index_account(x);
    } else if (tier == BRT_TIER_HOST)
        e->host_pending |= bit;
    else
        e->disk_pending = 1;
    if (owner)
        e->owner = owner;
}

void brt_sc_planned(brt_sched *s, brt_job *j, const brt_step *st)
{
    if (!s->cache || j->no_cache)
        return;
    brt_key_chain_step(&j->chain, st);
    brt_cache_index *x = s->cache;
    const int inside = j->plan.fed < j->prompt_len;
    if (((int32_t)st->index == j->save_index[0] || (int32_t)st->index == j->save_index[1]) && inside)
        keep(s, j, brt_cache_index_dev(x) ? BRT_TIER_DEVICE : brt_cache_index_host(x) ? BRT_TIER_HOST : BRT_TIER_DISK, 0);
    else if (inside && s->o.checkpoint_every > 0 && brt_cache_index_disk(x) &&
             (st->index + 1) % (uint32_t)s->o.checkpoint_every == 0)
        keep(s, j, BRT_TIER_DISK, j->id);
}

int32_t brt_sched_checkpoint_all(brt_sched *s)
{
    if (!s->cache || !brt_cache_index_disk(s->cache))
        return 0;
    int32_t n = 0;
    for (int32_t pi = 0; pi < s->o.n_pipelines; pi++) {
        brt_job *start = s->pipes[pi].active, *j = start;
        if (!j)
            continue;
        do {
            if (!j->no_cache && !j->restoring && j->inflight == 0 && j->plan.fed > 0 && j->plan.fed < j->prompt_len &&
                j->plan.fed > j->cached_tokens) {
                keep(s, j, BRT_TIER_DISK, j->id);
                n++;
            }
            j = j->next_active;
        } while (j && j != start);
    }
    return n;
}

void brt_sched_stop_planning(brt_sched *s) { s->stopping = 1; }

int32_t brt_sched_cache_pending(const brt_sched *s)
{
    if (!s->cache)
        return 0;
    int32_t n = 0;
    for (int32_t p = 0; p < s->o.n_pipelines; p++)
        n += s->pipes[p].n_ops;
    return n;
}

const brt_cache_counters *brt_sched_cache_counters(const brt_sched *s)
{
    return s->cache ? brt_cache_index_counters(s->cache) : NULL;
}

/* A job whose cached state did not load on some stage starts over from its first token. */
static void restart(brt_sched *s, brt_job *j, const char *why)
{
    brt_log_warn("state cache: job %s: the cached state of its first %lld tokens did not load (%s); reading them",
                 j->name, (long long)j->cached_tokens, why);
    brt_cache_counters *c = brt_cache_index_counters(s->cache);
    c->hits--; /* it was not one after all */
    c->dev_hits -= j->restore_dev;
    c->misses++;
    c->hit_tokens -= j->cached_tokens;
    pipeline *p = &s->pipes[j->pipeline];
    p->load += j->cached_tokens;
    j->work_left += j->cached_tokens;
    j->tokens_done -= j->cached_tokens;
    s->tokens_done -= j->cached_tokens;
    j->cached_tokens = 0;
    brt_plan_init(&j->plan, &s->cfg);
    brt_key_chain_init(&j->chain, brt_cache_index_settings(s->cache));
    j->restoring = 0;
}

void brt_sched_cache_reports(brt_sched *s, uint64_t mb_id, const brt_cache_report *r, int32_t n)
{
    if (!s->cache || n <= 0)
        return;
    brt_cache_index *x = s->cache;
    brt_cache_counters *c = brt_cache_index_counters(x);
    const brt_microbatch *mb = brt_u64map_get(&s->inflight, mb_id);
    const int32_t pi = mb ? mb->pipeline : 0, S = s->o.n_stages;
    const uint32_t bit = 1u << pi;
    int disk_changed = 0;
    /* every stage's report of one op arrives together: walk them op by op */
    for (int32_t i = 0; i < n; i++) {
        int seen = 0;
        for (int32_t q = 0; q < i && !seen; q++)
            seen = r[q].kind == r[i].kind && r[q].tier == r[i].tier && r[q].job == r[i].job &&
                   !memcmp(r[q].key, r[i].key, 16);
        if (seen)
            continue;
        int32_t ok = 0;
        const char *why = NULL;
        int64_t bytes[64] = {0};
        for (int32_t q = i; q < n; q++)
            if (r[q].kind == r[i].kind && r[q].tier == r[i].tier && r[q].job == r[i].job &&
                !memcmp(r[q].key, r[i].key, 16)) {
                ok += r[q].ok != 0;
                if (!r[q].ok && !why)
                    why = r[q].error;
                if (r[q].stage >= 0 && r[q].stage < 64)
                    bytes[r[q].stage] = r[q].bytes;
            }
        const int all = ok == S;
        brt_cache_key k;
        memcpy(k.b, r[i].key, sizeof k.b);
        brt_cache_entry *e = brt_cache_index_get(x, &k);
        switch (r[i].kind) {
        case BRT_CACHE_SAVE: {
            if (!e)
                break;
            const uint32_t tier = r[i].tier;
            const int pending = tier == BRT_TIER_DEVICE ? (e->dev_pending & bit) != 0
                                : tier == BRT_TIER_HOST ? (e->host_pending & bit) != 0
                                                        : e->disk_pending;
            if (!pending) { /* not a save the index waits for (keep allows one at a time): a copy
                               the index does not count is not kept */
                if (tier == BRT_TIER_DEVICE && !(e->dev & bit))
                    brt_sc_queue(s, pi, BRT_CACHE_DROP_DEV, 0, 0, &k);
                else if (tier == BRT_TIER_HOST && !(e->host & bit))
                    brt_sc_queue(s, pi, BRT_CACHE_DROP_HOST, 0, 0, &k);
                break;
            }
            if (tier == BRT_TIER_DEVICE)
                e->dev_pending &= ~bit;
            else if (tier == BRT_TIER_HOST)
                e->host_pending &= ~bit;
            else
                e->disk_pending = 0;
            if (!all) {
                c->save_failures++;
                brt_log_warn("state cache: keeping a state failed (%s)", why ? why : "?");
                /* the stages that did keep it drop it again */
                brt_sc_queue(s, pi,
                             tier == BRT_TIER_DEVICE ? BRT_CACHE_DROP_DEV
                             : tier == BRT_TIER_HOST ? BRT_CACHE_DROP_HOST
                                                     : BRT_CACHE_DROP_DISK,
                             0, 0, &k);
                brt_cache_index_account(x);
                forget_if_empty(s, e);
                break;
            }
            c->saves++;
            for (int32_t st = 0; st < S && st < 64; st++) {
                if (tier == BRT_TIER_DEVICE)
                    e->dev_bytes[st] = bytes[st]; /* what it takes, no longer what was set aside */
                else if (bytes[st] > e->bytes[st])
                    e->bytes[st] = bytes[st];
            }
            if (tier == BRT_TIER_DEVICE)
                e->dev |= bit;
            else if (tier == BRT_TIER_HOST)
                e->host |= bit;
            else {
                e->disk = 1;
                disk_changed = 1;
            }
            brt_cache_index_touch(x, e);
            brt_cache_index_account(x);
            /* a job's newer checkpoint replaces its older one */
            brt_job *j = e->owner ? brt_u64map_get(&s->by_id, e->owner) : NULL;
            if (j && tier == BRT_TIER_DISK) {
                if (j->has_ckpt && !brt_key_equal(&j->ckpt_key, &k)) {
                    brt_cache_entry *old = brt_cache_index_get(x, &j->ckpt_key);
                    if (old && old->owner == j->id && !old->pins) {
                        drop_disk_everywhere(s, old);
                        brt_cache_index_account(x);
                        forget_if_empty(s, old);
                    }
                }
                j->has_ckpt = 1;
                j->ckpt_key = k;
            }
            break;
        }
        case BRT_CACHE_LOAD: {
            if (e && e->pins > 0)
                e->pins--;
            brt_job *j = brt_u64map_get(&s->by_id, r[i].job);
            if (j && j->restoring && brt_key_equal(&j->restore_key, &k)) {
                if (all)
                    j->restoring = 0;
                else {
                    c->load_failures++;
                    restart(s, j, why ? why : "?");
                }
            }
            if (!all && e) { /* whatever copy failed is not to be tried again (a copy still being
                                made is another's, and stays) */
                if ((e->dev & bit) && !(e->dev_pending & bit)) {
                    e->dev &= ~bit;
                    brt_sc_queue(s, pi, BRT_CACHE_DROP_DEV, 0, 0, &k);
                }
                if ((e->host & bit) && !(e->host_pending & bit)) {
                    e->host &= ~bit;
                    brt_sc_queue(s, pi, BRT_CACHE_DROP_HOST, 0, 0, &k);
                }
                if (e->disk && !e->disk_pending) {
                    drop_disk_everywhere(s, e);
                    disk_changed = 1;
                }
                brt_cache_index_account(x);
                forget_if_empty(s, e);
            }
            break;
        }
        case BRT_CACHE_DEMOTE:
            if (!e)
                break;
            e->disk_pending = 0;
            if (all) {
                e->disk = 1;
                disk_changed = 1;
            } else
                brt_sc_queue(s, pi, BRT_CACHE_DROP_DISK, 0, 0, &k);
            brt_cache_index_account(x);
            forget_if_empty(s, e);
            break;
        case BRT_CACHE_DEMOTE_DEV: { /* the device copy is gone either way; was it kept below? */
            if (!e)
                break;
            const int to_host = r[i].tier == BRT_TIER_HOST;
            if (to_host)
                e->host_pending &= ~bit;
            else
                e->disk_pending = 0;
            if (all) {
                for (int32_t st = 0; st < S && st < 64; st++)
                    if (bytes[st] > e->bytes[st])
                        e->bytes[st] = bytes[st];
                if (to_host)
                    e->host |= bit;
                else {
                    e->disk = 1;
                    disk_changed = 1;
                }
            } else
                brt_sc_queue(s, pi, to_host ? BRT_CACHE_DROP_HOST : BRT_CACHE_DROP_DISK, 0, 0, &k);
            brt_cache_index_account(x);
            forget_if_empty(s, e);
            break;
        }
        default: break;
        }
    }
    evict(s);
    if (disk_changed)
        save_manifest(s);
}
