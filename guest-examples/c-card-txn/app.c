/* Card transactions -> per-user feature rows (C; same rows as ../rust-card-txn).
 *
 * Input: JSON like {"user_id":"u1","amount":12.5,"country":"DE","merchant":"m9"}; optional
 * header `channel`. Output: one row for entity `user_id` at the event time.
 *
 * Build: wasm-c build --wit ../../wit --world stream-transform -I ../../sdk/c -o card_txn_c.wasm app.c
 * (tools/wasm-c: bindings with wit-bindgen-c, clang + wasi-libc, component step with wit-component).
 *
 * Memory: the export owns its arguments (free them); everything returned must be malloc'd, the
 * generated post-return function frees it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_transform.h"
#include "wafer_json.h"

#define HIGH_VALUE 500.0
#define HOUR_MS 3600000LL

typedef wafer_transform_types_feature_t feature_t;
typedef exports_wafer_transform_stream_processor_result_list_feature_row_transform_error_t event_result_t;

static void log_msg(wafer_transform_host_level_t level, const char *msg) {
    stream_transform_string_t s;
    stream_transform_string_set(&s, msg); /* borrowed: the import does not take ownership */
    wafer_transform_host_log(level, &s);
}

static void bad_input(event_result_t *r, const char *msg) {
    r->is_err = true;
    r->val.err.tag = WAFER_TRANSFORM_TYPES_TRANSFORM_ERROR_BAD_INPUT;
    stream_transform_string_dup(&r->val.err.val.bad_input, msg);
}

static void set_text(feature_t *f, const char *name, uint8_t *ptr, size_t len) {
    stream_transform_string_dup(&f->name, name);
    f->value.tag = WAFER_TRANSFORM_TYPES_VALUE_TEXT;
    f->value.val.text.ptr = ptr;
    f->value.val.text.len = len;
}

static feature_t *next_feature(wafer_transform_types_list_feature_t *l, const char *name, uint8_t tag) {
    feature_t *f = &l->ptr[l->len++];
    stream_transform_string_dup(&f->name, name);
    f->value.tag = tag;
    return f;
}

/* Rust's String::from_utf8_lossy for header values: invalid sequences become U+FFFD. */
static void utf8_lossy(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len) {
    uint8_t *o = malloc(n * 3 + 1);
    if (!o) abort();
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = p[i] < 0x80 ? 1 : wj_utf8_len(p + i, p + n);
        if (len) {
            memcpy(o + k, p + i, len);
            k += len;
            i += len;
        } else {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i += 1;
        }
    }
    *out = o;
    *out_len = k;
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

enum { F_USER, F_AMOUNT, F_COUNTRY, F_MERCHANT, F_COUNT };
static const char *FIELDS[F_COUNT] = {"user_id", "amount", "country", "merchant"};

/* A required string field, unescaped into `out`; writes the error to `err` when it isn't one. */
static bool str_field(const wj_value *f, const char *name, uint8_t **out, size_t *len, char *err, size_t errlen) {
    if (f->type == WJ_MISSING || f->type == WJ_NULL) {
        snprintf(err, errlen, "missing field `%s`", name);
        return false;
    }
    if (f->type != WJ_STRING) {
        snprintf(err, errlen, "field `%s` must be a string", name);
        return false;
    }
    wj_string_dup(f, out, len);
    return true;
}

static void transform(const wafer_transform_types_event_t *ev, event_result_t *r) {
    char err[256];
    wj_value f[F_COUNT];
    if (!wj_object_fields(ev->value.ptr, ev->value.len, FIELDS, f, F_COUNT, err, sizeof err)) {
        bad_input(r, err);
        return;
    }
    uint8_t *user = NULL, *country = NULL, *merchant = NULL;
    size_t user_len, country_len, merchant_len;
    if (!str_field(&f[F_USER], "user_id", &user, &user_len, err, sizeof err)) goto bad;
    if (user_len == 0) {
        snprintf(err, sizeof err, "field `user_id` must not be empty");
        goto bad;
    }
    if (f[F_AMOUNT].type == WJ_MISSING || f[F_AMOUNT].type == WJ_NULL) {
        snprintf(err, sizeof err, "missing field `amount`");
        goto bad;
    }
    if (f[F_AMOUNT].type != WJ_NUMBER) {
        snprintf(err, sizeof err, "field `amount` must be a number");
        goto bad;
    }
    double amount = wj_number(&f[F_AMOUNT]);
    if (!isfinite(amount) || amount < 0.0) {
        char num[32], msg[256];
        wj_format_double(amount, num, sizeof num);
        snprintf(msg, sizeof msg, "rejecting amount %s for user %.*s", num, (int)user_len, (const char *)user);
        log_msg(WAFER_TRANSFORM_HOST_LEVEL_WARN, msg);
        snprintf(err, sizeof err, "field `amount` must be a non-negative number, got %s", num);
        goto bad;
    }
    if (!str_field(&f[F_COUNTRY], "country", &country, &country_len, err, sizeof err)) goto bad;
    if (!str_field(&f[F_MERCHANT], "merchant", &merchant, &merchant_len, err, sizeof err)) goto bad;

    /* One row with six features; ownership of the strings moves into the result. */
    exports_wafer_transform_stream_processor_feature_row_t *row = malloc(sizeof *row);
    feature_t *feats = calloc(6, sizeof *feats);
    if (!row || !feats) abort();
    row->entity_key.ptr = user;
    row->entity_key.len = user_len;
    row->event_time_ms = ev->timestamp_ms;
    row->features.ptr = feats;
    row->features.len = 0;
    wafer_transform_types_list_feature_t *l = &row->features;
    next_feature(l, "amount", WAFER_TRANSFORM_TYPES_VALUE_FLOAT64)->value.val.float64 = amount;
    set_text(&l->ptr[l->len++], "country", country, country_len);
    set_text(&l->ptr[l->len++], "merchant", merchant, merchant_len);
    next_feature(l, "is_high_value", WAFER_TRANSFORM_TYPES_VALUE_BOOLEAN)->value.val.boolean = amount >= HIGH_VALUE;
    int64_t hour = floor_div(ev->timestamp_ms, HOUR_MS) % 24;
    next_feature(l, "hour_of_day", WAFER_TRANSFORM_TYPES_VALUE_INT64)->value.val.int64 = hour < 0 ? hour + 24 : hour;
    feature_t *channel = &l->ptr[l->len++];
    stream_transform_string_dup(&channel->name, "channel");
    channel->value.tag = WAFER_TRANSFORM_TYPES_VALUE_NULL;
    for (size_t i = 0; i < ev->headers.len; i++) {
        const wafer_transform_types_header_t *h = &ev->headers.ptr[i];
        if (h->key.len == 7 && memcmp(h->key.ptr, "channel", 7) == 0) {
            channel->value.tag = WAFER_TRANSFORM_TYPES_VALUE_TEXT;
            utf8_lossy(h->value.ptr, h->value.len, &channel->value.val.text.ptr, &channel->value.val.text.len);
            break;
        }
    }
    r->is_err = false;
    r->val.ok.ptr = row;
    r->val.ok.len = 1;
    return;
bad:
    free(user);
    free(country);
    free(merchant);
    bad_input(r, err);
}

void exports_wafer_transform_stream_processor_process(exports_wafer_transform_stream_processor_list_event_t *events,
                                                       exports_wafer_transform_stream_processor_list_result_list_feature_row_transform_error_t *ret) {
    ret->len = events->len;
    ret->ptr = calloc(events->len ? events->len : 1, sizeof *ret->ptr);
    if (!ret->ptr) abort();
    for (size_t i = 0; i < events->len; i++) transform(&events->ptr[i], &ret->ptr[i]);
    exports_wafer_transform_stream_processor_list_event_free(events);
}

static void spec(wafer_transform_types_feature_spec_t *s, const char *name, wafer_transform_types_value_type_t t, bool nullable) {
    stream_transform_string_dup(&s->name, name);
    s->value_type = t;
    s->nullable = nullable;
}

void exports_wafer_transform_describe_describe(exports_wafer_transform_describe_transform_info_t *ret) {
    memset(ret, 0, sizeof *ret);
    stream_transform_string_dup(&ret->name, "card_txn");
    stream_transform_string_dup(&ret->version, "1.0.0");
    wafer_transform_types_feature_spec_t *o = calloc(6, sizeof *o);
    if (!o) abort();
    spec(&o[0], "amount", WAFER_TRANSFORM_TYPES_VALUE_TYPE_FLOAT64, false);
    spec(&o[1], "country", WAFER_TRANSFORM_TYPES_VALUE_TYPE_TEXT, false);
    spec(&o[2], "merchant", WAFER_TRANSFORM_TYPES_VALUE_TYPE_TEXT, false);
    spec(&o[3], "is_high_value", WAFER_TRANSFORM_TYPES_VALUE_TYPE_BOOLEAN, false);
    spec(&o[4], "hour_of_day", WAFER_TRANSFORM_TYPES_VALUE_TYPE_INT64, false);
    spec(&o[5], "channel", WAFER_TRANSFORM_TYPES_VALUE_TYPE_TEXT, true);
    ret->outputs.ptr = o;
    ret->outputs.len = 6;
}
