/*
 * store.c: the customers of the simulated HelpCrunch account, kept as json-c objects in an
 * array sorted by id, and every operation the REST API offers on them.
 *
 * The validation rules and error codes copy what HelpCrunch documents (docs/simulator.md says
 * what is simulated): a field path as the code ("filter[0].field", "limit", "tags") and
 * Symfony-style messages. Operations work on a copy of a customer and swap it in only when
 * everything succeeded, so a failed call never leaves a half-updated customer behind. Nothing
 * here locks: api.c holds its lock around every call.
 */
#include "store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define FIRST_NEW_ID 1568838LL        /* ids after the seed, as the brief of the sim asks */
#define DEFAULT_TAG_COLOR "#c377e0"   /* HelpCrunch's colour for a tag created without one */

#define MSG_BLANK "This value should not be blank."
#define MSG_CHOICE "The value you selected is not a valid choice."
#define MSG_NUMERIC "This value should be of type numeric."
#define MSG_STRING "This value should be of type string."

struct sim_store {
    json_object **items; /* customers, ascending id */
    size_t len;
    size_t cap;
    long long next_id;
};

/* The seed: four customers covering tags, a blocked one, a null device and nulls in general.
 * lastSeen is deliberately not in id order so that sorting by it is visible. */
static const char seed_json[] =
    "[{\"id\":1568834,\"name\":\"John Doe\",\"email\":\"john.doe@example.com\","
    "\"userId\":\"user_1568834\",\"company\":\"Example Inc.\",\"phone\":\"+10233456781\","
    "\"firstSeen\":\"1603885746\",\"lastSeen\":\"1700000000\","
    "\"location\":{\"regionCode\":\"Kyyivs'ka Oblast\",\"countryCode\":\"UA\",\"city\":\"Kyiv\"},"
    "\"device\":{\"id\":1568834,\"ip\":\"192.0.2.1\",\"timezone\":\"Europe/Kiev\","
    "\"platform\":\"desktop\",\"userAgent\":\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)\"},"
    "\"unsubscribed\":false,\"blocked\":false,\"source\":\"https://example.com\","
    "\"referer\":\"https://example.com\",\"lastPage\":\"https://example.com/pricing\","
    "\"locale\":\"uk\",\"createdFrom\":\"telegram\",\"integrationId\":\"465847687\","
    "\"notes\":\"Seed customer with two tags\","
    "\"tags\":[{\"name\":\"vip\",\"color\":\"#ff0000\"},{\"name\":\"Lead\",\"color\":\"#c57de0\"}],"
    "\"customData\":{\"subscription_status\":\"active\",\"number_of_payments\":15,"
    "\"last_paid_amount\":15.99,\"last_payment_was_successful\":true}},"

    "{\"id\":1568835,\"name\":\"Jane Roe\",\"email\":\"jane.roe@gmail.com\","
    "\"userId\":\"user_1568835\",\"company\":\"Roe Ltd\",\"phone\":\"+442071838750\","
    "\"firstSeen\":\"1610000000\",\"lastSeen\":\"1690000000\","
    "\"location\":{\"regionCode\":\"England\",\"countryCode\":\"GB\",\"city\":\"London\"},"
    "\"device\":{\"id\":1568835,\"ip\":\"198.51.100.7\",\"timezone\":\"Europe/London\","
    "\"platform\":\"mobile\",\"userAgent\":\"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)\"},"
    "\"unsubscribed\":false,\"blocked\":true,\"source\":null,\"referer\":null,"
    "\"lastPage\":null,\"locale\":\"en\",\"createdFrom\":\"widget\",\"integrationId\":null,"
    "\"notes\":\"Blocked seed customer\",\"tags\":[],\"customData\":{}},"

    "{\"id\":1568836,\"name\":\"Max Mustermann\",\"email\":\"max.mustermann@gmail.com\","
    "\"userId\":null,\"company\":null,\"phone\":null,"
    "\"firstSeen\":\"1620000000\",\"lastSeen\":\"1710000000\",\"location\":null,"
    "\"device\":null,\"unsubscribed\":true,\"blocked\":false,\"source\":null,"
    "\"referer\":null,\"lastPage\":null,\"locale\":\"de\",\"createdFrom\":\"api\","
    "\"integrationId\":null,\"notes\":null,"
    "\"tags\":[{\"name\":\"PPC\",\"color\":\"#c377e0\"}],\"customData\":{\"plan\":\"free\"}},"

    "{\"id\":1568837,\"name\":\"Ada Lovelace\",\"email\":\"ada@example.org\","
    "\"userId\":\"user_1568837\",\"company\":\"Analytical Engines\",\"phone\":\"+15551234567\","
    "\"firstSeen\":\"1630000000\",\"lastSeen\":\"1630000100\","
    "\"location\":{\"regionCode\":\"California\",\"countryCode\":\"US\",\"city\":\"San Jose\"},"
    "\"device\":{\"id\":1568837,\"ip\":\"203.0.113.9\",\"timezone\":\"America/Los_Angeles\","
    "\"platform\":\"desktop\",\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64)\"},"
    "\"unsubscribed\":false,\"blocked\":false,\"source\":\"https://example.org/docs\","
    "\"referer\":\"https://search.example\",\"lastPage\":\"https://example.org/contact\","
    "\"locale\":\"en\",\"createdFrom\":\"email\",\"integrationId\":null,"
    "\"notes\":\"Lower-case lead tag: tag names are case-sensitive\","
    "\"tags\":[{\"name\":\"lead\",\"color\":\"#00aa00\"}],\"customData\":{}}]";

/* The customer fields a request may set, in the order HelpCrunch prints them. */
enum field_kind { FK_STRING, FK_BOOL, FK_OBJECT, FK_TIME, FK_TAGS, FK_CUSTOM };

static const struct field {
    const char *name;
    enum field_kind kind;
} fields[] = {
    {"name", FK_STRING},      {"email", FK_STRING},       {"userId", FK_STRING},
    {"company", FK_STRING},   {"phone", FK_STRING},       {"firstSeen", FK_TIME},
    {"lastSeen", FK_TIME},    {"location", FK_OBJECT},    {"device", FK_OBJECT},
    {"unsubscribed", FK_BOOL}, {"blocked", FK_BOOL},      {"source", FK_STRING},
    {"referer", FK_STRING},   {"lastPage", FK_STRING},    {"locale", FK_STRING},
    {"createdFrom", FK_STRING}, {"integrationId", FK_STRING}, {"notes", FK_STRING},
    {"tags", FK_TAGS},        {"customData", FK_CUSTOM},
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* Search: the fields a filter may name and how their values compare. */
enum sfield_kind { SF_ID, SF_TIME, SF_STRING, SF_TAGS };

static const struct search_field {
    const char *name;
    const char *key;
    enum sfield_kind kind;
} search_fields[] = {
    {"customers.id", "id", SF_ID},           {"customers.name", "name", SF_STRING},
    {"customers.email", "email", SF_STRING}, {"customers.userId", "userId", SF_STRING},
    {"customers.company", "company", SF_STRING}, {"customers.phone", "phone", SF_STRING},
    {"customers.tagsData", "tags", SF_TAGS}, {"customers.firstSeen", "firstSeen", SF_TIME},
    {"customers.lastSeen", "lastSeen", SF_TIME},
};
#define N_SEARCH_FIELDS (sizeof(search_fields) / sizeof(search_fields[0]))

enum op { OP_EQ, OP_NE, OP_CONTAINS, OP_GT, OP_GE, OP_LT, OP_LE };

static const char *const op_names[] = {
    [OP_EQ] = "=", [OP_NE] = "!=", [OP_CONTAINS] = "~", [OP_GT] = ">",
    [OP_GE] = ">=", [OP_LT] = "<", [OP_LE] = "<=",
};
#define N_OPS (sizeof(op_names) / sizeof(op_names[0]))

/* One parsed search condition. Its pointers borrow from the request body. */
struct filter {
    const struct search_field *field;
    enum op op;
    long long num;      /* the value as a number (SF_ID, SF_TIME, numeric operators) */
    const char *text;   /* the value as text; NULL for a JSON null */
    char num_text[32];  /* backing store of text when the value was an integer */
    json_object *tags;  /* SF_TAGS: the array of tag names */
};

/* ---------------------------------------------------------------- small helpers */

static void fail_set(struct sim_fail *fail, enum sim_fail_kind kind, const char *code,
                     const char *message)
{
    fail->kind = kind;
    snprintf(fail->code, sizeof(fail->code), "%s", code);
    snprintf(fail->message, sizeof(fail->message), "%s", message);
}

static void fail_oom(struct sim_fail *fail)
{
    fail_set(fail, SIM_FAIL_INTERNAL, "internal_error", "Out of memory");
}

static void fail_filter(struct sim_fail *fail, size_t i, const char *part, const char *message)
{
    fail->kind = SIM_FAIL_INVALID;
    snprintf(fail->code, sizeof(fail->code), "filter[%zu].%s", i, part);
    snprintf(fail->message, sizeof(fail->message), "%s", message);
}

/* json_object_object_add keeps val only on success; these put it on failure so callers have a
 * single owner to think about. */
static int obj_set(json_object *obj, const char *key, json_object *val)
{
    int rc = json_object_object_add(obj, key, val);

    if (rc != 0)
        json_object_put(val);
    return rc;
}

static int arr_push(json_object *arr, json_object *val)
{
    int rc = -1;

    if (val == NULL)
        goto out;
    rc = json_object_array_add(arr, val);
    if (rc != 0)
        json_object_put(val);
out:
    return rc;
}

static json_object *deep_copy(json_object *src)
{
    json_object *dst = NULL;

    if (src != NULL && json_object_deep_copy(src, &dst, NULL) != 0)
        dst = NULL;
    return dst;
}

static const char *str_or_null(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static long long customer_id(json_object *c)
{
    json_object *v = NULL;

    json_object_object_get_ex(c, "id", &v);
    return json_object_get_int64(v);
}

/* firstSeen/lastSeen as a number; HelpCrunch sends them as strings of unix seconds. */
static int customer_time(json_object *c, const char *key, long long *out)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(c, key, &v) || v == NULL)
        return -1;
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return 0;
    }
    return sim_parse_ll(json_object_get_string(v), out);
}

/* Binary search by id; returns store->len when absent. */
static size_t find_index(const struct sim_store *store, long long id)
{
    size_t lo = 0, hi = store->len;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        long long mid_id = customer_id(store->items[mid]);

        if (mid_id == id)
            return mid;
        if (mid_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return store->len;
}

static int find_or_fail(const struct sim_store *store, long long id, size_t *idx,
                        struct sim_fail *fail)
{
    *idx = find_index(store, id);
    if (*idx == store->len) {
        fail_set(fail, SIM_FAIL_NOT_FOUND, "not_found", "Customer not found");
        return -1;
    }
    return 0;
}

/* Appends a customer whose id is above every other; the store takes c on success. */
static int store_append(struct sim_store *store, json_object *c)
{
    if (store->len == store->cap) {
        size_t cap = store->cap ? store->cap * 2 : 16;
        json_object **items = realloc(store->items, cap * sizeof(*items));

        if (items == NULL)
            return -1;
        store->items = items;
        store->cap = cap;
    }
    store->items[store->len++] = c;
    return 0;
}

static int dump_to(json_object *obj, char **out, struct sim_fail *fail)
{
    *out = sim_json_dump(obj, NULL);
    if (*out == NULL) {
        fail_oom(fail);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- input normalization */

/*
 * Checks a "tags" array: at most SIM_TAGS_MAX objects, each with a non-empty string "name" and
 * an optional string "color". allow_empty is false for the tag endpoints, where HelpCrunch
 * refuses an empty list.
 */
static int tags_check(json_object *tags, bool allow_empty, struct sim_fail *fail)
{
    size_t i, n;
    int rc = -1;

    if (tags == NULL || !json_object_is_type(tags, json_type_array)) {
        fail_set(fail, SIM_FAIL_INVALID, "tags",
                 tags == NULL ? MSG_BLANK : "This value should be of type array.");
        goto out;
    }
    n = json_object_array_length(tags);
    if (n == 0 && !allow_empty) {
        fail_set(fail, SIM_FAIL_INVALID, "tags", MSG_BLANK);
        goto out;
    }
    if (n > SIM_TAGS_MAX) {
        fail_set(fail, SIM_FAIL_INVALID, "tags",
                 "This collection should contain 100 elements or less.");
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_object *tag = json_object_array_get_idx(tags, i);
        json_object *name = NULL, *color = NULL;

        if (!json_object_is_type(tag, json_type_object) ||
            !json_object_object_get_ex(tag, "name", &name) ||
            !json_object_is_type(name, json_type_string)) {
            fail_set(fail, SIM_FAIL_INVALID, "tags", MSG_STRING);
            goto out;
        }
        if (json_object_get_string_len(name) == 0) {
            fail_set(fail, SIM_FAIL_INVALID, "tags", MSG_BLANK);
            goto out;
        }
        if ((size_t)json_object_get_string_len(name) > SIM_TAG_NAME_MAX) {
            fail_set(fail, SIM_FAIL_INVALID, "tags",
                     "This value is too long. It should have 255 characters or less.");
            goto out;
        }
        if (json_object_object_get_ex(tag, "color", &color) && color != NULL &&
            !json_object_is_type(color, json_type_string)) {
            fail_set(fail, SIM_FAIL_INVALID, "tags", MSG_STRING);
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

static json_object *tag_find(json_object *have, const char *name, size_t *idx)
{
    size_t i, n = json_object_array_length(have);

    for (i = 0; i < n; i++) {
        json_object *tag = json_object_array_get_idx(have, i);
        const char *tag_name = str_or_null(tag, "name");

        /* Tag names are case-sensitive in HelpCrunch: "Lead" and "lead" are two tags. */
        if (tag_name != NULL && strcmp(tag_name, name) == 0) {
            if (idx != NULL)
                *idx = i;
            return tag;
        }
    }
    return NULL;
}

/* Adds checked tags to have: new names get their colour or the default, known names keep
 * theirs unless a colour is given. */
static int tags_add(json_object *have, json_object *incoming, struct sim_fail *fail)
{
    size_t i, n = json_object_array_length(incoming);
    int rc = -1;

    for (i = 0; i < n; i++) {
        json_object *tag = json_object_array_get_idx(incoming, i);
        const char *name = str_or_null(tag, "name");
        const char *color = str_or_null(tag, "color");
        json_object *found = tag_find(have, name, NULL);
        json_object *fresh = NULL;

        if (found != NULL) {
            if (color != NULL && obj_set(found, "color", json_object_new_string(color)) != 0)
                goto oom;
            continue;
        }
        if (json_object_array_length(have) >= SIM_TAGS_MAX) {
            fail_set(fail, SIM_FAIL_INVALID, "tags",
                     "A customer may have at most 100 tags.");
            goto out;
        }
        fresh = json_object_new_object();
        if (fresh == NULL ||
            obj_set(fresh, "name", json_object_new_string(name)) != 0 ||
            obj_set(fresh, "color", json_object_new_string(color ? color : DEFAULT_TAG_COLOR)) != 0) {
            json_object_put(fresh);
            goto oom;
        }
        if (arr_push(have, fresh) != 0)
            goto oom;
    }
    rc = 0;
    goto out;
oom:
    fail_oom(fail);
out:
    return rc;
}

static void tags_remove(json_object *have, json_object *incoming)
{
    size_t i, n = json_object_array_length(incoming);

    for (i = 0; i < n; i++) {
        size_t idx = 0;

        if (tag_find(have, str_or_null(json_object_array_get_idx(incoming, i), "name"), &idx))
            json_object_array_del_idx(have, idx, 1);
    }
}

/* customData arrives as an object map or as [{"property":...,"value":...}]; it is kept as a map. */
static int custom_data_normalize(json_object *v, json_object **out, struct sim_fail *fail)
{
    json_object *map = NULL;
    size_t i, n;
    int rc = -1;

    *out = NULL;
    if (json_object_is_type(v, json_type_object)) {
        map = deep_copy(v);
        if (map == NULL)
            goto oom;
        goto done;
    }
    if (!json_object_is_type(v, json_type_array)) {
        fail_set(fail, SIM_FAIL_INVALID, "customData", "This value should be of type array.");
        goto out;
    }
    map = json_object_new_object();
    if (map == NULL)
        goto oom;
    n = json_object_array_length(v);
    for (i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(v, i);
        json_object *property = NULL, *value = NULL, *copy = NULL;

        if (!json_object_is_type(item, json_type_object) ||
            !json_object_object_get_ex(item, "property", &property) ||
            !json_object_is_type(property, json_type_string) ||
            json_object_get_string_len(property) == 0 ||
            !json_object_object_get_ex(item, "value", &value)) {
            fail_set(fail, SIM_FAIL_INVALID, "customData", "This value is not valid.");
            goto out;
        }
        copy = deep_copy(value);
        if (value != NULL && copy == NULL)
            goto oom;
        if (obj_set(map, json_object_get_string(property), copy) != 0)
            goto oom;
    }
done:
    *out = map;
    map = NULL;
    rc = 0;
    goto out;
oom:
    fail_oom(fail);
out:
    json_object_put(map);
    return rc;
}

/* Converts one request value to what the store keeps; *out NULL means JSON null. */
static int field_normalize(const struct field *f, json_object *v, json_object **out,
                           struct sim_fail *fail)
{
    long long num = 0;
    char text[32];
    int rc = -1;

    *out = NULL;
    if (v == NULL)
        return 0; /* null clears the field, whatever its kind */
    switch (f->kind) {
    case FK_STRING:
        if (!json_object_is_type(v, json_type_string)) {
            fail_set(fail, SIM_FAIL_INVALID, f->name, MSG_STRING);
            goto out;
        }
        *out = json_object_new_string_len(json_object_get_string(v),
                                          json_object_get_string_len(v));
        break;
    case FK_BOOL:
        if (!json_object_is_type(v, json_type_boolean)) {
            fail_set(fail, SIM_FAIL_INVALID, f->name, "This value should be of type bool.");
            goto out;
        }
        *out = json_object_new_boolean(json_object_get_boolean(v));
        break;
    case FK_OBJECT:
        if (!json_object_is_type(v, json_type_object)) {
            fail_set(fail, SIM_FAIL_INVALID, f->name, "This value should be of type array.");
            goto out;
        }
        *out = deep_copy(v);
        break;
    case FK_TIME:
        /* Stored as a string of unix seconds, the form HelpCrunch answers with. */
        if (json_object_is_type(v, json_type_int))
            num = json_object_get_int64(v);
        else if (!json_object_is_type(v, json_type_string) ||
                 sim_parse_ll(json_object_get_string(v), &num) != 0)
            num = -1;
        if (num < 0) {
            fail_set(fail, SIM_FAIL_INVALID, f->name, MSG_NUMERIC);
            goto out;
        }
        snprintf(text, sizeof(text), "%lld", num);
        *out = json_object_new_string(text);
        break;
    case FK_TAGS:
        if (tags_check(v, true, fail) != 0)
            goto out;
        *out = json_object_new_array();
        if (*out != NULL && tags_add(*out, v, fail) != 0) {
            json_object_put(*out);
            *out = NULL;
            goto out;
        }
        break;
    case FK_CUSTOM:
        if (custom_data_normalize(v, out, fail) != 0)
            goto out;
        break;
    }
    if (*out == NULL) {
        fail_oom(fail);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/*
 * Turns a request body into a patch: the known fields only (unknown keys and "id" are ignored,
 * as the id never changes), each normalized. *patch is a new object the caller puts.
 */
static int body_normalize(json_object *body, json_object **patch, struct sim_fail *fail)
{
    json_object *p = json_object_new_object();
    int rc = -1;

    *patch = NULL;
    if (p == NULL) {
        fail_oom(fail);
        goto out;
    }
    json_object_object_foreach(body, key, val) {
        const struct field *f = NULL;
        json_object *norm = NULL;
        size_t i;

        for (i = 0; i < N_FIELDS && f == NULL; i++) {
            if (strcmp(fields[i].name, key) == 0)
                f = &fields[i];
        }
        if (f == NULL)
            continue;
        if (field_normalize(f, val, &norm, fail) != 0)
            goto out;
        if (obj_set(p, f->name, norm) != 0) {
            fail_oom(fail);
            goto out;
        }
    }
    *patch = p;
    p = NULL;
    rc = 0;
out:
    json_object_put(p);
    return rc;
}

/* HelpCrunch refuses a second customer with the same non-null userId. */
static bool user_id_taken(const struct sim_store *store, json_object *patch, long long self)
{
    const char *wanted = str_or_null(patch, "userId");
    size_t i;

    if (wanted == NULL)
        return false;
    for (i = 0; i < store->len; i++) {
        const char *have = str_or_null(store->items[i], "userId");

        if (customer_id(store->items[i]) != self && have != NULL && strcmp(have, wanted) == 0)
            return true;
    }
    return false;
}

static int apply_patch(json_object *c, json_object *patch)
{
    int rc = 0;

    json_object_object_foreach(patch, key, val) {
        if (obj_set(c, key, json_object_get(val)) != 0)
            rc = -1;
    }
    return rc;
}

/* A customer with every field present: defaults for a create, nulls for a replace. */
static json_object *customer_new(long long id, time_t now, bool defaults)
{
    json_object *c = json_object_new_object();
    char seen[32];
    size_t i;

    snprintf(seen, sizeof(seen), "%lld", (long long)now);
    if (c == NULL || obj_set(c, "id", json_object_new_int64(id)) != 0)
        goto fail;
    for (i = 0; i < N_FIELDS; i++) {
        json_object *v = NULL;

        if (defaults) {
            switch (fields[i].kind) {
            case FK_BOOL: v = json_object_new_boolean(0); break;
            case FK_TIME: v = json_object_new_string(seen); break;
            case FK_TAGS: v = json_object_new_array(); break;
            case FK_CUSTOM: v = json_object_new_object(); break;
            case FK_STRING:
            case FK_OBJECT: break;
            }
            if (v == NULL && fields[i].kind != FK_STRING && fields[i].kind != FK_OBJECT)
                goto fail;
        }
        if (obj_set(c, fields[i].name, v) != 0)
            goto fail;
    }
    return c;
fail:
    json_object_put(c);
    return NULL;
}

/* Replaces the customer at idx with c (taking it) and frees the old one. */
static void store_swap(struct sim_store *store, size_t idx, json_object *c)
{
    json_object_put(store->items[idx]);
    store->items[idx] = c;
}

/* ---------------------------------------------------------------- paging values */

/* Validates one paging value given as text (query string) or JSON (search body). */
static int page_value(const char *name, json_object *json, const char *text, long long def,
                      long long min, long long max, long long *out, struct sim_fail *fail)
{
    char buf[SIM_FAIL_MESSAGE_MAX];
    long long v = def;

    if (json != NULL) {
        if (json_object_is_type(json, json_type_int))
            v = json_object_get_int64(json);
        else if (!json_object_is_type(json, json_type_string) ||
                 sim_parse_ll(json_object_get_string(json), &v) != 0)
            goto not_numeric;
    } else if (text != NULL && sim_parse_ll(text, &v) != 0) {
        goto not_numeric;
    }
    if (v < min) {
        snprintf(buf, sizeof(buf), "This value should be greater than or equal to %lld.", min);
        fail_set(fail, SIM_FAIL_INVALID, name, buf);
        return -1;
    }
    if (v > max) {
        snprintf(buf, sizeof(buf), "This value should be less than or equal to %lld.", max);
        fail_set(fail, SIM_FAIL_INVALID, name, buf);
        return -1;
    }
    *out = v;
    return 0;
not_numeric:
    fail_set(fail, SIM_FAIL_INVALID, name, MSG_NUMERIC);
    return -1;
}

/* ---------------------------------------------------------------- lifecycle */

struct sim_store *sim_store_new(void)
{
    struct sim_store *store = calloc(1, sizeof(*store));

    if (store != NULL)
        store->next_id = FIRST_NEW_ID;
    return store;
}

static void store_clear(struct sim_store *store)
{
    size_t i;

    for (i = 0; i < store->len; i++)
        json_object_put(store->items[i]);
    store->len = 0;
    store->next_id = FIRST_NEW_ID;
}

void sim_store_free(struct sim_store *store)
{
    if (store == NULL)
        return;
    store_clear(store);
    free(store->items);
    free(store);
}

int sim_store_reset(struct sim_store *store, bool seed)
{
    json_object *doc = NULL;
    size_t i, n;
    int rc = -1;

    store_clear(store);
    if (!seed) {
        rc = 0;
        goto out;
    }
    if (sim_json_parse(seed_json, sizeof(seed_json) - 1, &doc) != 0)
        goto out;
    n = json_object_array_length(doc);
    for (i = 0; i < n; i++) {
        json_object *c = json_object_get(json_object_array_get_idx(doc, i));

        if (store_append(store, c) != 0) {
            json_object_put(c);
            store_clear(store);
            goto out;
        }
    }
    rc = 0;
out:
    json_object_put(doc);
    return rc;
}

/* ---------------------------------------------------------------- operations */

int sim_store_get(struct sim_store *store, long long id, char **out, struct sim_fail *fail)
{
    size_t idx;

    *out = NULL;
    if (find_or_fail(store, id, &idx, fail) != 0)
        return -1;
    return dump_to(store->items[idx], out, fail);
}

struct sort_item {
    long long key;
    long long id;
    json_object *c;
};

static int sort_item_cmp(const void *a, const void *b)
{
    const struct sort_item *x = a, *y = b;

    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return 0;
}

/* {"total":...,"data":[...]} or {"data":[...],"total":...} over the chosen customers (borrowed). */
static int page_dump(json_object **chosen, size_t n_chosen, size_t total, bool total_first,
                     char **out, struct sim_fail *fail)
{
    json_object *doc = json_object_new_object();
    json_object *data = json_object_new_array();
    size_t i;
    int rc = -1;

    if (doc == NULL || data == NULL)
        goto oom;
    for (i = 0; i < n_chosen; i++) {
        if (arr_push(data, json_object_get(chosen[i])) != 0)
            goto oom;
    }
    if (total_first && obj_set(doc, "total", json_object_new_int64((int64_t)total)) != 0)
        goto oom;
    if (obj_set(doc, "data", data) != 0) {
        data = NULL;
        goto oom;
    }
    data = NULL;
    if (!total_first && obj_set(doc, "total", json_object_new_int64((int64_t)total)) != 0)
        goto oom;
    rc = dump_to(doc, out, fail);
    goto out;
oom:
    fail_oom(fail);
out:
    json_object_put(data);
    json_object_put(doc);
    return rc;
}

int sim_store_list(struct sim_store *store, const char *offset, const char *limit,
                   const char *sort, const char *order, char **out, struct sim_fail *fail)
{
    struct sort_item *items = NULL;
    json_object **chosen = NULL;
    long long off = 0, lim = SIM_PAGE_LIMIT_MAX;
    enum { BY_ID, BY_FIRST, BY_LAST } by = BY_ID;
    bool desc = false;
    size_t i, n_chosen = 0;
    int rc = -1;

    *out = NULL;
    if (page_value("offset", NULL, offset, 0, 0, LLONG_MAX, &off, fail) != 0 ||
        page_value("limit", NULL, limit, SIM_PAGE_LIMIT_MAX, 1, SIM_PAGE_LIMIT_MAX, &lim,
                   fail) != 0)
        goto out;
    if (sort != NULL) {
        if (strcmp(sort, "customers.firstSeen") == 0) {
            by = BY_FIRST;
        } else if (strcmp(sort, "customers.lastSeen") == 0) {
            by = BY_LAST;
        } else {
            fail_set(fail, SIM_FAIL_INVALID, "sort", MSG_CHOICE);
            goto out;
        }
    }
    if (order != NULL) {
        if (strcasecmp(order, "desc") == 0) {
            desc = true;
        } else if (strcasecmp(order, "asc") != 0) {
            fail_set(fail, SIM_FAIL_INVALID, "order", MSG_CHOICE);
            goto out;
        }
    }
    /* +1: malloc(0) may return NULL, which would look like a failure. */
    items = malloc((store->len + 1) * sizeof(*items));
    chosen = malloc(((size_t)lim + 1) * sizeof(*chosen));
    if (items == NULL || chosen == NULL) {
        fail_oom(fail);
        goto out;
    }
    for (i = 0; i < store->len; i++) {
        json_object *c = store->items[i];

        items[i].c = c;
        items[i].id = customer_id(c);
        items[i].key = items[i].id;
        /* A customer without a usable time sorts first, as 0 would. */
        if (by != BY_ID && customer_time(c, by == BY_FIRST ? "firstSeen" : "lastSeen",
                                         &items[i].key) != 0)
            items[i].key = 0;
    }
    qsort(items, store->len, sizeof(*items), sort_item_cmp);
    for (i = (size_t)off; off < (long long)store->len && i < store->len &&
                          n_chosen < (size_t)lim; i++)
        chosen[n_chosen++] = items[desc ? store->len - 1 - i : i].c;
    rc = page_dump(chosen, n_chosen, store->len, true, out, fail);
out:
    free(chosen);
    free(items);
    return rc;
}

/* Reads one search condition; *f borrows from item. */
static int filter_parse(json_object *item, size_t i, struct filter *f, struct sim_fail *fail)
{
    json_object *field = NULL, *op = NULL, *value = NULL;
    const char *name;
    size_t k;

    memset(f, 0, sizeof(*f));
    if (!json_object_is_type(item, json_type_object) ||
        !json_object_object_get_ex(item, "field", &field) ||
        !json_object_is_type(field, json_type_string) || json_object_get_string_len(field) == 0) {
        fail_filter(fail, i, "field", MSG_BLANK);
        return -1;
    }
    name = json_object_get_string(field);
    for (k = 0; k < N_SEARCH_FIELDS && f->field == NULL; k++) {
        if (strcmp(search_fields[k].name, name) == 0)
            f->field = &search_fields[k];
    }
    if (f->field == NULL) {
        fail_filter(fail, i, "field", MSG_CHOICE);
        return -1;
    }
    if (!json_object_object_get_ex(item, "operator", &op) ||
        !json_object_is_type(op, json_type_string)) {
        fail_filter(fail, i, "operator", MSG_BLANK);
        return -1;
    }
    for (k = 0; k < N_OPS; k++) {
        if (strcmp(op_names[k], json_object_get_string(op)) == 0)
            break;
    }
    if (k == N_OPS || (f->field->kind == SF_TAGS && k != OP_EQ && k != OP_NE)) {
        fail_filter(fail, i, "operator", MSG_CHOICE);
        return -1;
    }
    f->op = (enum op)k;
    if (!json_object_object_get_ex(item, "value", &value)) {
        fail_filter(fail, i, "value", MSG_BLANK);
        return -1;
    }
    switch (f->field->kind) {
    case SF_TAGS:
        /* [{"name":"Lead"}]; plain strings are accepted too, being unambiguous. */
        if (!json_object_is_type(value, json_type_array) || json_object_array_length(value) == 0) {
            fail_filter(fail, i, "value", MSG_BLANK);
            return -1;
        }
        for (k = 0; k < json_object_array_length(value); k++) {
            json_object *t = json_object_array_get_idx(value, k);

            if (!json_object_is_type(t, json_type_string) && str_or_null(t, "name") == NULL) {
                fail_filter(fail, i, "value", MSG_STRING);
                return -1;
            }
        }
        f->tags = value;
        return 0;
    case SF_ID:
    case SF_TIME:
        if (json_object_is_type(value, json_type_int)) {
            f->num = json_object_get_int64(value);
        } else if (!json_object_is_type(value, json_type_string) ||
                   (sim_parse_ll(json_object_get_string(value), &f->num) != 0 &&
                    f->op != OP_CONTAINS)) {
            fail_filter(fail, i, "value", MSG_NUMERIC);
            return -1;
        }
        break;
    case SF_STRING:
        if (json_object_is_type(value, json_type_object) ||
            json_object_is_type(value, json_type_array)) {
            fail_filter(fail, i, "value", MSG_STRING);
            return -1;
        }
        break;
    }
    if (json_object_is_type(value, json_type_int)) {
        snprintf(f->num_text, sizeof(f->num_text), "%lld", (long long)json_object_get_int64(value));
        f->text = f->num_text;
    } else if (value != NULL) {
        /* For strings the text itself; for doubles and booleans their JSON spelling. */
        f->text = json_object_get_string(value);
    }
    return 0;
}

static bool op_holds(int cmp, enum op op)
{
    switch (op) {
    case OP_EQ: return cmp == 0;
    case OP_NE: return cmp != 0;
    case OP_GT: return cmp > 0;
    case OP_GE: return cmp >= 0;
    case OP_LT: return cmp < 0;
    case OP_LE: return cmp <= 0;
    case OP_CONTAINS: break;
    }
    return false;
}

static bool tags_any(json_object *have, json_object *wanted)
{
    size_t i, n = json_object_array_length(wanted);

    if (have == NULL || !json_object_is_type(have, json_type_array))
        return false;
    for (i = 0; i < n; i++) {
        json_object *w = json_object_array_get_idx(wanted, i);
        const char *name = json_object_is_type(w, json_type_string) ? json_object_get_string(w)
                                                                     : str_or_null(w, "name");

        if (tag_find(have, name, NULL) != NULL)
            return true;
    }
    return false;
}

static bool filter_match(json_object *c, const struct filter *f)
{
    json_object *v = NULL;
    const char *have = NULL;
    char have_buf[32];
    long long num = 0;

    json_object_object_get_ex(c, f->field->key, &v);
    switch (f->field->kind) {
    case SF_TAGS:
        /* "=": has any of the names; "!=": has none of them. */
        return tags_any(v, f->tags) == (f->op == OP_EQ);
    case SF_ID:
    case SF_TIME:
        if (f->field->kind == SF_ID) {
            num = json_object_get_int64(v);
        } else if (customer_time(c, f->field->key, &num) != 0) {
            return f->op == OP_NE;
        }
        if (f->op != OP_CONTAINS)
            return op_holds(num < f->num ? -1 : num > f->num, f->op);
        snprintf(have_buf, sizeof(have_buf), "%lld", num);
        have = have_buf;
        break;
    case SF_STRING:
        if (json_object_is_type(v, json_type_string))
            have = json_object_get_string(v);
        /* A null field equals only a null value and differs from everything else. */
        if (have == NULL || f->text == NULL) {
            if (f->op == OP_EQ)
                return have == f->text;
            return f->op == OP_NE && have != f->text;
        }
        if (f->op != OP_CONTAINS)
            return op_holds(strcmp(have, f->text), f->op);
        break;
    }
    return have != NULL && f->text != NULL && strcasestr(have, f->text) != NULL;
}

int sim_store_search(struct sim_store *store, json_object *body, char **out,
                     struct sim_fail *fail)
{
    struct filter *filters = NULL;
    json_object **chosen = NULL;
    json_object *list = NULL, *cmp = NULL;
    long long limit = SIM_PAGE_LIMIT_MAX, offset = 0;
    size_t i, k, n = 0, total = 0, n_chosen = 0;
    bool any = false;
    int rc = -1;

    *out = NULL;
    if (!json_object_object_get_ex(body, "filter", &list) ||
        !json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0) {
        fail_filter(fail, 0, "field", MSG_BLANK);
        goto out;
    }
    n = json_object_array_length(list);
    if (n > SIM_FILTERS_MAX) {
        fail_set(fail, SIM_FAIL_INVALID, "filter",
                 "This collection should contain 32 elements or less.");
        goto out;
    }
    if (json_object_object_get_ex(body, "comparison", &cmp) && cmp != NULL) {
        const char *s = json_object_is_type(cmp, json_type_string) ? json_object_get_string(cmp)
                                                                    : "";

        if (strcasecmp(s, "OR") == 0) {
            any = true;
        } else if (strcasecmp(s, "AND") != 0) {
            fail_set(fail, SIM_FAIL_INVALID, "comparison", MSG_CHOICE);
            goto out;
        }
    }
    if (page_value("limit", json_object_object_get(body, "limit"), NULL, SIM_PAGE_LIMIT_MAX, 1,
                   SIM_PAGE_LIMIT_MAX, &limit, fail) != 0 ||
        page_value("offset", json_object_object_get(body, "offset"), NULL, 0, 0, LLONG_MAX,
                   &offset, fail) != 0)
        goto out;
    filters = calloc(n, sizeof(*filters));
    chosen = malloc(((size_t)limit + 1) * sizeof(*chosen));
    if (filters == NULL || chosen == NULL) {
        fail_oom(fail);
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (filter_parse(json_object_array_get_idx(list, i), i, &filters[i], fail) != 0)
            goto out;
    }
    for (i = 0; i < store->len; i++) {
        bool hit = !any;

        for (k = 0; k < n; k++) {
            bool m = filter_match(store->items[i], &filters[k]);

            if (any ? m : !m) {
                hit = any;
                break;
            }
        }
        if (!hit)
            continue;
        if (total >= (unsigned long long)offset && n_chosen < (size_t)limit)
            chosen[n_chosen++] = store->items[i];
        total++;
    }
    rc = page_dump(chosen, n_chosen, total, false, out, fail);
out:
    free(chosen);
    free(filters);
    return rc;
}

int sim_store_create(struct sim_store *store, json_object *body, time_t now, char **out,
                     struct sim_fail *fail)
{
    json_object *patch = NULL, *c = NULL;
    int rc = -1;

    *out = NULL;
    if (store->len >= SIM_STORE_MAX) {
        char msg[SIM_FAIL_MESSAGE_MAX];

        snprintf(msg, sizeof(msg), "The simulator holds at most %u customers.", SIM_STORE_MAX);
        fail_set(fail, SIM_FAIL_INVALID, "customer", msg);
        goto out;
    }
    if (body_normalize(body, &patch, fail) != 0)
        goto out;
    if (user_id_taken(store, patch, -1)) {
        fail_set(fail, SIM_FAIL_INVALID, "invalid_userId_value",
                 "Customer with this userId already exists");
        goto out;
    }
    c = customer_new(store->next_id, now, true);
    if (c == NULL || apply_patch(c, patch) != 0) {
        fail_oom(fail);
        goto out;
    }
    if (dump_to(c, out, fail) != 0)
        goto out;
    if (store_append(store, c) != 0) {
        free(*out);
        *out = NULL;
        fail_oom(fail);
        goto out;
    }
    c = NULL;
    store->next_id++;
    rc = 0;
out:
    json_object_put(c);
    json_object_put(patch);
    return rc;
}

int sim_store_update(struct sim_store *store, long long id, json_object *body, bool replace,
                     char **out, struct sim_fail *fail)
{
    json_object *patch = NULL, *c = NULL;
    size_t idx;
    int rc = -1;

    *out = NULL;
    if (find_or_fail(store, id, &idx, fail) != 0 || body_normalize(body, &patch, fail) != 0)
        goto out;
    if (user_id_taken(store, patch, id)) {
        fail_set(fail, SIM_FAIL_INVALID, "invalid_userId_value",
                 "Customer with this userId already exists");
        goto out;
    }
    /* A replace starts from all-null fields, so what the body leaves out becomes null. */
    c = replace ? customer_new(id, 0, false) : deep_copy(store->items[idx]);
    if (c == NULL || apply_patch(c, patch) != 0) {
        fail_oom(fail);
        goto out;
    }
    if (dump_to(c, out, fail) != 0)
        goto out;
    store_swap(store, idx, c);
    c = NULL;
    rc = 0;
out:
    json_object_put(c);
    json_object_put(patch);
    return rc;
}

int sim_store_delete(struct sim_store *store, long long id, struct sim_fail *fail)
{
    size_t idx;

    if (find_or_fail(store, id, &idx, fail) != 0)
        return -1;
    json_object_put(store->items[idx]);
    memmove(&store->items[idx], &store->items[idx + 1],
            (store->len - idx - 1) * sizeof(store->items[0]));
    store->len--;
    return 0;
}

int sim_store_tags(struct sim_store *store, long long id, json_object *body, bool add,
                   char **out, struct sim_fail *fail)
{
    json_object *c = NULL, *have = NULL, *tags = NULL;
    size_t idx;
    int rc = -1;

    *out = NULL;
    if (find_or_fail(store, id, &idx, fail) != 0)
        goto out;
    json_object_object_get_ex(body, "tags", &tags);
    if (tags_check(tags, false, fail) != 0)
        goto out;
    c = deep_copy(store->items[idx]);
    if (c == NULL)
        goto oom;
    /* After a PUT that left tags out, the customer has "tags": null; start a list then. */
    if (!json_object_object_get_ex(c, "tags", &have) ||
        !json_object_is_type(have, json_type_array)) {
        have = json_object_new_array();
        if (have == NULL || obj_set(c, "tags", have) != 0)
            goto oom;
    }
    if (add) {
        if (tags_add(have, tags, fail) != 0)
            goto out;
    } else {
        tags_remove(have, tags);
    }
    if (dump_to(c, out, fail) != 0)
        goto out;
    store_swap(store, idx, c);
    c = NULL;
    rc = 0;
    goto out;
oom:
    fail_oom(fail);
out:
    json_object_put(c);
    return rc;
}
