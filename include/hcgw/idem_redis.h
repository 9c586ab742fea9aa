/*
 * The shared idempotency store: Idempotency-Key records kept in Redis, so that every replica
 * in front of one HelpCrunch account sees the same records (a key used on one replica is
 * replayed, refused or found as in progress on another). It implements struct
 * gw_idem_store_ops (idem.h), one per worker, on that worker's Redis connection (redis.h).
 *
 * Each verb is one round trip: a Lua script that reads and writes the record atomically, so
 * that of two replicas beginning with one key at once exactly one holds it. A record is one
 * Redis string that expires by itself (PX): the claim's lease plus idempotency.ttl_s while
 * held, idempotency.ttl_s once ended. It is named by a hash of the account (the API key's
 * hash, never the key), the client and the Idempotency-Key, under redis.key_prefix:
 *
 *     <redis.key_prefix>idem:<32 hex digits of SHA-256(account, client, key)>
 *
 * so that no caller's key material reaches Redis and a name's length is bounded. A final
 * answer larger than GW_IDEM_REDIS_MAX_BODY_BYTES (or idempotency.max_bytes) is kept as
 * unknown, as the local store does with one larger than its bytes.
 *
 * When Redis cannot answer in time (down, slower than redis.timeout_ms or the begin's
 * deadline, an error answer), the verb falls back to the server's local table (idem_local.h),
 * which then holds the claim: the request goes on, protected on this replica only, and the
 * fallback is counted (hcgw_idempotency_fallbacks_total). A complete Redis could not take is
 * kept in the local table instead (the Redis record, still held, becomes unknown when its
 * lease ends). What the local table kept while Redis was away still counts once Redis is
 * back: when Redis would let a begin hold the key, or says another request holds it (maybe
 * a begin it applied after hcgw had given up on it), the local table is asked too (when it
 * holds anything): a final answer there is replayed (and becomes the Redis record when this
 * begin holds the claim); for a begin that holds it, a claim in progress or another body
 * there wins, and an unknown outcome there makes it a recovery.
 *
 * Every function runs on the loop's thread of the worker, except gw_idem_stats.
 */
#ifndef HCGW_IDEM_REDIS_H
#define HCGW_IDEM_REDIS_H

#include "hcgw/idem.h"

struct gw_config;
struct gw_loop;
struct gw_metrics;
struct gw_redis;
struct gw_secret;

/**
 * The shared store of one worker: records in the Redis of @p redis (the worker's connection,
 * on @p loop), named for the account of @p key, with the settings of cfg->idempotency and
 * cfg->redis; @p fallback (the server's local table) when Redis cannot answer; fallbacks
 * counted in @p metrics (the worker's block). All of them must outlive it (@p cfg and @p key,
 * or be replaced with gw_idem_redis_reconfigure). Returns NULL when out of memory.
 */
struct gw_idem_store *gw_idem_redis_new(struct gw_loop *loop, struct gw_redis *redis,
                                        const struct gw_config *cfg,
                                        const struct gw_secret *key,
                                        struct gw_idem_store *fallback,
                                        struct gw_metrics *metrics);

/**
 * Take new settings and key (a reload) from the next verb on; verbs in flight keep what they
 * were sent with. @p s must be one gw_idem_redis_new made.
 */
void gw_idem_redis_reconfigure(struct gw_idem_store *s, const struct gw_config *cfg,
                               const struct gw_secret *key);

#endif
