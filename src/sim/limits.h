/*
 * limits.h: every bound hcgw-sim enforces, named in one place.
 *
 * The simulator runs in tests next to sanitizers and under load tests that open thousands of
 * connections, so nothing in it may grow without a limit: bodies, logs, queues, sleeps and the
 * store are all capped here. Change a number here, not in the code that uses it.
 */
#ifndef HCGW_SIM_LIMITS_H
#define HCGW_SIM_LIMITS_H

/* HTTP intake. */
#define SIM_BODY_MAX (1024u * 1024u)        /* request body; more is answered 413 */
#define SIM_URI_MAX 8192u                   /* raw URI kept for the request log */
#define SIM_METHOD_MAX 32u                  /* HTTP method kept for the access log */
#define SIM_JSON_DEPTH_MAX 32               /* nesting accepted in any JSON body */
#define SIM_CONNECTION_LIMIT 4096u          /* concurrent connections (one thread each) */
#define SIM_CONNECTION_TIMEOUT_S 120u       /* idle keep-alive connections are closed after it */
#define SIM_LISTEN_BACKLOG 4096u            /* load tests connect in bursts */
#define SIM_THREAD_STACK (1024u * 1024u)    /* per connection thread; 4096 x 8 MiB is too much */
#define SIM_FD_SPARE 256u                   /* descriptors beyond the connection limit */

/* Options. */
#define SIM_KEY_MAX 512u                    /* the API key accepted in Authorization */
#define SIM_LATENCY_MAX_MS 600000ul         /* latency_ms, latency_jitter_ms */
#define SIM_RATE_LIMIT_MAX 1000000000ul     /* rate_limit, requests per window */
#define SIM_RATE_WINDOW_MS 60000ll          /* the fixed rate-limit window */

/* The request journal (/_sim/stats, /_sim/requests). */
#define SIM_JOURNAL_RING 256u               /* requests remembered, oldest dropped first */
#define SIM_JOURNAL_BODY_MAX (64u * 1024u)  /* body bytes remembered per request */
#define SIM_JOURNAL_ROUTES_MAX 64u          /* distinct "METHOD pattern" counters */
#define SIM_ROUTE_KEY_MAX 64u               /* length of one "METHOD pattern" key */

/* The customer store. */
#define SIM_STORE_MAX 100000u               /* customers held at once */
#define SIM_TAGS_MAX 100u                   /* tags on one customer or in one request */
#define SIM_TAG_NAME_MAX 255u               /* bytes in a tag name */
#define SIM_PAGE_LIMIT_MAX 100              /* HelpCrunch's own page size bound */
#define SIM_FILTERS_MAX 32u                 /* conditions in one search */
#define SIM_FAIL_CODE_MAX 64u               /* an error code such as "filter[3].field" */
#define SIM_FAIL_MESSAGE_MAX 160u           /* an error message */

/* The fault script (/_sim/script). */
#define SIM_SCRIPT_QUEUE_MAX 1024u          /* entries waiting in the queue */
#define SIM_SCRIPT_COUNT_MAX 1000000ul      /* calls one entry may apply to */
#define SIM_SCRIPT_HEADERS_MAX 32u          /* extra headers in one entry */
#define SIM_SCRIPT_HEADER_NAME_MAX 256u     /* bytes in one header name */
#define SIM_SCRIPT_HEADER_VALUE_MAX 4096u   /* bytes in one header value */
#define SIM_SCRIPT_CTYPE_MAX 256u           /* bytes in content_type */
#define SIM_SCRIPT_DELAY_MAX_MS 600000ul    /* delay_ms */
#define SIM_SCRIPT_INTERVAL_MAX_MS 600000ul /* interval_ms of "drip" */
#define SIM_SCRIPT_INTERVAL_DEFAULT_MS 1000ul
#define SIM_HUGE_MIN 10ull                  /* the smallest {"pad":""} */
#define SIM_HUGE_DEFAULT (9ull * 1024u * 1024u)
#define SIM_HUGE_MAX (1024ull * 1024u * 1024u)
#define SIM_STREAM_BLOCK (16u * 1024u)      /* bytes produced per content-reader call */

/* The fault knobs (/_sim/faults and their flags); latency and jitter use SIM_LATENCY_MAX_MS,
 * drip_interval_ms SIM_SCRIPT_INTERVAL_MAX_MS and huge_bytes SIM_HUGE_MIN..SIM_HUGE_MAX. */
#define SIM_ERROR_STATUS_MIN 400ull         /* error_status: an error, never a success */
#define SIM_ERROR_STATUS_MAX 599ull
#define SIM_ERROR_STATUS_DEFAULT 503ull
#define SIM_ERROR_NEXT_MAX 1000000ull       /* error_next */
#define SIM_ERROR_RETRY_AFTER_S 1           /* Retry-After of an error_status 429 */
#define SIM_RATE_SUM_SLACK 1e-9             /* float slack when the rates add up to 1 */

/** Keys the simulator accepts at once (POST /_sim/keys, for key rotation tests). */
#define SIM_MAX_KEYS 4

#endif /* HCGW_SIM_LIMITS_H */
