/* `txn_risk` (C; same scores as ../rust-txn-risk): a request-time risk score from the transaction
 * in the request and the user's stored features.
 *
 *   amount_vs_mean = amount / (amount_mean_7d or 1)
 *   is_new_country = country != last_country
 *   risk_score     = min(1, 0.1*min(amount_vs_mean, 5) + 0.4*is_new_country + (0.1 if txn_count_7d < 3 else 0))
 *
 * Build: wasm-c build --wit ../../wit --world request-transform -o txn_risk_c.wasm app.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request_transform.h"

#define MEAN "user_stats:amount_mean_7d"
#define COUNT "user_stats:txn_count_7d"
#define LAST_COUNTRY "user_stats:last_country"

typedef exports_wafer_transform_request_value_t value_t;
typedef exports_wafer_transform_request_feature_t feature_t;
typedef exports_wafer_transform_request_request_input_t input_t;
typedef exports_wafer_transform_request_result_list_feature_transform_error_t input_result_t;

static const value_t NULL_VALUE = {.tag = WAFER_TRANSFORM_TYPES_VALUE_NULL};

static bool name_is(const request_transform_string_t *s, const char *name) {
    return s->len == strlen(name) && memcmp(s->ptr, name, s->len) == 0;
}

static const value_t *param(const input_t *in, const char *name) {
    for (size_t i = 0; i < in->params.len; i++)
        if (name_is(&in->params.ptr[i].name, name)) return &in->params.ptr[i].value;
    return &NULL_VALUE;
}

static const value_t *stored(const input_t *in, const char *name) {
    for (size_t i = 0; i < in->stored.len; i++)
        if (name_is(&in->stored.ptr[i].name, name)) return &in->stored.ptr[i].value;
    return &NULL_VALUE;
}

/* int64 or float64 as a double. */
static bool as_f64(const value_t *v, double *out) {
    if (v->tag == WAFER_TRANSFORM_TYPES_VALUE_FLOAT64) { *out = v->val.float64; return true; }
    if (v->tag == WAFER_TRANSFORM_TYPES_VALUE_INT64) { *out = (double)v->val.int64; return true; }
    return false;
}

static void fail(const input_t *in, input_result_t *r, const char *msg) {
    char line[256];
    snprintf(line, sizeof line, "entity %.*s: %s", (int)in->entity_key.len, (const char *)in->entity_key.ptr, msg);
    request_transform_string_t s;
    request_transform_string_set(&s, line);
    wafer_transform_host_log(WAFER_TRANSFORM_HOST_LEVEL_WARN, &s);
    r->is_err = true;
    r->val.err.tag = WAFER_TRANSFORM_TYPES_TRANSFORM_ERROR_BAD_INPUT;
    request_transform_string_dup(&r->val.err.val.bad_input, msg);
}

static void compute(const input_t *in, input_result_t *r) {
    double amount;
    if (!as_f64(param(in, "amount"), &amount)) return fail(in, r, "request param `amount` must be a number");
    const value_t *country = param(in, "country");
    if (country->tag != WAFER_TRANSFORM_TYPES_VALUE_TEXT) return fail(in, r, "request param `country` must be text");
    double mean, count;
    if (!as_f64(stored(in, MEAN), &mean) || mean == 0.0) mean = 1.0;
    if (!as_f64(stored(in, COUNT), &count)) count = 0.0;
    const value_t *last = stored(in, LAST_COUNTRY);
    bool is_new_country = !(last->tag == WAFER_TRANSFORM_TYPES_VALUE_TEXT && last->val.text.len == country->val.text.len &&
                            memcmp(last->val.text.ptr, country->val.text.ptr, country->val.text.len) == 0);
    double amount_vs_mean = amount / mean;
    double risk = 0.1 * (amount_vs_mean < 5.0 ? amount_vs_mean : 5.0) + (is_new_country ? 0.4 : 0.0) + (count < 3.0 ? 0.1 : 0.0);

    feature_t *f = calloc(3, sizeof *f);
    if (!f) abort();
    request_transform_string_dup(&f[0].name, "amount_vs_mean");
    f[0].value.tag = WAFER_TRANSFORM_TYPES_VALUE_FLOAT64;
    f[0].value.val.float64 = amount_vs_mean;
    request_transform_string_dup(&f[1].name, "is_new_country");
    f[1].value.tag = WAFER_TRANSFORM_TYPES_VALUE_BOOLEAN;
    f[1].value.val.boolean = is_new_country;
    request_transform_string_dup(&f[2].name, "risk_score");
    f[2].value.tag = WAFER_TRANSFORM_TYPES_VALUE_FLOAT64;
    f[2].value.val.float64 = risk < 1.0 ? risk : 1.0;
    r->is_err = false;
    r->val.ok.ptr = f;
    r->val.ok.len = 3;
}

void exports_wafer_transform_request_compute(exports_wafer_transform_request_list_request_input_t *inputs,
                                             exports_wafer_transform_request_list_result_list_feature_transform_error_t *ret) {
    ret->len = inputs->len;
    ret->ptr = calloc(inputs->len ? inputs->len : 1, sizeof *ret->ptr);
    if (!ret->ptr) abort();
    for (size_t i = 0; i < inputs->len; i++) compute(&inputs->ptr[i], &ret->ptr[i]);
    exports_wafer_transform_request_list_request_input_free(inputs);
}

static void spec(wafer_transform_types_feature_spec_t *s, const char *name, wafer_transform_types_value_type_t t) {
    request_transform_string_dup(&s->name, name);
    s->value_type = t;
    s->nullable = false;
}

void exports_wafer_transform_describe_describe(exports_wafer_transform_describe_transform_info_t *ret) {
    memset(ret, 0, sizeof *ret);
    request_transform_string_dup(&ret->name, "txn_risk");
    request_transform_string_dup(&ret->version, "1.0.0");
    wafer_transform_types_feature_spec_t *o = calloc(3, sizeof *o), *p = calloc(2, sizeof *p);
    request_transform_string_t *reads = calloc(3, sizeof *reads);
    if (!o || !p || !reads) abort();
    spec(&o[0], "amount_vs_mean", WAFER_TRANSFORM_TYPES_VALUE_TYPE_FLOAT64);
    spec(&o[1], "is_new_country", WAFER_TRANSFORM_TYPES_VALUE_TYPE_BOOLEAN);
    spec(&o[2], "risk_score", WAFER_TRANSFORM_TYPES_VALUE_TYPE_FLOAT64);
    spec(&p[0], "amount", WAFER_TRANSFORM_TYPES_VALUE_TYPE_FLOAT64);
    spec(&p[1], "country", WAFER_TRANSFORM_TYPES_VALUE_TYPE_TEXT);
    request_transform_string_dup(&reads[0], COUNT);
    request_transform_string_dup(&reads[1], MEAN);
    request_transform_string_dup(&reads[2], LAST_COUNTRY);
    ret->outputs = (wafer_transform_types_list_feature_spec_t){o, 3};
    ret->params = (wafer_transform_types_list_feature_spec_t){p, 2};
    ret->reads = (request_transform_list_string_t){reads, 3};
}
