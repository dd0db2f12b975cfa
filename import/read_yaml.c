/* read_yaml.c - a YAML config into the configuration tree, with libyaml's event parser.
 *
 * One document of mappings, sequences and scalars, as OmegaConf and PyYAML write xlstm
 * configs. Refused with a message naming them: anchors and aliases (a tree with shared parts,
 * and the classic way to make a small file expand without bound), tags (`!!python/...`
 * asks for objects, not data), and several documents in one file. Plain scalars are typed as
 * YAML's core schema does for the values configs hold: null, ~ and empty; true and false (and
 * True, TRUE, ...); integers; floats; anything else is a string. Quoted scalars are strings. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "import/cfg.h"

typedef struct YamlReader {
    Importer *im;
    const char *text;    /* the input, for messages */
    size_t len;
    yaml_parser_t parser;
    yaml_event_t event;  /* the current event, owned until the next */
    bool have_event;
    size_t n_values;     /* nodes read so far, at most CFG_MAX_VALUES */
} YamlReader;

static bool yaml_next(YamlReader *y)
{
    if (y->have_event) yaml_event_delete(&y->event);
    y->have_event = false;
    if (!yaml_parser_parse(&y->parser, &y->event)) {
        const yaml_parser_t *p = &y->parser;
        char q[CFG_CLIP];
        size_t at = p->problem_mark.index;
        if (at < y->len && y->text[at] == '\t') {
            cfg_error(y->im, (int)p->problem_mark.line + 1, "a tab in the indentation (YAML "
                      "indents with spaces)");
            return false;
        }
        cfg_error(y->im, (int)p->problem_mark.line + 1, "invalid YAML: %s%s%s",
                  cfg_clip(q, sizeof q, p->problem ? p->problem : "unreadable"),
                  p->context ? " " : "", p->context ? p->context : "");
        return false;
    }
    y->have_event = true;
    return true;
}

static int event_line(const YamlReader *y) { return (int)y->event.start_mark.line + 1; }

/* Anchors and tags of a node, refused. */
static bool yaml_plain_node(YamlReader *y, const yaml_char_t *anchor, const yaml_char_t *tag,
                            int implicit)
{
    char q[CFG_CLIP];
    if (anchor) {
        cfg_error(y->im, event_line(y), "YAML anchors are not supported ('&%s')",
                  cfg_clip(q, sizeof q, (const char *)anchor));
        return false;
    }
    if (tag && !implicit) {
        const char *t = (const char *)tag, *std = "tag:yaml.org,2002:";
        bool short_form = strncmp(t, std, strlen(std)) == 0;  /* written as !!name */
        cfg_error(y->im, event_line(y), "YAML tags are not supported ('%s%s')",
                  short_form ? "!!" : "", cfg_clip(q, sizeof q, short_form ? t + strlen(std) : t));
        return false;
    }
    return true;
}

static bool word_is(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0) return true;
    return false;
}

/* A plain scalar: null, boolean, integer, float, else a string. */
static void yaml_type_plain(Importer *im, const char *s, size_t n, CfgValue *out)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    if (word_is(s, nulls)) {
        out->kind = CV_NULL;
        return;
    }
    if (word_is(s, trues) || word_is(s, falses)) {
        out->kind = CV_BOOL;
        out->b = word_is(s, trues);
        return;
    }
    const char *digits = s + (s[0] == '-' || s[0] == '+');
    bool integer = isdigit((unsigned char)*digits) && strspn(digits, "0123456789") == strlen(digits);
    bool numeric = strspn(s, "+-.eE0123456789") == n && strpbrk(s, "0123456789");
    char *end;
    if (integer) {
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno == ERANGE) {  /* refused, with its key, where it is read */
            out->text = cfg_strndup(im, s, n);
            out->kind = CV_FLOAT;
            out->int_overflow = true;
            out->f = strtod(s, NULL);
        } else {
            out->kind = CV_INT;
            out->i = v;
            out->f = (double)v;
        }
        return;
    }
    if (numeric) {
        double d = strtod(s, &end);
        if (*end == 0) {  /* 1e309 overflows to infinity: refused where it is read */
            out->kind = CV_FLOAT;
            out->f = d;
            out->text = cfg_strndup(im, s, n);
            return;
        }
    }
    out->kind = CV_STRING;
    out->s = cfg_strndup(im, s, n);
}

static bool yaml_node(YamlReader *y, int depth, CfgValue *out);

/* Children of a sequence or mapping until its end event, collected in a growing buffer and
 * then moved into the arena. */
static bool yaml_children(YamlReader *y, int depth, bool mapping, CfgValue *out)
{
    yaml_event_type_t end = mapping ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    CfgValue *buf = NULL;
    size_t n = 0, cap = 0;
    bool ok = false;
    for (;;) {
        if (!yaml_next(y)) goto done;
        if (y->event.type == end) break;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            CfgValue *nb = realloc(buf, cap * sizeof *nb);
            if (!nb) {
                cfg_error(y->im, 0, "out of memory");
                goto done;
            }
            buf = nb;
        }
        CfgValue *item = &buf[n++];
        *item = (CfgValue){0};
        if (mapping) {
            if (y->event.type != YAML_SCALAR_EVENT) {
                cfg_error(y->im, event_line(y), "complex mapping keys are not supported");
                goto done;
            }
            const yaml_event_t *e = &y->event;
            if (!yaml_plain_node(y, e->data.scalar.anchor, e->data.scalar.tag,
                                 e->data.scalar.plain_implicit || e->data.scalar.quoted_implicit))
                goto done;
            if (memchr(e->data.scalar.value, 0, e->data.scalar.length)) {
                cfg_error(y->im, event_line(y), "a key holds a NUL character");
                goto done;
            }
            item->key = cfg_strndup(y->im, (const char *)e->data.scalar.value, e->data.scalar.length);
            int key_line = event_line(y);
            if (!yaml_next(y) || !yaml_node(y, depth + 1, item)) goto done;
            item->line = key_line;  /* messages about a member point at its key */
        } else if (!yaml_node(y, depth + 1, item)) {
            goto done;
        }
    }
    out->count = n;
    out->items = cfg_alloc(y->im, (n + 1) * sizeof *out->items);
    if (n) memcpy(out->items, buf, n * sizeof *buf);
    ok = !mapping || cfg_map_index(y->im, out);
done:
    free(buf);
    return ok;
}

/* The node that starts with the current event. */
static bool yaml_node(YamlReader *y, int depth, CfgValue *out)
{
    const yaml_event_t *e = &y->event;
    char q[CFG_CLIP];
    out->line = event_line(y);
    if (++y->n_values > CFG_MAX_VALUES) {
        cfg_error(y->im, out->line, "more than %d values: not a model configuration", CFG_MAX_VALUES);
        return false;
    }
    if (depth > CFG_MAX_DEPTH) {
        cfg_error(y->im, out->line, "mappings and lists nested deeper than %d levels", CFG_MAX_DEPTH);
        return false;
    }
    switch (e->type) {
    case YAML_ALIAS_EVENT:
        cfg_error(y->im, out->line, "YAML aliases are not supported ('*%s')",
                  cfg_clip(q, sizeof q, (const char *)e->data.alias.anchor));
        return false;
    case YAML_SCALAR_EVENT: {
        if (!yaml_plain_node(y, e->data.scalar.anchor, e->data.scalar.tag,
                             e->data.scalar.plain_implicit || e->data.scalar.quoted_implicit))
            return false;
        const char *s = (const char *)e->data.scalar.value;
        size_t n = e->data.scalar.length;
        if (memchr(s, 0, n)) {
            cfg_error(y->im, out->line, "a string holds a NUL character");
            return false;
        }
        if (e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            yaml_type_plain(y->im, s, n, out);
        } else {
            out->kind = CV_STRING;
            out->s = cfg_strndup(y->im, s, n);
        }
        return true;
    }
    case YAML_SEQUENCE_START_EVENT:
        if (!yaml_plain_node(y, e->data.sequence_start.anchor, e->data.sequence_start.tag,
                             e->data.sequence_start.implicit))
            return false;
        out->kind = CV_LIST;
        return yaml_children(y, depth, false, out);
    case YAML_MAPPING_START_EVENT:
        if (!yaml_plain_node(y, e->data.mapping_start.anchor, e->data.mapping_start.tag,
                             e->data.mapping_start.implicit))
            return false;
        out->kind = CV_MAP;
        return yaml_children(y, depth, true, out);
    default:
        cfg_error(y->im, out->line, "unexpected YAML event %d", (int)e->type);
        return false;
    }
}

bool cfg_read_yaml(Importer *im, const char *text, size_t len, CfgValue *root)
{
    YamlReader y = {.im = im, .text = text, .len = len};
    if (!yaml_parser_initialize(&y.parser)) {
        cfg_error(im, 0, "out of memory");
        return false;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
    bool ok = false;
    if (!yaml_next(&y) || !yaml_next(&y)) goto done;  /* stream start, then a document */
    if (y.event.type == YAML_STREAM_END_EVENT) {
        cfg_error(im, 0, "the file is empty");
        goto done;
    }
    if (!yaml_next(&y) || !yaml_node(&y, 0, root)) goto done;
    if (!yaml_next(&y) || !yaml_next(&y)) goto done;  /* document end, then the stream's */
    if (y.event.type != YAML_STREAM_END_EVENT) {
        cfg_error(im, event_line(&y), "several YAML documents in one file are not supported");
        goto done;
    }
    ok = true;
done:
    if (y.have_event) yaml_event_delete(&y.event);
    yaml_parser_delete(&y.parser);
    return ok;
}
