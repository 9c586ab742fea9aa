/*
 * util.h: small helpers every part of hcgw-sim needs: strict number parsing (the house bans
 * atoi), bounded JSON parsing of request bodies, serialization and a monotonic clock.
 */
#ifndef HCGW_SIM_UTIL_H
#define HCGW_SIM_UTIL_H

#include <stddef.h>

#include <json-c/json.h>

/** Flags for every JSON text hcgw-sim writes: compact, and "/" left unescaped for URLs. */
#define SIM_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/**
 * Parses a whole string as a decimal integer: an optional '-' and digits, nothing else (no
 * spaces, no '+', no trailing text). Returns 0 and sets *out, or -1 when the text is not such a
 * number or does not fit a long long. Thread-safe.
 */
int sim_parse_ll(const char *s, long long *out);

/**
 * Parses a whole string as a finite decimal number ("0.25", "1", "5e-1"): no spaces, no sign
 * in front, no hex, no inf or nan. Returns 0 and sets *out, or -1. Thread-safe.
 */
int sim_parse_double(const char *s, double *out);

/**
 * Parses buf[0..len) as exactly one strict JSON value (trailing whitespace allowed, nesting
 * bounded by SIM_JSON_DEPTH_MAX, UTF-8 validated). buf[len] must be '\0'. Returns 0 and sets
 * *out to the value, which the caller owns and puts (it is NULL for the literal null), or -1
 * when the text is not valid JSON or memory ran out. Thread-safe.
 */
int sim_json_parse(const char *buf, size_t len, json_object **out);

/**
 * Serializes obj (NULL serializes as null) with SIM_JSON_FLAGS into a new heap string the
 * caller frees; *len (when not NULL) gets its length. Returns NULL when memory ran out. The
 * caller must own obj or hold the lock that guards it.
 */
char *sim_json_dump(json_object *obj, size_t *len);

/** Milliseconds of CLOCK_MONOTONIC; only differences mean anything. Thread-safe. */
long long sim_now_ms(void);

#endif /* HCGW_SIM_UTIL_H */
