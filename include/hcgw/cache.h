/*
 * The contact cache: HelpCrunch's customer objects by contact id, shared by every worker of a
 * server (the server owns it, like the quota governor), bounded by a number of entries and of
 * bytes, least recently used first out. Every function takes its one mutex and may be called
 * from any thread.
 *
 * It keeps answers fresh after hcgw's own writes with write generations: a call takes a
 * snapshot of its contact's generation when it starts (gw_cache_generation); a write's end
 * moves the generation on, and a read's answer is stored only when no write ended while the
 * read was in flight, so that an answer from before a write never replaces the write's.
 */
#ifndef HCGW_CACHE_H
#define HCGW_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/limits.h"

struct gw_cache;

/** A fresh entry, copied out of the cache. */
struct gw_cache_hit {
    char *body;                      /* the customer, NUL-terminated, malloc'd: the caller frees */
    size_t len;
    uint64_t age_ms;                 /* since it was stored */
    uint64_t ttl_left_ms;            /* until it stops being served */
    char etag[GW_ETAG_BYTES];        /* the body's ETag (cachectl.h), worked out when it was
                                        stored; "" when that failed */
};

/** What the cache holds now. */
struct gw_cache_stats {
    size_t entries;
    size_t bytes;                    /* the bodies and each entry's own bookkeeping */
};

/** An empty cache, off (ttl 0) until gw_cache_configure. Returns NULL when out of memory. */
struct gw_cache *gw_cache_new(void);

/** Free it and every entry. No thread may use it any more. Accepts NULL. */
void gw_cache_free(struct gw_cache *c);

/**
 * Serve entries younger than @p ttl_ms (0: off, and every entry is dropped), and keep at most
 * @p max_entries entries and @p max_bytes bytes (the least recently used go first). Returns 0,
 * or -1 when out of memory (then the bounds are kept, the buckets are not resized).
 */
int gw_cache_configure(struct gw_cache *c, long ttl_ms, long max_entries, long max_bytes);

/** The write generation of contact @p id now: a call's snapshot when it starts. */
uint64_t gw_cache_generation(struct gw_cache *c, uint64_t id);

/**
 * Look up @p id at monotonic time @p now_ms, accepting an entry at most @p max_age_ms old (and
 * younger than the ttl). Returns true and fills @p hit (the caller frees hit->body), or false
 * (a miss, the cache off, or out of memory). A hit makes the entry the most recently used.
 */
bool gw_cache_get(struct gw_cache *c, uint64_t id, uint64_t now_ms, uint64_t max_age_ms,
                  struct gw_cache_hit *hit);

/**
 * Store @p body (a customer, @p len bytes) as a read's answer for @p id, when the contact's
 * generation is still @p gen (no write ended since the read began) and the cache is on.
 * Returns true when stored.
 */
bool gw_cache_fill(struct gw_cache *c, uint64_t id, uint64_t gen, const char *body, size_t len,
                   uint64_t now_ms);

/**
 * A write to @p id ended: move its generation on, and store @p body (the customer the write
 * answered) when the generation was still @p gen; otherwise (another write ended meanwhile,
 * and which of the two HelpCrunch applied last is unknown) or when @p body is NULL (the write
 * failed, or deleted the contact), drop the entry. Returns true when stored.
 */
bool gw_cache_write(struct gw_cache *c, uint64_t id, uint64_t gen, const char *body, size_t len,
                    uint64_t now_ms);

/** What it holds now. */
struct gw_cache_stats gw_cache_stats(struct gw_cache *c);

#endif
