/*
 * store.h: the simulated HelpCrunch customer store and its operations (get, list, search,
 * create, merge update, replace, delete, add and remove tags).
 *
 * The store is not locked by itself: every function here must be called with the API lock
 * held (see api.c), and every result leaves as a freshly serialized heap string, so no
 * json_object of the store is ever touched outside that lock.
 */
#ifndef HCGW_SIM_STORE_H
#define HCGW_SIM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "limits.h"

struct sim_store;

/** Why an operation failed; api.c turns it into a status and an error body. */
enum sim_fail_kind {
    SIM_FAIL_INVALID,   /**< 400: code and message name the offending field */
    SIM_FAIL_NOT_FOUND, /**< 404: no customer with that id */
    SIM_FAIL_INTERNAL,  /**< 500: memory ran out */
};

/** A failed operation's details, filled by the store. */
struct sim_fail {
    enum sim_fail_kind kind;
    char code[SIM_FAIL_CODE_MAX];       /**< e.g. "filter[0].field"; only for INVALID */
    char message[SIM_FAIL_MESSAGE_MAX]; /**< e.g. "This value should not be blank." */
};

/** Creates an empty store whose next id is the first after the seed. NULL when out of memory. */
struct sim_store *sim_store_new(void);

/** Frees the store and every customer in it; NULL is fine. */
void sim_store_free(struct sim_store *store);

/**
 * Empties the store and restarts ids after the seed; when seed is true, loads the seed
 * customers (ids 1568834 to 1568837). Returns 0, or -1 when memory ran out (the store is then
 * empty but usable).
 */
int sim_store_reset(struct sim_store *store, bool seed);

/**
 * Each operation below returns 0 and sets *out to the success body (a heap string the caller
 * frees; for delete there is none), or -1 with *fail filled and *out NULL. body is a parsed
 * JSON object the caller owns; the store copies what it keeps. now is the time for
 * firstSeen/lastSeen of new customers. An id that matches nobody fails with NOT_FOUND.
 */

/** GET /customers/{id}: the customer object. */
int sim_store_get(struct sim_store *store, long long id, char **out, struct sim_fail *fail);

/**
 * GET /customers: {"total":N,"data":[...]} for one page. offset, limit, sort and order are the
 * raw query values, NULL when absent; they are validated here like HelpCrunch does (limit
 * 1..100, default 100; offset >= 0; sort customers.firstSeen or customers.lastSeen, default by
 * id; order asc or desc).
 */
int sim_store_list(struct sim_store *store, const char *offset, const char *limit,
                   const char *sort, const char *order, char **out, struct sim_fail *fail);

/** POST /customers/search: validates body (filter, comparison, limit, offset) and answers
 *  {"data":[...],"total":N}. */
int sim_store_search(struct sim_store *store, json_object *body, char **out,
                     struct sim_fail *fail);

/** POST /customers: a new customer from any subset of the fields. */
int sim_store_create(struct sim_store *store, json_object *body, time_t now, char **out,
                     struct sim_fail *fail);

/** PATCH /customers/{id} (replace false: merge) or PUT (replace true: absent fields become
 *  null). The id never changes. */
int sim_store_update(struct sim_store *store, long long id, json_object *body, bool replace,
                     char **out, struct sim_fail *fail);

/** DELETE /customers/{id}. */
int sim_store_delete(struct sim_store *store, long long id, struct sim_fail *fail);

/** PUT /customers/{id}/tags (add true) or DELETE (add false), body {"tags":[{"name":...}]}. */
int sim_store_tags(struct sim_store *store, long long id, json_object *body, bool add,
                   char **out, struct sim_fail *fail);

#endif /* HCGW_SIM_STORE_H */
