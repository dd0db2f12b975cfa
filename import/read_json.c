/* read_json.c - a JSON config into the configuration tree, through the runtime's strict
 * parser (runtime/json.c, the safetensors header parser, linear in its input).
 *
 * The walk is linear too: values are visited in document order, so one cursor that only moves
 * forward turns byte offsets into line numbers, and each map's keys are hashed once (which
 * also finds duplicates, which the JSON parser keeps). */
#include <string.h>

#include "import/cfg.h"
#include "runtime/json.h"

typedef struct LineCursor {
    const char *text;
    size_t pos;  /* bytes before pos are counted in line */
    int line;
} LineCursor;

static int line_at(LineCursor *c, size_t offset)
{
    if (offset < c->pos) *c = (LineCursor){c->text, 0, 1};  /* never in document order */
    const char *p = c->text + c->pos, *end = c->text + offset;
    while ((p = memchr(p, '\n', (size_t)(end - p)))) {
        c->line++;
        p++;
    }
    c->pos = offset;
    return c->line;
}

static bool from_json(Importer *im, LineCursor *lc, const JsonValue *j, CfgValue *out)
{
    out->line = line_at(lc, j->offset);
    switch (j->kind) {
    case JSON_NULL: out->kind = CV_NULL; return true;
    case JSON_FALSE: case JSON_TRUE:
        out->kind = CV_BOOL;
        out->b = j->kind == JSON_TRUE;
        return true;
    case JSON_NUMBER:
        out->kind = j->is_int ? CV_INT : CV_FLOAT;
        out->int_overflow = j->int_overflow;
        out->i = j->u.n.i;
        out->f = j->is_int ? (double)j->u.n.i : j->u.n.num;
        if (!j->is_int) out->text = lc->text + j->offset;  /* in the file's text */
        return true;
    case JSON_STRING:
        if (memchr(j->u.s.str, 0, j->u.s.len)) {
            cfg_error(im, out->line, "a string holds a NUL character (\\u0000)");
            return false;
        }
        out->kind = CV_STRING;
        out->s = cfg_strndup(im, j->u.s.str, j->u.s.len);
        return true;
    case JSON_ARRAY: case JSON_OBJECT:
        out->kind = j->kind == JSON_ARRAY ? CV_LIST : CV_MAP;
        out->count = j->u.c.count;
        out->items = cfg_alloc(im, (j->u.c.count + 1) * sizeof *out->items);
        for (size_t i = 0; i < j->u.c.count; i++) {
            const JsonValue *c = &j->u.c.items[i];
            if (c->key) {
                if (memchr(c->key, 0, c->key_len)) {
                    cfg_error(im, line_at(lc, c->offset), "a key holds a NUL character (\\u0000)");
                    return false;
                }
                out->items[i].key = cfg_strndup(im, c->key, c->key_len);
            }
            if (!from_json(im, lc, c, &out->items[i])) return false;
        }
        return out->kind == CV_LIST || cfg_map_index(im, out);
    }
    return false;
}

JsonDoc *cfg_parse_json(Importer *im, const char *text, size_t len)
{
    JsonDoc *doc;
    JsonError jerr;
    JsonLimits limits = {.max_depth = CFG_MAX_DEPTH, .max_values = CFG_MAX_VALUES};
    if (json_parse(text, len, &limits, &doc, &jerr) != 0) {
        LineCursor lc = {text, 0, 1};
        cfg_error(im, line_at(&lc, jerr.offset), "invalid JSON: %s", jerr.msg);
        return NULL;
    }
    return doc;
}

bool cfg_from_json(Importer *im, const char *text, const JsonDoc *doc, CfgValue *root)
{
    LineCursor lc = {text, 0, 1};
    return from_json(im, &lc, json_root(doc), root);
}
