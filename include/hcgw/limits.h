/*
 * Every bound hcgw enforces, named in one place. A buffer, body, header, queue or wait that
 * is not bounded by one of these (or by a config key that says so) is a bug.
 */
#ifndef HCGW_LIMITS_H
#define HCGW_LIMITS_H

/** Longest request URL (path and query) hcgw reads, in bytes. */
#define GW_MAX_URL_BYTES 2048
/**
 * Memory MHD may use per connection for the request line and headers, in bytes
 * (limits.max_header_bytes): by default HAProxy's default buffer, twice nginx's longest header
 * line. libmicrohttpd zeroes all of it after every request and keeps it for the connection's
 * life, so it is CPU per request and memory per connection, idle ones included
 * (bench/README.md): 32 KiB cost 15% of the instructions and 31 MiB at c=1000, and each idle
 * keep-alive connection holds about this much more than nginx's.
 */
#define GW_DEFAULT_HEADER_BYTES 16384
/** The smallest and largest limits.max_header_bytes. */
#define GW_MIN_HEADER_BYTES 4096
#define GW_MAX_HEADER_BYTES 65536
/** A HelpCrunch customer id: at most this many decimal digits. */
#define GW_MAX_ID_DIGITS 19
/** A tag name: at most this many characters (Unicode code points)... */
#define GW_MAX_TAG_CHARS 100
/** ...and so at most this many bytes of UTF-8. */
#define GW_MAX_TAG_BYTES (GW_MAX_TAG_CHARS * 4)
/** A tags body holds 1 to this many tags. */
#define GW_MAX_TAGS 100
/** Nesting depth of any JSON hcgw parses (requests and upstream answers). */
#define GW_MAX_JSON_DEPTH 32
/** A caller's X-Request-Id is kept when it is 1 to this many allowed characters. */
#define GW_MAX_REQUEST_ID 128
/**
 * Trace context (trace.h). A traceparent (spaces around it aside) of this many bytes or more is
 * not parsed: a future version may add fields, but not without bound. hcgw starts a new trace.
 */
#define GW_MAX_TRACEPARENT_BYTES 256
/**
 * The tracestate fields of a request joined by ",": at most this many bytes (what W3C Trace
 * Context asks every vendor to pass on), and at most this many list members (its own limit);
 * past either, the tracestate is dropped.
 */
#define GW_MAX_TRACESTATE_BYTES 512
#define GW_MAX_TRACESTATE_MEMBERS 32
/** Error details copied from a HelpCrunch error answer into the envelope. */
#define GW_MAX_DETAILS 16
/** Bytes of one detail's code or message kept in the envelope. */
#define GW_MAX_DETAIL_BYTES 512
/** Default bound of an upstream answer body (limits.max_upstream_body_bytes). */
#define GW_DEFAULT_UPSTREAM_BODY_BYTES (8 * 1024 * 1024)
/** One log line, JSON included; longer values are truncated. */
#define GW_MAX_LOG_LINE 4096
/** Longest upstream URL hcgw builds (base URL, path, query). */
#define GW_MAX_UPSTREAM_URL 2048
/**
 * upstream.http_version = "2": calls one worker sends at once on one HTTP/2 connection (fewer
 * when HelpCrunch's SETTINGS_MAX_CONCURRENT_STREAMS says so). Past it the worker opens another
 * connection, up to upstream.max_connections, so a worker has at most max_connections times
 * this many calls on the wire; the rest wait in libcurl's queue inside their deadline.
 */
#define GW_MAX_UPSTREAM_H2_STREAMS 100
/** Longest Retry-After hcgw honours or passes on, in seconds. */
#define GW_MAX_RETRY_AFTER_S 3600
/** Bytes of a too-large body read and dropped so that the 413 can still be sent. */
#define GW_MAX_DISCARD_BYTES (1024 * 1024)
/** An API key: at most this many bytes. */
#define GW_MAX_API_KEY_BYTES 4096
/** A configuration file: at most this many bytes. */
#define GW_MAX_CONFIG_BYTES (1024 * 1024)
/**
 * The /metrics text, in bytes. Its largest render, every route, method and status counted
 * with 20-digit values, is about 256 KiB (tests/unit/test_metrics.c renders it).
 */
#define GW_MAX_METRICS_BYTES (1024 * 1024)
/** Worker threads (each one event loop). */
#define GW_MAX_WORKERS 64
/**
 * The upstream pool of a worker is split over this many libcurl multi handles at most
 * (upstream.pool_shards)...
 */
#define GW_MAX_POOL_SHARDS 64
/**
 * ...and with upstream.pool_shards = 0, over one per this many pool connections: libcurl 7.88
 * walks a multi handle's whole connection cache twice per transfer, which at this size costs
 * about what the walks cost at c=100 (bench/README.md, "libcurl's pool and the loop").
 */
#define GW_POOL_SHARD_CONNS 128
/**
 * The contact cache's write generations: one counter per stripe of contact ids (cache.c). A
 * write bumps its stripe; a read's answer is stored only when its stripe did not move while it
 * was in flight. Two contacts that share a stripe only cost each other a store, never a stale
 * answer.
 */
#define GW_CACHE_GEN_STRIPES 4096
/** The contact cache's hash buckets: at least this many, at most GW_CACHE_MAX_BUCKETS. */
#define GW_CACHE_MIN_BUCKETS 64
#define GW_CACHE_MAX_BUCKETS (1 << 20)
/** Buckets of a worker's table of reads in flight (single flight, calls.c). */
#define GW_FLIGHT_BUCKETS 256
/** Buckets of a worker's table of contacts with writes in line (ordering, calls.c). */
#define GW_LANE_BUCKETS 256
/**
 * A call handed to its contact's home worker (homes.c) whose answer has not come back this
 * long after its deadline ends as timed out on its caller's worker. The home enforces the
 * deadline itself; this only bounds the wait when the home cannot answer (it is stopping).
 * The calls waiting in a home's inbox are bounded by the requests in flight: one each.
 */
#define GW_HANDOFF_GRACE_MS 250
/**
 * An ETag hcgw sends, NUL included: a quoted 32-digit hex hash, and "-gz" inside the quotes
 * for the gzip-compressed answer (cachectl.h).
 */
#define GW_ETAG_BYTES 38

/* ---- Compression of answers (gzip.c) ---- */

/** compression.min_bytes by default: a smaller answer is sent as it is. */
#define GW_GZIP_MIN_BYTES_DEFAULT 1024
/** compression.level by default (zlib 1..9): nginx's default, measured in docs/performance.md. */
#define GW_GZIP_LEVEL_DEFAULT 1
/**
 * A request's Accept-Encoding lines, together: past this many bytes they are not read, and the
 * answer goes uncompressed. What browsers and HTTP libraries send is under 40 bytes.
 */
#define GW_MAX_ACCEPT_ENCODING_BYTES 256
/**
 * zlib's deflate bounds, fixed for every answer: a 32 KiB window (windowBits 15) and memLevel 8,
 * so that a worker's one stream holds (1 << (15 + 2)) + (1 << (8 + 9)) bytes, 256 KiB, plus
 * about 6 KiB of state (zlib.h, deflateInit2). The compressed body is never larger than the
 * answer itself, which has its own bound.
 */
#define GW_GZIP_WINDOW_BITS 15
#define GW_GZIP_MEM_LEVEL 8
/**
 * A worker's deflater writes into this much memory of its own first; an answer whose gzip is
 * longer (a body of several hundred KiB) gathers it in a buffer that doubles, never past the
 * body's size. A 100-customer list's gzip is about 5.5 KB.
 */
#define GW_GZIP_SCRATCH_BYTES 65536

/* ---- Redis: the connection (redis.c), the shared quota (redis_quota.c), idempotency ---- */

/** redis.url: at most this many bytes. */
#define GW_MAX_REDIS_URL_BYTES 512
/** A host name hcgw looks up (resolve.c): a DNS name is at most 253 bytes. */
#define GW_MAX_HOSTNAME_BYTES 253
/** The host of redis.url: a name, or an IP literal (which is shorter). */
#define GW_MAX_REDIS_HOST_BYTES GW_MAX_HOSTNAME_BYTES
/** The database number of redis.url: 0 to this. */
#define GW_MAX_REDIS_DB 65535
/** redis.username: 1 to this many bytes of visible ASCII. */
#define GW_MAX_REDIS_USERNAME_BYTES 128
/** The password in redis.password_file: 1 to this many bytes of visible ASCII. */
#define GW_MAX_REDIS_PASSWORD_BYTES 512
/** redis.key_prefix: 1 to this many bytes of [A-Za-z0-9:._-]. */
#define GW_MAX_REDIS_PREFIX_BYTES 64
/** redis.timeout_ms: 1 to this. */
#define GW_MAX_REDIS_TIMEOUT_MS 10000
/** redis.expected_replicas: 1 to this many hcgw processes share one HelpCrunch account. */
#define GW_MAX_REPLICAS 1024
/** Commands sent on one Redis connection and not yet answered; past it a command is refused. */
#define GW_REDIS_MAX_PENDING 1024
/** Bytes of Redis answers read and not yet parsed; past it the connection is dropped. */
#define GW_REDIS_MAX_REPLY_BYTES 65536
/**
 * Resolving the host, connecting, AUTH and SELECT must end within this, or within
 * redis.timeout_ms when that is longer; then the attempt failed.
 */
#define GW_REDIS_CONNECT_TIMEOUT_MS 1000
/** The first wait before connecting again after a failure; it doubles after each failure... */
#define GW_REDIS_BACKOFF_MIN_MS 100
/** ...up to this (each wait is drawn between half of it and all of it). */
#define GW_REDIS_BACKOFF_MAX_MS 5000
/** The last connection error kept for gw_redis_last_error and log lines, NUL included. */
#define GW_REDIS_ERROR_BYTES 256
/**
 * The shared cache (redis_cache.h): a contact's write mark lasts this long, so a read that
 * began longer ago than this is never stored (it cannot tell whether a write ended meanwhile):
 * longer than the longest call (upstream.timeout_ms is at most 600000).
 */
#define GW_REDIS_CACHE_MARK_MS 900000
/**
 * Added to how long ago a call began, by this replica's clock, when Redis compares it with a
 * write mark: covers the loop's clock granularity, so that a doubt refuses a store.
 */
#define GW_REDIS_CACHE_SKEW_MS 10
/** Redis refused a shared cache command (an error answer): the cache stands aside this long. */
#define GW_REDIS_CACHE_REFUSED_MS 30000
/** A customer larger than this is not kept in Redis (an answer must fit in GW_REDIS_MAX_REPLY_BYTES). */
#define GW_REDIS_CACHE_MAX_ENTRY_BYTES 60000
/** Bytes of /proc/self/stat or /proc/stat read for the process_* metrics (btime is early). */
#define GW_PROC_STAT_BYTES 4096
/** Supplementary groups of the process looked at when a key file's group may read it. */
#define GW_MAX_PROCESS_GROUPS 256
/** An Idempotency-Key: 1 to this many characters (idem.h says which). */
#define GW_MAX_IDEM_KEY_BYTES 255
/** The idempotency store's hash buckets: at least this many, at most GW_IDEM_MAX_BUCKETS. */
#define GW_IDEM_MIN_BUCKETS 64
#define GW_IDEM_MAX_BUCKETS (1 << 20)
/**
 * How long a create holding an Idempotency-Key may keep it, past the deadlines of its upstream
 * calls (at most two: the search of a recovery, then the create), before another request
 * with the key may take it over as of unknown outcome. The holder always ends its claim first;
 * this only bounds a claim nobody ends (a store shared by processes, one of which died).
 */
#define GW_IDEM_LEASE_GRACE_MS 5000
/** Customers a recovery search asks for (HelpCrunch's page limit). */
#define GW_IDEM_SEARCH_LIMIT 100
/**
 * The largest final answer an idempotency record keeps in Redis (idem_redis.c): its replay
 * comes back in one answer, which must stay within GW_REDIS_MAX_REPLY_BYTES with room for the
 * rest of it. A larger one leaves the record unknown (a later request finds the contact by a
 * search), as idempotency.max_bytes does.
 */
#define GW_IDEM_REDIS_MAX_BODY_BYTES (GW_REDIS_MAX_REPLY_BYTES - 1024)

/* ---- TLS on the listener (tls.c) ---- */

/** A file of listen.tls (certificate chain, private key, client CAs): at most this many bytes. */
#define GW_MAX_TLS_FILE_BYTES (1024 * 1024)
/**
 * Certificates in listen.tls.cert_file (the server's own, then its intermediates), and in the
 * chain a client presents: at most this many.
 */
#define GW_MAX_TLS_CHAIN 8
/**
 * The URI and DNS names of a client certificate that are compared with the clients' identities:
 * at most this many, of at most this many bytes together (NULs included). A certificate with
 * more names than that names no one.
 */
#define GW_MAX_TLS_PEER_NAMES 16
#define GW_MAX_TLS_PEER_TEXT 4096

/* ---- Browsers (CORS, cors.h) ---- */

/**
 * An origin, as browsers send it and cors.allow_origins lists it: "https://", a host name of
 * at most GW_MAX_HOSTNAME_BYTES (an IP literal is shorter) and ":65535". A request's Origin
 * longer than this names no configured origin.
 */
#define GW_MAX_ORIGIN_BYTES (8 + GW_MAX_HOSTNAME_BYTES + 6)
/** Origins in cors.allow_origins, and in one client's origins. */
#define GW_MAX_CORS_ORIGINS 64
/** A method named by Access-Control-Request-Method: 1 to this many token characters. */
#define GW_MAX_METHOD_BYTES 32
/** cors.max_age_s: 0 to this (a day; Chromium keeps a preflight at most 2 hours anyway). */
#define GW_MAX_CORS_MAX_AGE_S 86400

#endif
