/*
 * script.c: the FIFO of scripted faults and the responses that play them.
 *
 * Tests of the gateway need upstream failures on demand (5xx, HTML error pages, resets,
 * truncated or oversized or slow bodies, 429 with Retry-After); a script entry describes one,
 * and the next /v1 calls consume the queue in order. Entries are validated whole when queued,
 * with unknown keys refused, so that a typo in a test fails loudly instead of silently
 * scripting nothing.
 */
#include "script.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "limits.h"
#include "util.h"

/* What truncate and drip send when the entry gives no body: a plausible customer. */
#define DEFAULT_FAULT_BODY \
    "{\"id\":1568834,\"name\":\"John Doe\",\"email\":\"john.doe@example.com\"," \
    "\"note\":\"hcgw-sim scripted body\"}"
#define DEFAULT_CONTENT_TYPE "application/json"

struct header {
    char *name;
    char *value;
};

struct sim_fault {
    atomic_uint refs;
    enum sim_action action;
    unsigned status;
    char *body;                /* NULL when the entry gave neither body nor json */
    size_t body_len;
    char *content_type;        /* NULL means application/json */
    struct header headers[SIM_SCRIPT_HEADERS_MAX];
    size_t n_headers;
    unsigned long delay_ms;
    unsigned long long size;   /* huge */
    unsigned long interval_ms; /* drip */
    enum sim_coding coding;    /* "encoding": the body (as made) encoded with it */
};

struct slot {
    struct sim_fault *fault; /* the queue's reference */
    unsigned long remaining; /* calls this entry still applies to */
};

struct sim_script {
    struct slot ring[SIM_SCRIPT_QUEUE_MAX];
    size_t head;
    size_t len;
};

/* The state of one streamed body (truncate, huge, drip), freed by MHD with the response. */
struct stream {
    struct sim_fault *fault; /* a reference, so the body outlives the request */
    struct sim_nap *nap;
    int sock;                /* reset: the socket to reset at the cut, -1 if unknown */
    const char *body;
    size_t len;
    struct sim_gzip_stream *gz; /* huge with an encoding: the body encoded as it is made */
};

static const char *const action_names[] = {
    [SIM_ACTION_RESPOND] = "respond",   [SIM_ACTION_CLOSE] = "close",
    [SIM_ACTION_TRUNCATE] = "truncate", [SIM_ACTION_HUGE] = "huge",
    [SIM_ACTION_DRIP] = "drip",         [SIM_ACTION_PASSTHROUGH] = "passthrough",
    [SIM_ACTION_HANG] = "hang",         [SIM_ACTION_RESET] = "reset",
};
#define N_ACTIONS (sizeof(action_names) / sizeof(action_names[0]))

/* Headers MHD computes itself and refuses from the application. */
static const char *const reserved_headers[] = {"Content-Length", "Transfer-Encoding"};


static void fault_free(struct sim_fault *f)
{
    size_t i;

    if (f == NULL)
        return;
    for (i = 0; i < f->n_headers; i++) {
        free(f->headers[i].name);
        free(f->headers[i].value);
    }
    free(f->body);
    free(f->content_type);
    free(f);
}

void sim_fault_release(struct sim_fault *fault)
{
    if (fault != NULL && atomic_fetch_sub(&fault->refs, 1) == 1)
        fault_free(fault);
}

static bool int_in(json_object *v, long long min, long long max, long long *out)
{
    long long n;

    if (!json_object_is_type(v, json_type_int))
        return false;
    n = json_object_get_int64(v);
    if (n < min || n > max)
        return false;
    *out = n;
    return true;
}

/* RFC 9110 token characters: what a header name may be made of. */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return false;
    }
    return true;
}

/* A header value may not smuggle a second header or end the head early. */
static bool is_field_value(const char *s, size_t len)
{
    return strcspn(s, "\r\n") == len;
}

static int headers_compile(json_object *v, struct sim_fault *f, size_t idx, char *err,
                           size_t errlen)
{
    int rc = -1;

    if (!json_object_is_type(v, json_type_object)) {
        snprintf(err, errlen, "entry %zu: headers must be an object of strings", idx);
        goto out;
    }
    json_object_object_foreach(v, name, value) {
        size_t i, vlen;

        if (f->n_headers == SIM_SCRIPT_HEADERS_MAX) {
            snprintf(err, errlen, "entry %zu: at most %u headers", idx, SIM_SCRIPT_HEADERS_MAX);
            goto out;
        }
        if (!is_token(name) || strlen(name) > SIM_SCRIPT_HEADER_NAME_MAX) {
            snprintf(err, errlen, "entry %zu: bad header name", idx);
            goto out;
        }
        for (i = 0; i < sizeof(reserved_headers) / sizeof(reserved_headers[0]); i++) {
            if (strcasecmp(name, reserved_headers[i]) == 0) {
                snprintf(err, errlen, "entry %zu: header %s is set by the server", idx,
                         reserved_headers[i]);
                goto out;
            }
        }
        if (!json_object_is_type(value, json_type_string)) {
            snprintf(err, errlen, "entry %zu: header %s must be a string", idx, name);
            goto out;
        }
        vlen = (size_t)json_object_get_string_len(value);
        if (vlen > SIM_SCRIPT_HEADER_VALUE_MAX ||
            !is_field_value(json_object_get_string(value), vlen)) {
            snprintf(err, errlen, "entry %zu: bad value for header %s", idx, name);
            goto out;
        }
        f->headers[f->n_headers].name = strdup(name);
        f->headers[f->n_headers].value = strdup(json_object_get_string(value));
        f->n_headers++;
        if (f->headers[f->n_headers - 1].name == NULL ||
            f->headers[f->n_headers - 1].value == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

/* Validates one entry into a new fault (one reference) and its count. */
/*
 * "encoding": a body that is sent whole (respond, truncate, reset, drip; their default body
 * when the entry gives none) is encoded once, here; huge is encoded as it is made, and a
 * passthrough's real answer when it is sent. close and hang send no body to encode.
 */
static int encoding_compile(struct sim_fault *f, size_t idx, char *err, size_t errlen)
{
    const char *src;
    size_t len;
    size_t out_len = 0;
    char *out;

    switch (f->action) {
    case SIM_ACTION_CLOSE:
    case SIM_ACTION_HANG:
        snprintf(err, errlen, "entry %zu: encoding needs an action that sends a body", idx);
        return -1;
    case SIM_ACTION_HUGE:
    case SIM_ACTION_PASSTHROUGH:
        break;
    case SIM_ACTION_RESPOND:
    case SIM_ACTION_TRUNCATE:
    case SIM_ACTION_RESET:
    case SIM_ACTION_DRIP:
        src = f->body != NULL ? f->body : f->action == SIM_ACTION_RESPOND ? "" : DEFAULT_FAULT_BODY;
        len = f->body != NULL ? f->body_len : strlen(src);
        out = sim_encode(f->coding, src, len, &out_len);
        if (out == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(f->body);
        f->body = out;
        f->body_len = out_len;
        break;
    }
    return 0;
}

static int entry_compile(json_object *o, size_t idx, struct sim_fault **out,
                         unsigned long *count, char *err, size_t errlen)
{
    struct sim_fault *f = calloc(1, sizeof(*f));
    json_object *json = NULL;
    bool has_status = false, has_body = false, has_json = false, has_delay = false;
    bool has_action = false;
    long long n = 0;
    int rc = -1;

    *out = NULL;
    *count = 1;
    if (f == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    atomic_init(&f->refs, 1);
    f->status = 200;
    f->size = SIM_HUGE_DEFAULT;
    f->interval_ms = SIM_SCRIPT_INTERVAL_DEFAULT_MS;
    if (!json_object_is_type(o, json_type_object)) {
        snprintf(err, errlen, "entry %zu: must be an object", idx);
        goto out;
    }
    json_object_object_foreach(o, key, val) {
        if (strcmp(key, "status") == 0) {
            if (!int_in(val, 100, 599, &n)) {
                snprintf(err, errlen, "entry %zu: status must be an integer from 100 to 599",
                         idx);
                goto out;
            }
            f->status = (unsigned)n;
            has_status = true;
        } else if (strcmp(key, "body") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                snprintf(err, errlen, "entry %zu: body must be a string", idx);
                goto out;
            }
            has_body = true;
        } else if (strcmp(key, "json") == 0) {
            json = val;
            has_json = true;
        } else if (strcmp(key, "content_type") == 0) {
            if (!json_object_is_type(val, json_type_string) ||
                (size_t)json_object_get_string_len(val) > SIM_SCRIPT_CTYPE_MAX ||
                !is_field_value(json_object_get_string(val),
                                (size_t)json_object_get_string_len(val))) {
                snprintf(err, errlen, "entry %zu: content_type must be a short string", idx);
                goto out;
            }
            f->content_type = strdup(json_object_get_string(val));
            if (f->content_type == NULL) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
        } else if (strcmp(key, "headers") == 0) {
            if (headers_compile(val, f, idx, err, errlen) != 0)
                goto out;
        } else if (strcmp(key, "delay_ms") == 0) {
            if (!int_in(val, 0, SIM_SCRIPT_DELAY_MAX_MS, &n)) {
                snprintf(err, errlen, "entry %zu: delay_ms must be an integer from 0 to %lu",
                         idx, SIM_SCRIPT_DELAY_MAX_MS);
                goto out;
            }
            f->delay_ms = (unsigned long)n;
            has_delay = true;
        } else if (strcmp(key, "action") == 0) {
            size_t a;

            for (a = 0; a < N_ACTIONS; a++) {
                if (json_object_is_type(val, json_type_string) &&
                    strcmp(json_object_get_string(val), action_names[a]) == 0)
                    break;
            }
            if (a == N_ACTIONS) {
                snprintf(err, errlen,
                         "entry %zu: action must be respond, close, truncate, reset, huge, "
                         "drip, hang or passthrough", idx);
                goto out;
            }
            f->action = (enum sim_action)a;
            has_action = true;
        } else if (strcmp(key, "size") == 0) {
            if (!int_in(val, (long long)SIM_HUGE_MIN, (long long)SIM_HUGE_MAX, &n)) {
                snprintf(err, errlen, "entry %zu: size must be an integer from %llu to %llu",
                         idx, SIM_HUGE_MIN, SIM_HUGE_MAX);
                goto out;
            }
            f->size = (unsigned long long)n;
        } else if (strcmp(key, "interval_ms") == 0) {
            if (!int_in(val, 0, SIM_SCRIPT_INTERVAL_MAX_MS, &n)) {
                snprintf(err, errlen, "entry %zu: interval_ms must be an integer from 0 to %lu",
                         idx, SIM_SCRIPT_INTERVAL_MAX_MS);
                goto out;
            }
            f->interval_ms = (unsigned long)n;
        } else if (strcmp(key, "encoding") == 0) {
            int c = json_object_is_type(val, json_type_string)
                        ? sim_coding_parse(json_object_get_string(val))
                        : -1;

            if (c < 0) {
                snprintf(err, errlen,
                         "entry %zu: encoding must be \"gzip\", \"deflate\" or \"identity\"",
                         idx);
                goto out;
            }
            f->coding = (enum sim_coding)c;
        } else if (strcmp(key, "count") == 0) {
            if (!int_in(val, 1, SIM_SCRIPT_COUNT_MAX, &n)) {
                snprintf(err, errlen, "entry %zu: count must be an integer from 1 to %lu", idx,
                         SIM_SCRIPT_COUNT_MAX);
                goto out;
            }
            *count = (unsigned long)n;
        } else {
            snprintf(err, errlen, "entry %zu: unknown key \"%.64s\"", idx, key);
            goto out;
        }
    }
    /* json wins over body; either is kept as the exact bytes to send. */
    if (has_json) {
        f->body = sim_json_dump(json, &f->body_len);
    } else if (has_body) {
        json_object *b = json_object_object_get(o, "body");

        f->body_len = (size_t)json_object_get_string_len(b);
        f->body = malloc(f->body_len + 1);
        if (f->body != NULL)
            memcpy(f->body, json_object_get_string(b), f->body_len + 1);
    }
    if ((has_json || has_body) && f->body == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* A bare delay slows the real answer down rather than replacing it. */
    if (!has_action)
        f->action = has_delay && !has_status && !has_body && !has_json ? SIM_ACTION_PASSTHROUGH
                                                                        : SIM_ACTION_RESPOND;
    if (f->coding != SIM_CODING_IDENTITY && encoding_compile(f, idx, err, errlen) != 0)
        goto out;
    *out = f;
    f = NULL;
    rc = 0;
out:
    fault_free(f);
    return rc;
}

struct sim_fault *sim_fault_make(const struct sim_fault_spec *spec)
{
    struct sim_fault *f = calloc(1, sizeof(*f));

    if (f == NULL)
        goto fail;
    atomic_init(&f->refs, 1);
    f->action = spec->action;
    f->status = spec->status;
    f->size = spec->size;
    f->interval_ms = spec->interval_ms;
    if (spec->body != NULL) {
        f->body_len = strlen(spec->body);
        f->body = strdup(spec->body);
        if (f->body == NULL)
            goto fail;
    }
    if (spec->content_type != NULL) {
        f->content_type = strdup(spec->content_type);
        if (f->content_type == NULL)
            goto fail;
    }
    return f;
fail:
    fault_free(f);
    return NULL;
}

struct sim_script *sim_script_new(void)
{
    return calloc(1, sizeof(struct sim_script));
}

void sim_script_clear(struct sim_script *script)
{
    size_t i;

    for (i = 0; i < script->len; i++) {
        struct slot *s = &script->ring[(script->head + i) % SIM_SCRIPT_QUEUE_MAX];

        sim_fault_release(s->fault);
        s->fault = NULL;
    }
    script->head = script->len = 0;
}

void sim_script_free(struct sim_script *script)
{
    if (script == NULL)
        return;
    sim_script_clear(script);
    free(script);
}

size_t sim_script_len(const struct sim_script *script)
{
    return script->len;
}

long sim_script_push(struct sim_script *script, json_object *doc, char *err, size_t errlen)
{
    struct sim_fault *faults[SIM_SCRIPT_QUEUE_MAX];
    unsigned long counts[SIM_SCRIPT_QUEUE_MAX];
    bool is_list = json_object_is_type(doc, json_type_array);
    size_t i, n = is_list ? json_object_array_length(doc) : 1, done = 0;
    long rc = -1;

    if (n > SIM_SCRIPT_QUEUE_MAX - script->len) {
        snprintf(err, errlen, "the script queue holds at most %u entries (%zu waiting)",
                 SIM_SCRIPT_QUEUE_MAX, script->len);
        goto out;
    }
    /* Compile everything first so that a bad entry queues nothing. */
    for (done = 0; done < n; done++) {
        json_object *o = is_list ? json_object_array_get_idx(doc, done) : doc;

        if (entry_compile(o, done, &faults[done], &counts[done], err, errlen) != 0)
            goto out;
    }
    for (i = 0; i < n; i++) {
        struct slot *s = &script->ring[(script->head + script->len) % SIM_SCRIPT_QUEUE_MAX];

        s->fault = faults[i];
        s->remaining = counts[i];
        script->len++;
    }
    done = 0; /* the queue owns them now */
    rc = (long)script->len;
out:
    for (i = 0; i < done; i++)
        sim_fault_release(faults[i]);
    return rc;
}

struct sim_fault *sim_script_pop(struct sim_script *script)
{
    struct slot *s;
    struct sim_fault *f = NULL;

    if (script->len == 0)
        goto out;
    s = &script->ring[script->head];
    f = s->fault;
    if (--s->remaining == 0) {
        /* The last use: the queue's own reference passes to the caller. */
        s->fault = NULL;
        script->head = (script->head + 1) % SIM_SCRIPT_QUEUE_MAX;
        script->len--;
    } else {
        atomic_fetch_add(&f->refs, 1);
    }
out:
    return f;
}

enum sim_action sim_fault_action(const struct sim_fault *fault)
{
    return fault->action;
}

const char *sim_fault_action_name(const struct sim_fault *fault)
{
    return action_names[fault->action];
}

unsigned long sim_fault_delay_ms(const struct sim_fault *fault)
{
    return fault->delay_ms;
}

unsigned sim_fault_status(const struct sim_fault *fault)
{
    return fault->status;
}

enum sim_coding sim_fault_coding(const struct sim_fault *fault)
{
    return fault->coding;
}

/* ---------------------------------------------------------------- streamed bodies */

static void stream_free(void *cls)
{
    struct stream *s = cls;

    sim_gzip_stream_free(s->gz);
    sim_fault_release(s->fault);
    free(s);
}

/* Resets a TCP connection without closing its descriptor, which MHD still owns: connect() to
 * AF_UNSPEC disconnects the socket, and Linux sends a RST for an established one. SO_LINGER 0
 * makes sure that MHD's later close() resets rather than ends it, wherever the first call did
 * not. Closing with SO_LINGER 0 alone would not do: MHD shuts the write side down (a FIN)
 * before it closes, and the client would see a clean end of stream instead of a reset. */
static void reset_socket(int sock)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    struct sockaddr sa;

    if (sock < 0)
        return;
    (void)setsockopt(sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNSPEC;
    (void)connect(sock, &sa, sizeof(sa));
}

/* truncate and reset: the first half of the body, then an error, which makes MHD close the
 * connection with the announced Content-Length unmet; reset first resets it. MHD asks for more
 * only once what it has is sent, so the half is on its way when the cut comes. */
static ssize_t read_truncate(void *cls, uint64_t pos, char *buf, size_t max)
{
    const struct stream *s = cls;
    size_t half = s->len / 2;
    size_t n;

    if (pos >= half) {
        if (s->fault->action == SIM_ACTION_RESET)
            reset_socket(s->sock);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    n = half - (size_t)pos < max ? half - (size_t)pos : max;
    memcpy(buf, s->body + pos, n);
    return (ssize_t)n;
}

/* Bytes [pos, pos + n) of huge's {"pad":"xxx..."} of exactly fault->size bytes. */
static void fill_huge(void *ctx, uint64_t pos, char *buf, size_t n)
{
    static const char head[] = "{\"pad\":\"";
    static const char tail[] = "\"}";
    const struct stream *s = ctx;
    uint64_t tail_at = s->fault->size - (sizeof(tail) - 1);
    uint64_t first_tail;
    size_t i;

    memset(buf, 'x', n);
    for (i = 0; i < n && pos + i < sizeof(head) - 1; i++)
        buf[i] = head[pos + i];
    first_tail = pos < tail_at ? tail_at - pos : 0;
    for (i = first_tail < n ? (size_t)first_tail : n; i < n; i++)
        buf[i] = tail[pos + i - tail_at];
}

/* huge: the body made on the fly. */
static ssize_t read_huge(void *cls, uint64_t pos, char *buf, size_t max)
{
    const struct stream *s = cls;
    uint64_t size = s->fault->size;
    size_t n;

    if (pos >= size)
        return MHD_CONTENT_READER_END_OF_STREAM;
    n = size - pos < max ? (size_t)(size - pos) : max;
    fill_huge(cls, pos, buf, n);
    return (ssize_t)n;
}

/* huge with an encoding: the body made and encoded on the fly (a compression bomb when
 * large); its encoded length is not known ahead, so it goes chunked. */
static ssize_t read_huge_encoded(void *cls, uint64_t pos, char *buf, size_t max)
{
    const struct stream *s = cls;
    long n = sim_gzip_stream_read(s->gz, buf, max);

    (void)pos;
    if (n > 0)
        return (ssize_t)n;
    return n == 0 && max > 0 ? MHD_CONTENT_READER_END_OF_STREAM
                             : MHD_CONTENT_READER_END_WITH_ERROR;
}

/* drip: one byte per call, sleeping interval_ms before every byte but the first. MHD calls
 * again only once the previous byte is on its way, so the client sees a slow trickle. */
static ssize_t read_drip(void *cls, uint64_t pos, char *buf, size_t max)
{
    const struct stream *s = cls;

    if (pos >= s->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max == 0)
        return 0;
    if (pos > 0 && !sim_nap_sleep(s->nap, s->fault->interval_ms))
        return MHD_CONTENT_READER_END_WITH_ERROR; /* shutting down */
    buf[0] = s->body[pos];
    return 1;
}

enum MHD_Result sim_fault_add_headers(const struct sim_fault *fault, struct MHD_Response *resp)
{
    enum MHD_Result rc = MHD_YES;
    size_t i;

    for (i = 0; i < fault->n_headers; i++) {
        if (MHD_add_response_header(resp, fault->headers[i].name, fault->headers[i].value) !=
            MHD_YES)
            rc = MHD_NO;
    }
    return rc;
}

bool sim_fault_has_header(const struct sim_fault *fault, const char *name)
{
    size_t i;

    for (i = 0; i < fault->n_headers; i++) {
        if (strcasecmp(fault->headers[i].name, name) == 0)
            return true;
    }
    return false;
}

struct MHD_Response *sim_fault_response(struct sim_fault *fault, struct sim_nap *nap, int sock)
{
    struct MHD_Response *resp = NULL;
    struct stream *s = NULL;
    uint64_t size = 0;
    MHD_ContentReaderCallback reader = NULL;

    switch (fault->action) {
    case SIM_ACTION_RESPOND:
        resp = MHD_create_response_from_buffer(fault->body_len, fault->body ? fault->body : "",
                                               MHD_RESPMEM_MUST_COPY);
        break;
    case SIM_ACTION_TRUNCATE:
    case SIM_ACTION_RESET:
    case SIM_ACTION_HUGE:
    case SIM_ACTION_DRIP:
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            goto out;
        atomic_fetch_add(&fault->refs, 1);
        s->fault = fault;
        s->nap = nap;
        s->sock = sock;
        s->body = fault->body ? fault->body : DEFAULT_FAULT_BODY;
        s->len = fault->body ? fault->body_len : strlen(DEFAULT_FAULT_BODY);
        size = s->len;
        reader = fault->action == SIM_ACTION_DRIP ? read_drip : read_truncate;
        if (fault->action == SIM_ACTION_HUGE) {
            size = fault->size;
            reader = read_huge;
        }
        if (fault->action == SIM_ACTION_HUGE && fault->coding != SIM_CODING_IDENTITY) {
            s->gz = sim_gzip_stream_new(fault->coding, fault->size, fill_huge, s);
            if (s->gz == NULL) {
                stream_free(s);
                goto out;
            }
            size = MHD_SIZE_UNKNOWN;
            reader = read_huge_encoded;
        }
        resp = MHD_create_response_from_callback(size, SIM_STREAM_BLOCK, reader, s, stream_free);
        if (resp == NULL) {
            stream_free(s);
            goto out;
        }
        break;
    case SIM_ACTION_CLOSE:
    case SIM_ACTION_PASSTHROUGH:
    case SIM_ACTION_HANG:
        goto out;
    }
    if (resp == NULL)
        goto out;
    /* An explicit Content-Type among the headers wins over content_type. */
    if ((!sim_fault_has_header(fault, "Content-Type") &&
         MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                 fault->content_type ? fault->content_type
                                                     : DEFAULT_CONTENT_TYPE) != MHD_YES) ||
        (fault->coding != SIM_CODING_IDENTITY &&
         !sim_fault_has_header(fault, "Content-Encoding") &&
         MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
                                 sim_coding_name(fault->coding)) != MHD_YES) ||
        sim_fault_add_headers(fault, resp) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
out:
    return resp;
}
