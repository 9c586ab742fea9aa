/*
 * W3C Trace Context, Level 1 (https://www.w3.org/TR/trace-context/): the traceparent and
 * tracestate request headers read, checked against the specification's grammar and limits, and
 * the traceparent of a child span written. Everything a caller sends is advisory: what does
 * not parse is replaced (a traceparent) or dropped (a tracestate), never refused.
 */
#include "hcgw/trace.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "hcgw/log.h"
#include "hcgw/text.h"

/* Offsets in a traceparent: "vv-<32 trace-id>-<16 parent-id>-ff". */
#define TP_TRACE_AT 3
#define TP_PARENT_AT (TP_TRACE_AT + 2 * GW_TRACE_ID_BYTES + 1)
#define TP_FLAGS_AT (TP_PARENT_AT + 2 * GW_SPAN_ID_BYTES + 1)

/* tracestate keys (Level 1): a simple key, or tenant "@" system. */
#define TS_MAX_SIMPLE_KEY 256
#define TS_MAX_TENANT 241
#define TS_MAX_SYSTEM 14
/* A value: 1 to 256 printable characters. */
#define TS_MAX_VALUE 256

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The value of a lowercase hex digit, or -1 (HEXDIGLC: an uppercase digit is not one). */
static int hex_lc(char c)
{
    if (c >= 'A' && c <= 'F')
        return -1;
    return gw_text_hex_value(c);
}

/* Decode 2n lowercase hex digits into n bytes; false on any other character. */
static bool hex_decode(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_lc(s[2 * i]);
        int lo = hex_lc(s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    uint8_t acc = 0;

    for (size_t i = 0; i < n; i++)
        acc |= b[i];
    return acc == 0;
}

/* Trim spaces and tabs at both ends of [*s, *s + *len). */
static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && is_ows(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

int gw_trace_parse_parent(const char *s, size_t len, uint8_t trace_id[GW_TRACE_ID_BYTES],
                          uint8_t parent_id[GW_SPAN_ID_BYTES], uint8_t *flags)
{
    uint8_t version;
    uint8_t tid[GW_TRACE_ID_BYTES];
    uint8_t pid[GW_SPAN_ID_BYTES];
    uint8_t f;

    trim_ows(&s, &len);
    if (len < GW_TRACEPARENT_LEN || len >= GW_MAX_TRACEPARENT_BYTES)
        return -1;
    /* A version the parser cannot read means a new trace; ff is forbidden. */
    if (!hex_decode(s, &version, 1) || s[2] != '-' || version == 0xff)
        return -1;
    if (!hex_decode(s + TP_TRACE_AT, tid, sizeof(tid)) || s[TP_PARENT_AT - 1] != '-' ||
        !hex_decode(s + TP_PARENT_AT, pid, sizeof(pid)) || s[TP_FLAGS_AT - 1] != '-' ||
        !hex_decode(s + TP_FLAGS_AT, &f, 1))
        return -1;
    /* Version 00 is exactly 55 characters; a later version may add fields after a dash, which
     * are not looked at (the specification's rules for versions it does not know). */
    if (len > GW_TRACEPARENT_LEN && (version == 0 || s[GW_TRACEPARENT_LEN] != '-'))
        return -1;
    if (all_zero(tid, sizeof(tid)) || all_zero(pid, sizeof(pid)))
        return -1;
    memcpy(trace_id, tid, sizeof(tid));
    memcpy(parent_id, pid, sizeof(pid));
    *flags = f;
    return 0;
}

static bool is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* lcalpha / DIGIT / "_" / "-" / "*" / "/": a key's characters after its first. */
static bool is_keychar(char c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

static bool valid_id_part(const char *s, size_t len, bool digit_first, size_t max)
{
    if (len == 0 || len > max)
        return false;
    if (!is_lcalpha(s[0]) && !(digit_first && is_digit(s[0])))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_keychar(s[i]))
            return false;
    return true;
}

/* key = simple-key / multi-tenant-key (tenant-id "@" system-id). */
static bool valid_key(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    size_t tenant;

    if (at == NULL)
        return valid_id_part(s, len, false, TS_MAX_SIMPLE_KEY);
    tenant = (size_t)(at - s);
    return valid_id_part(s, tenant, true, TS_MAX_TENANT) &&
           valid_id_part(at + 1, len - tenant - 1, false, TS_MAX_SYSTEM);
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr: printable but "," and "=". */
static bool valid_value(const char *s, size_t len)
{
    if (len == 0 || len > TS_MAX_VALUE || s[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return true;
}

struct ts_member {
    const char *key;
    size_t key_len;
};

long gw_trace_check_state(const char *s, size_t len, char *out, size_t cap)
{
    struct ts_member seen[GW_MAX_TRACESTATE_MEMBERS];
    size_t n = 0;
    size_t used = 0;
    size_t pos = 0;

    if (len > GW_MAX_TRACESTATE_BYTES || out == NULL || cap == 0)
        return -1;
    while (pos <= len) {
        const char *m = s + pos;
        const char *comma = memchr(m, ',', len - pos);
        size_t mlen = comma != NULL ? (size_t)(comma - m) : len - pos;
        const char *eq;
        size_t klen;

        pos += mlen + 1;
        /* Spaces and tabs around a member are not part of it; an empty member is allowed
         * (fields joined from several headers make them) and is not counted. */
        trim_ows(&m, &mlen);
        if (mlen == 0)
            continue;
        if (n == GW_MAX_TRACESTATE_MEMBERS)
            return -1;
        eq = memchr(m, '=', mlen);
        if (eq == NULL)
            return -1;
        klen = (size_t)(eq - m);
        if (!valid_key(m, klen) || !valid_value(eq + 1, mlen - klen - 1))
            return -1;
        /* One entry per key: a list with a key twice is invalid as a whole. */
        for (size_t i = 0; i < n; i++)
            if (seen[i].key_len == klen && memcmp(seen[i].key, m, klen) == 0)
                return -1;
        seen[n].key = m;
        seen[n].key_len = klen;
        n++;
        if (used + (used > 0) + mlen + 1 > cap)
            return -1;
        if (used > 0)
            out[used++] = ',';
        memcpy(out + used, m, mlen);
        used += mlen;
    }
    out[used] = '\0';
    return (long)used;
}

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct gw_trace_headers *h = cls;
    size_t n;

    (void)kind;
    if (key == NULL || value == NULL)
        return MHD_YES;
    if (strcasecmp(key, "traceparent") == 0) {
        h->parents++;
        h->parent = value;
    } else if (strcasecmp(key, "tracestate") == 0 && !h->state_too_long) {
        /* Several fields are one list, joined in order (RFC 9110, section 5.3). */
        n = strlen(value);
        if (h->state_len + (h->state_sent ? 1 : 0) + n > GW_MAX_TRACESTATE_BYTES) {
            h->state_too_long = true;
        } else {
            if (h->state_sent)
                h->state[h->state_len++] = ',';
            memcpy(h->state + h->state_len, value, n);
            h->state_len += n;
            h->state[h->state_len] = '\0';
        }
        h->state_sent = true;
    }
    return MHD_YES;
}

void gw_trace_read(struct MHD_Connection *conn, struct gw_trace_headers *h)
{
    h->parent = NULL;
    h->parents = 0;
    h->state_sent = false;
    h->state_too_long = false;
    h->state_len = 0;
    h->state[0] = '\0';
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect, h);
}

void gw_trace_begin(struct gw_trace *t, const struct gw_trace_headers *h,
                    const uint8_t fresh[GW_TRACE_FRESH_BYTES], bool keep_state)
{
    char state[GW_MAX_TRACESTATE_BYTES + 1];
    uint8_t flags = 0;
    long n;

    memset(t, 0, sizeof(*t));
    if (h != NULL && h->parents > 0) {
        /* Two traceparent fields cannot be told apart: neither is trusted. */
        if (h->parents == 1 && gw_trace_parse_parent(h->parent, strlen(h->parent), t->trace_id,
                                                     t->parent_id, &flags) == 0)
            t->origin = GW_TRACE_CONTINUED;
        else
            t->origin = GW_TRACE_RESTARTED;
    }
    if (t->origin == GW_TRACE_CONTINUED) {
        /* Version 00 defines one flag; the others are passed on as zero. */
        t->flags = flags & GW_TRACE_FLAG_SAMPLED;
    } else {
        memcpy(t->trace_id, fresh, GW_TRACE_ID_BYTES);
        if (all_zero(t->trace_id, GW_TRACE_ID_BYTES))
            t->trace_id[GW_TRACE_ID_BYTES - 1] = 1;
        /* hcgw records every request's span in its access line: a definite recording
         * decision, which the sampled flag says. */
        t->flags = GW_TRACE_FLAG_SAMPLED;
    }
    memcpy(t->span_id, fresh + GW_TRACE_ID_BYTES, GW_SPAN_ID_BYTES);
    if (all_zero(t->span_id, GW_SPAN_ID_BYTES))
        t->span_id[GW_SPAN_ID_BYTES - 1] = 1;
    /* A tracestate belongs to the traceparent it came with: never to a trace hcgw started. */
    if (!keep_state || t->origin != GW_TRACE_CONTINUED || !h->state_sent || h->state_too_long)
        return;
    n = gw_trace_check_state(h->state, h->state_len, state, sizeof(state));
    if (n > 0)
        t->state = strdup(state);
}

void gw_trace_format_parent(const struct gw_trace *t, const uint8_t span[GW_SPAN_ID_BYTES],
                            char out[GW_TRACEPARENT_LEN + 1])
{
    uint8_t flags = t->flags & GW_TRACE_FLAG_SAMPLED;

    memcpy(out, "00-", 3);
    gw_text_hex_encode(t->trace_id, GW_TRACE_ID_BYTES, out + TP_TRACE_AT);
    out[TP_PARENT_AT - 1] = '-';
    gw_text_hex_encode(span, GW_SPAN_ID_BYTES, out + TP_PARENT_AT);
    out[TP_FLAGS_AT - 1] = '-';
    gw_text_hex_encode(&flags, 1, out + TP_FLAGS_AT);
}

void gw_trace_log(struct gw_logline *l, const struct gw_trace *t)
{
    char hex[2 * GW_TRACE_ID_BYTES + 1];

    gw_text_hex_encode(t->trace_id, GW_TRACE_ID_BYTES, hex);
    gw_log_str(l, "trace_id", hex);
    gw_text_hex_encode(t->span_id, GW_SPAN_ID_BYTES, hex);
    gw_log_str(l, "span_id", hex);
    if (t->origin == GW_TRACE_CONTINUED) {
        gw_text_hex_encode(t->parent_id, GW_SPAN_ID_BYTES, hex);
        gw_log_str(l, "parent_span_id", hex);
    } else if (t->origin == GW_TRACE_RESTARTED) {
        gw_log_str(l, "traceparent", "invalid");
    }
}

void gw_trace_copy(struct gw_trace *dst, const struct gw_trace *src)
{
    *dst = *src;
    dst->state = src->state != NULL ? strdup(src->state) : NULL;
}

void gw_trace_clear(struct gw_trace *t)
{
    free(t->state);
    memset(t, 0, sizeof(*t));
}
