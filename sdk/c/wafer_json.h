/* wafer_json.h: a small, strict JSON reader for Wafer transforms written in C.
 *
 * wasi-libc has no JSON library; this header validates a whole payload (RFC 8259: the grammar
 * serde_json accepts, strings must be valid UTF-8, nesting up to 128) and finds the top-level
 * fields of an object by name without allocating. Duplicate keys: the last one wins.
 *
 *   const char *names[] = {"user_id", "amount"};
 *   wj_value f[2];
 *   char err[128];
 *   if (!wj_object_fields(bytes, len, names, f, 2, err, sizeof err)) -> bad input, `err` says why
 *   f[0].type == WJ_STRING ? wj_string_dup(&f[0], &s, &n) : ...
 *   f[1].type == WJ_NUMBER ? wj_number(&f[1]) : ...
 *
 * Header-only: every function is `static`. Include it in one or more .c files.
 */
#ifndef WAFER_JSON_H
#define WAFER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { WJ_MISSING = 0, WJ_NULL, WJ_BOOL, WJ_NUMBER, WJ_STRING, WJ_OBJECT, WJ_ARRAY } wj_type;

/* A value as a span of the payload (for strings: between the quotes, still escaped). */
typedef struct {
    wj_type type;
    const uint8_t *start;
    size_t len;
} wj_value;

typedef struct {
    const uint8_t *p, *end, *begin;
    int depth;
    char *err;
    size_t errlen;
} wj_parser;

#define WJ_MAX_DEPTH 128

static bool wj_fail(wj_parser *ps, const char *what) {
    if (ps->err && ps->errlen)
        snprintf(ps->err, ps->errlen, "payload is not valid JSON: %s at byte %zu", what, (size_t)(ps->p - ps->begin));
    return false;
}

static void wj_ws(wj_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

/* One UTF-8 sequence starting at p (which is >= 0x80); returns its length or 0 if invalid. */
static size_t wj_utf8_len(const uint8_t *p, const uint8_t *end) {
    uint32_t cp;
    size_t n;
    if (*p >= 0xc2 && *p < 0xe0) { cp = *p & 0x1f; n = 2; }
    else if (*p >= 0xe0 && *p < 0xf0) { cp = *p & 0x0f; n = 3; }
    else if (*p >= 0xf0 && *p < 0xf5) { cp = *p & 0x07; n = 4; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[k] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    return n;
}

static int wj_hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* At the opening quote; leaves p after the closing quote, `v` spanning the contents. */
static bool wj_parse_string(wj_parser *ps, wj_value *v) {
    ps->p++;
    const uint8_t *start = ps->p;
    while (ps->p < ps->end) {
        uint8_t c = *ps->p;
        if (c == '"') {
            v->type = WJ_STRING;
            v->start = start;
            v->len = (size_t)(ps->p - start);
            ps->p++;
            return true;
        }
        if (c < 0x20) return wj_fail(ps, "control character in string");
        if (c == '\\') {
            if (ps->end - ps->p < 2) return wj_fail(ps, "unterminated escape");
            uint8_t e = ps->p[1];
            if (e == 'u') {
                if (ps->end - ps->p < 6) return wj_fail(ps, "truncated \\u escape");
                for (int k = 2; k < 6; k++)
                    if (wj_hex(ps->p[k]) < 0) return wj_fail(ps, "invalid \\u escape");
                ps->p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                ps->p += 2;
            } else {
                return wj_fail(ps, "invalid escape");
            }
        } else if (c >= 0x80) {
            size_t n = wj_utf8_len(ps->p, ps->end);
            if (!n) return wj_fail(ps, "invalid UTF-8");
            ps->p += n;
        } else {
            ps->p++;
        }
    }
    return wj_fail(ps, "unterminated string");
}

static bool wj_digits(wj_parser *ps) {
    const uint8_t *s = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    return ps->p > s;
}

static bool wj_parse_number(wj_parser *ps, wj_value *v) {
    const uint8_t *start = ps->p;
    if (*ps->p == '-') ps->p++;
    if (ps->p < ps->end && *ps->p == '0') ps->p++;
    else if (!wj_digits(ps)) return wj_fail(ps, "invalid number");
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (!wj_digits(ps)) return wj_fail(ps, "invalid number");
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (!wj_digits(ps)) return wj_fail(ps, "invalid number");
    }
    v->type = WJ_NUMBER;
    v->start = start;
    v->len = (size_t)(ps->p - start);
    return true;
}

static bool wj_literal(wj_parser *ps, const char *lit, wj_type t, wj_value *v) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) return wj_fail(ps, "expected a value");
    v->type = t;
    v->start = ps->p;
    v->len = n;
    ps->p += n;
    return true;
}

/* Parse any value. For the top-level object (`names` != NULL) record the named fields. */
static bool wj_parse_value(wj_parser *ps, wj_value *v, const char **names, wj_value *out, size_t n);

static bool wj_parse_container(wj_parser *ps, wj_value *v, bool object, const char **names, wj_value *out, size_t n) {
    if (++ps->depth > WJ_MAX_DEPTH) return wj_fail(ps, "nesting too deep");
    const uint8_t *start = ps->p;
    uint8_t close = object ? '}' : ']';
    ps->p++;
    wj_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            wj_value key = {0}, item = {0};
            if (object) {
                wj_ws(ps);
                if (ps->p >= ps->end || *ps->p != '"') return wj_fail(ps, "expected a string key");
                if (!wj_parse_string(ps, &key)) return false;
                wj_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return wj_fail(ps, "expected `:`");
                ps->p++;
            }
            if (!wj_parse_value(ps, &item, NULL, NULL, 0)) return false;
            if (object && names) {
                /* Keys are compared raw: field names with escapes are not looked up. */
                for (size_t i = 0; i < n; i++)
                    if (strlen(names[i]) == key.len && memcmp(names[i], key.start, key.len) == 0) out[i] = item;
            }
            wj_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
            return wj_fail(ps, object ? "expected `,` or `}`" : "expected `,` or `]`");
        }
    }
    ps->depth--;
    v->type = object ? WJ_OBJECT : WJ_ARRAY;
    v->start = start;
    v->len = (size_t)(ps->p - start);
    return true;
}

static bool wj_parse_value(wj_parser *ps, wj_value *v, const char **names, wj_value *out, size_t n) {
    wj_ws(ps);
    if (ps->p >= ps->end) return wj_fail(ps, "unexpected end of input");
    switch (*ps->p) {
    case '{': return wj_parse_container(ps, v, true, names, out, n);
    case '[': return wj_parse_container(ps, v, false, NULL, NULL, 0);
    case '"': return wj_parse_string(ps, v);
    case 't': return wj_literal(ps, "true", WJ_BOOL, v);
    case 'f': return wj_literal(ps, "false", WJ_BOOL, v);
    case 'n': return wj_literal(ps, "null", WJ_NULL, v);
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return wj_parse_number(ps, v);
        return wj_fail(ps, "expected a value");
    }
}

/* Validate `buf` as one JSON object and fill out[i] with the top-level field names[i]
 * (type WJ_MISSING when absent). On failure writes a message to `err` and returns false. */
static bool wj_object_fields(const uint8_t *buf, size_t len, const char **names, wj_value *out, size_t n, char *err, size_t errlen) {
    wj_parser ps = {buf, buf + len, buf, 0, err, errlen};
    for (size_t i = 0; i < n; i++) out[i] = (wj_value){0};
    wj_value top = {0};
    if (!wj_parse_value(&ps, &top, names, out, n)) return false;
    wj_ws(&ps);
    if (ps.p != ps.end) return wj_fail(&ps, "trailing characters");
    if (top.type != WJ_OBJECT) {
        snprintf(err, errlen, "payload must be a JSON object");
        return false;
    }
    return true;
}

/* A number value as a double (inf when out of range). */
static double wj_number(const wj_value *v) {
    char tmp[64];
    if (v->len < sizeof tmp) {
        memcpy(tmp, v->start, v->len);
        tmp[v->len] = 0;
        return strtod(tmp, NULL);
    }
    char *big = malloc(v->len + 1);
    if (!big) abort();
    memcpy(big, v->start, v->len);
    big[v->len] = 0;
    double d = strtod(big, NULL);
    free(big);
    return d;
}

static size_t wj_put_utf8(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = 0xc0 | (cp >> 6); o[1] = 0x80 | (cp & 0x3f); return 2; }
    if (cp < 0x10000) { o[0] = 0xe0 | (cp >> 12); o[1] = 0x80 | ((cp >> 6) & 0x3f); o[2] = 0x80 | (cp & 0x3f); return 3; }
    o[0] = 0xf0 | (cp >> 18); o[1] = 0x80 | ((cp >> 12) & 0x3f); o[2] = 0x80 | ((cp >> 6) & 0x3f); o[3] = 0x80 | (cp & 0x3f);
    return 4;
}

/* Unescape a (validated) string value into a malloc'd buffer (not NUL-terminated); lone
 * surrogates become U+FFFD. */
static void wj_string_dup(const wj_value *v, uint8_t **out, size_t *out_len) {
    uint8_t *o = malloc(v->len ? v->len : 1);
    if (!o) abort();
    size_t k = 0;
    for (size_t i = 0; i < v->len;) {
        uint8_t c = v->start[i];
        if (c != '\\') { o[k++] = c; i++; continue; }
        uint8_t e = v->start[i + 1];
        i += 2;
        switch (e) {
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int d = 0; d < 4; d++) cp = (cp << 4) | (uint32_t)wj_hex(v->start[i + d]);
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= v->len && v->start[i] == '\\' && v->start[i + 1] == 'u') {
                uint32_t lo = 0;
                for (int d = 0; d < 4; d++) lo = (lo << 4) | (uint32_t)wj_hex(v->start[i + 2 + d]);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
            /* A \u escape is 6 bytes and encodes to at most 4 (a pair: 12 → 4), so it fits. */
            k += wj_put_utf8(o + k, cp);
            break;
        }
        default: o[k++] = e; break; /* \" \\ \/ */
        }
    }
    *out = o;
    *out_len = k;
}

/* Shortest decimal that reads back as `d` (like Rust's `{}` for f64, without the trailing ".0"). */
static void wj_format_double(double d, char *buf, size_t len) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

#endif
