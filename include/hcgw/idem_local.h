/*
 * The local idempotency store: the records of one server (one process), shared by its workers
 * under one mutex, in a hash table bounded by a number of records and of bytes, the least
 * recently used first out, each kept for the ttl. It implements struct gw_idem_store_ops
 * (idem.h) and answers at once; the server owns it, like the contact cache. With a redis
 * group it is each replica's fallback while Redis cannot answer (idem_redis.h).
 */
#ifndef HCGW_IDEM_LOCAL_H
#define HCGW_IDEM_LOCAL_H

#include "hcgw/idem.h"

/** An empty store, off (ttl 0) until gw_idem_configure. Returns NULL when out of memory. */
struct gw_idem_store *gw_idem_local_new(void);

#endif
