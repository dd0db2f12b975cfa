/* import.c - `mxc import CONFIG`: write a spec for a model described by an upstream
 * configuration file, so that an existing checkpoint needs no hand-written spec.
 *
 * Two formats are read:
 *   - a mamba_ssm MambaConfig as JSON (the config.json of the state-spaces Hugging Face repos);
 *   - an xlstm xLSTMLMModelConfig as JSON or YAML (the YAML a subset: block mappings, scalars,
 *     flow lists, block lists of scalars; see docs/import.md).
 * Both are parsed into one small tree (CfgValue), checked key by key against the upstream
 * dataclasses (unknown keys are refused, as upstream's dacite strict mode does; keys that only
 * matter for training are accepted and ignored), and printed as spec text. The text is then
 * run through the spec checker before it is written, so what `mxc import` prints always builds. */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"
#include "driver/import_xlstm_large.h"
#include "driver/import_mamba2.h"
#include "frontend/spec.h"
#include "runtime/json.h"

enum { MAX_CONFIG_BYTES = 16 << 20, MAX_YAML_DEPTH = 32 };

/* ---------------------------------------------------------------------------------------
 * The configuration tree. */

typedef enum { CV_NULL, CV_BOOL, CV_INT, CV_FLOAT, CV_STRING, CV_LIST, CV_MAP } CfgKind;

typedef struct CfgValue CfgValue;
struct CfgValue {
    CfgKind kind;
    int line;          /* 1-based line in the file, for messages */
    const char *key;   /* member of a map: its key */
    bool b;            /* CV_BOOL */
    int64_t i;         /* CV_INT */
    double f;          /* CV_FLOAT (and CV_INT, converted) */
    const char *s;     /* CV_STRING */
    CfgValue *items;   /* CV_LIST, CV_MAP: children in file order */
    size_t count;
};

/* Everything allocated while importing one file; freed at once at the end. */
typedef struct Pool {
    void **blocks;
    size_t n, cap;
} Pool;

typedef struct Importer {
    const char *path;  /* for messages */
    Pool pool;
    int errors;
} Importer;

static void *pool_alloc(Importer *im, size_t size)
{
    Pool *p = &im->pool;
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        void **nb = realloc(p->blocks, p->cap * sizeof *nb);
        if (!nb) {
            fprintf(stderr, "mxc: error: out of memory\n");
            exit(MXC_EXIT_ERROR);
        }
        p->blocks = nb;
    }
    void *mem = calloc(1, size ? size : 1);
    if (!mem) {
        fprintf(stderr, "mxc: error: out of memory\n");
        exit(MXC_EXIT_ERROR);
    }
    return p->blocks[p->n++] = mem;
}

static char *pool_strndup(Importer *im, const char *s, size_t n)
{
    char *d = pool_alloc(im, n + 1);
    memcpy(d, s, n);
    return d;
}

static void pool_free(Pool *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->blocks[i]);
    free(p->blocks);
}

__attribute__((format(printf, 3, 4)))
static void import_error(Importer *im, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (line > 0) fprintf(stderr, "%s:%d: error: ", im->path, line);
    else fprintf(stderr, "%s: error: ", im->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    im->errors++;
}

static const CfgValue *cfg_get(const CfgValue *map, const char *key)
{
    if (!map || map->kind != CV_MAP) return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->items[i].key, key) == 0) return &map->items[i];
    return NULL;
}

static const char *cfg_kind_name(CfgKind k)
{
    switch (k) {
    case CV_NULL: return "null";
    case CV_BOOL: return "a boolean";
    case CV_INT: return "an integer";
    case CV_FLOAT: return "a number";
    case CV_STRING: return "a string";
    case CV_LIST: return "a list";
    case CV_MAP: return "a mapping";
    }
    return "?";
}

/* ---------------------------------------------------------------------------------------
 * JSON, through the runtime's strict parser. */

static int line_of_offset(const char *text, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset; i++)
        if (text[i] == '\n') line++;
    return line;
}

static bool from_json(Importer *im, const char *text, const JsonValue *j, CfgValue *out)
{
    out->line = line_of_offset(text, j->offset);
    switch (j->kind) {
    case JSON_NULL: out->kind = CV_NULL; return true;
    case JSON_FALSE: case JSON_TRUE:
        out->kind = CV_BOOL;
        out->b = j->kind == JSON_TRUE;
        return true;
    case JSON_NUMBER:
        if (j->int_overflow) {
            import_error(im, out->line, "integer out of range");
            return false;
        }
        out->kind = j->is_int ? CV_INT : CV_FLOAT;
        out->i = j->u.n.i;
        out->f = j->u.n.num;
        return true;
    case JSON_STRING:
        out->kind = CV_STRING;
        out->s = pool_strndup(im, j->u.s.str, j->u.s.len);
        return true;
    case JSON_ARRAY: case JSON_OBJECT:
        out->kind = j->kind == JSON_ARRAY ? CV_LIST : CV_MAP;
        out->count = j->u.c.count;
        out->items = pool_alloc(im, (j->u.c.count + 1) * sizeof *out->items);
        for (size_t i = 0; i < j->u.c.count; i++) {
            const JsonValue *c = &j->u.c.items[i];
            if (c->key) out->items[i].key = pool_strndup(im, c->key, c->key_len);
            if (!from_json(im, text, c, &out->items[i])) return false;
            for (size_t k = 0; c->key && k < i; k++)
                if (strcmp(out->items[k].key, out->items[i].key) == 0) {
                    import_error(im, out->items[i].line, "duplicate key '%s'", out->items[i].key);
                    return false;
                }
        }
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------
 * The YAML subset of xlstm configs (what OmegaConf and PyYAML write for them):
 *
 *   key: scalar            scalars: null ~ true false, integers, floats, 'quoted', "quoted", plain
 *   key:                   a nested block mapping, more indented
 *     inner: 1
 *   key: [0, 3]            a flow list of scalars ([] is empty); {} is an empty mapping
 *   key:                   a block list of scalars
 *   - 1
 *
 * Comments (# ...) and one leading `---` are allowed. Anything else (anchors, aliases, tags,
 * multi-line strings, lists of mappings, tabs for indentation, several documents) is refused
 * with a message that names it. */

typedef struct YamlLine {
    int number;    /* 1-based */
    int indent;    /* leading spaces */
    char *text;    /* after the indentation, comment and trailing blanks removed */
} YamlLine;

typedef struct Yaml {
    Importer *im;
    YamlLine *lines;
    int n, pos;
} Yaml;

/* Cut a comment: '#' at the start or after a blank, outside quotes. */
static void yaml_strip(char *s)
{
    char quote = 0;
    for (char *p = s; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
            else if (*p == '\\' && quote == '"' && p[1]) p++;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
            *p = 0;
            break;
        }
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
}

static bool yaml_split_lines(Yaml *y, char *text)
{
    int number = 0;
    bool seen_content = false;
    for (char *line = text; line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        number++;
        int indent = 0;
        while (line[indent] == ' ') indent++;
        if (line[indent] == '\t') {
            import_error(y->im, number, "a tab in the indentation (YAML indents with spaces)");
            return false;
        }
        char *body = line + indent;
        yaml_strip(body);
        if (*body) {
            if (strcmp(body, "---") == 0 && indent == 0) {
                if (seen_content) {
                    import_error(y->im, number, "several YAML documents in one file are not supported");
                    return false;
                }
            } else if (strcmp(body, "...") == 0 && indent == 0) {
                /* end of document marker */
            } else {
                y->lines[y->n++] = (YamlLine){number, indent, body};
                seen_content = true;
            }
        }
        line = next;
    }
    return true;
}

/* A plain or quoted scalar, `s` trimmed. */
static bool yaml_scalar(Yaml *y, int line, const char *s, CfgValue *out)
{
    out->line = line;
    size_t n = strlen(s);
    if (n && strchr("&*!|>%@`", s[0])) {
        const char *what = s[0] == '&' ? "anchors" : s[0] == '*' ? "aliases"
                         : s[0] == '!' ? "tags" : (s[0] == '|' || s[0] == '>') ? "multi-line strings"
                         : "this syntax";
        import_error(y->im, line, "YAML %s are not supported ('%s')", what, s);
        return false;
    }
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        char *d = pool_alloc(y->im, n);
        size_t k = 0;
        for (size_t i = 1; i + 1 < n; i++) {
            if (s[0] == '"' && s[i] == '\\' && i + 2 < n) {
                char c = s[++i];
                d[k++] = c == 'n' ? '\n' : c == 't' ? '\t' : c;
            } else if (s[0] == '\'' && s[i] == '\'' && s[i + 1] == '\'') {
                d[k++] = s[i++];
            } else {
                d[k++] = s[i];
            }
        }
        out->kind = CV_STRING;
        out->s = d;
        return true;
    }
    if (n && (s[0] == '"' || s[0] == '\'')) {
        import_error(y->im, line, "unterminated quoted string %s", s);
        return false;
    }
    if (!n || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0) {
        out->kind = CV_NULL;
        return true;
    }
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "false") ||
        !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        out->kind = CV_BOOL;
        out->b = s[0] == 't' || s[0] == 'T';
        return true;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    bool digits = isdigit((unsigned char)s[0]) ||
                  ((s[0] == '-' || s[0] == '+') && isdigit((unsigned char)s[1]));
    if (*end == 0 && digits) {
        if (errno == ERANGE) {
            import_error(y->im, line, "integer out of range: %s", s);
            return false;
        }
        out->kind = CV_INT;
        out->i = v;
        out->f = (double)v;
        return true;
    }
    bool numeric = true;  /* [+-]digits[.digits][e[+-]digits], or .5 */
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) numeric = false;
    if (numeric) {
        errno = 0;
        double d = strtod(s, &end);
        if (*end == 0 && errno == 0 && isfinite(d)) {
            out->kind = CV_FLOAT;
            out->f = d;
            return true;
        }
    }
    out->kind = CV_STRING;
    out->s = pool_strndup(y->im, s, n);
    return true;
}

/* `[a, b, c]`, `[]` or `{}`. */
static bool yaml_flow(Yaml *y, int line, const char *s, CfgValue *out)
{
    out->line = line;
    size_t n = strlen(s);
    if (s[0] == '{') {
        const char *p = s + 1;
        while (*p == ' ') p++;
        if (*p != '}' || p[1]) {
            import_error(y->im, line, "YAML flow mappings ({...}) are not supported, except {}; "
                         "write the mapping as indented lines");
            return false;
        }
        out->kind = CV_MAP;
        return true;
    }
    if (s[n - 1] != ']') {
        import_error(y->im, line, "a flow list must end on its line with ']': %s", s);
        return false;
    }
    out->kind = CV_LIST;
    char *body = pool_strndup(y->im, s + 1, n - 2);
    size_t cap = 1;
    for (char *p = body; *p; p++)
        if (*p == ',') cap++;
    out->items = pool_alloc(y->im, cap * sizeof *out->items);
    char *tok = body;
    while (tok) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        while (*tok == ' ') tok++;
        size_t k = strlen(tok);
        while (k && tok[k - 1] == ' ') tok[--k] = 0;
        if (!*tok) {
            if (comma || out->count) {
                import_error(y->im, line, "empty element in the flow list %s", s);
                return false;
            }
            break;
        }
        if (strchr("[{", *tok)) {
            import_error(y->im, line, "nested flow collections are not supported: %s", s);
            return false;
        }
        if (!yaml_scalar(y, line, tok, &out->items[out->count++])) return false;
        tok = comma ? comma + 1 : NULL;
    }
    return true;
}

static bool yaml_value(Yaml *y, int line, const char *s, CfgValue *out)
{
    if (s[0] == '[' || s[0] == '{') return yaml_flow(y, line, s, out);
    return yaml_scalar(y, line, s, out);
}

static bool yaml_map(Yaml *y, int indent, int depth, CfgValue *out);

/* Block list of scalars: lines "- value" at `indent`. */
static bool yaml_list(Yaml *y, int indent, CfgValue *out)
{
    out->kind = CV_LIST;
    int start = y->pos, n = 0;
    while (start + n < y->n && y->lines[start + n].indent == indent &&
           (strncmp(y->lines[start + n].text, "- ", 2) == 0 || strcmp(y->lines[start + n].text, "-") == 0))
        n++;
    out->items = pool_alloc(y->im, (size_t)n * sizeof *out->items);
    for (; y->pos < start + n; y->pos++) {
        YamlLine *l = &y->lines[y->pos];
        const char *v = l->text + 1;
        while (*v == ' ') v++;
        if (!*v || (strchr(v, ':') && (strstr(v, ": ") || v[strlen(v) - 1] == ':'))) {
            import_error(y->im, l->number, "lists of mappings or of nested lists are not supported");
            return false;
        }
        if (!yaml_value(y, l->number, v, &out->items[out->count++])) return false;
    }
    if (y->pos < y->n && y->lines[y->pos].indent > indent) {
        import_error(y->im, y->lines[y->pos].number, "unexpected indentation");
        return false;
    }
    return true;
}

/* Find the ':' that ends a key: the first ": " or a final ':' outside quotes. */
static char *yaml_colon(char *s)
{
    char quote = 0;
    for (char *p = s; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == ':' && (p[1] == ' ' || p[1] == 0)) {
            return p;
        }
    }
    return NULL;
}

static bool yaml_map(Yaml *y, int indent, int depth, CfgValue *out)
{
    out->kind = CV_MAP;
    if (depth > MAX_YAML_DEPTH) {
        import_error(y->im, y->lines[y->pos].number, "mappings nested too deeply");
        return false;
    }
    size_t cap = 0;
    for (int i = y->pos; i < y->n && y->lines[i].indent >= indent; i++)
        if (y->lines[i].indent == indent) cap++;
    out->items = pool_alloc(y->im, (cap + 1) * sizeof *out->items);
    while (y->pos < y->n) {
        YamlLine *l = &y->lines[y->pos];
        if (l->indent < indent) break;
        if (l->indent > indent) {
            import_error(y->im, l->number, "unexpected indentation");
            return false;
        }
        if (l->text[0] == '-' && (l->text[1] == ' ' || !l->text[1])) {
            import_error(y->im, l->number, "a list item where a 'key: value' line was expected");
            return false;
        }
        char *colon = yaml_colon(l->text);
        if (!colon) {
            import_error(y->im, l->number, "expected 'key: value', got '%s'", l->text);
            return false;
        }
        if (l->text[0] == '?' || l->text[0] == '[' || l->text[0] == '{') {
            import_error(y->im, l->number, "complex mapping keys are not supported");
            return false;
        }
        CfgValue *v = &out->items[out->count++];
        char *key = l->text;
        size_t klen = (size_t)(colon - key);
        if (klen >= 2 && (key[0] == '"' || key[0] == '\'') && key[klen - 1] == key[0]) {
            key++;
            klen -= 2;
        }
        v->key = pool_strndup(y->im, key, klen);
        v->line = l->number;
        for (size_t k = 0; k + 1 < out->count; k++)
            if (strcmp(out->items[k].key, v->key) == 0) {
                import_error(y->im, l->number, "duplicate key '%s'", v->key);
                return false;
            }
        const char *rest = colon + 1;
        while (*rest == ' ') rest++;
        y->pos++;
        if (*rest) {
            if (!yaml_value(y, l->number, rest, v)) return false;
            v->line = l->number;
            continue;
        }
        /* "key:" alone: a nested mapping, a block list, or null */
        if (y->pos < y->n) {
            YamlLine *nx = &y->lines[y->pos];
            bool item = nx->text[0] == '-' && (nx->text[1] == ' ' || !nx->text[1]);
            if (item && nx->indent >= indent) {
                if (!yaml_list(y, nx->indent, v)) return false;
                v->line = l->number;
                continue;
            }
            if (nx->indent > indent) {
                if (!yaml_map(y, nx->indent, depth + 1, v)) return false;
                v->line = l->number;
                continue;
            }
        }
        v->kind = CV_NULL;
    }
    return true;
}

static bool parse_yaml(Importer *im, char *text, CfgValue *root)
{
    size_t nlines = 1;
    for (char *p = text; *p; p++)
        if (*p == '\n') nlines++;
    Yaml y = {.im = im, .lines = pool_alloc(im, nlines * sizeof(YamlLine))};
    if (!yaml_split_lines(&y, text)) return false;
    if (y.n == 0) {
        import_error(im, 0, "the file is empty");
        return false;
    }
    if (y.lines[0].indent != 0) {
        import_error(im, y.lines[0].number, "unexpected indentation");
        return false;
    }
    root->line = 1;
    return yaml_map(&y, 0, 0, root);
}

/* ---------------------------------------------------------------------------------------
 * Checked access to keys. Each config level has a table of the keys upstream's dataclass
 * has; keys marked ignored are accepted (they only affect training, initialisation or CUDA
 * kernels) and the others are read by the code below. */

typedef struct KnownKey {
    const char *name;
    bool ignored;
} KnownKey;

static bool check_keys(Importer *im, const CfgValue *map, const char *where, const KnownKey *keys)
{
    int unknown = 0;
    for (size_t i = 0; i < map->count; i++) {
        bool found = false;
        for (const KnownKey *k = keys; k->name; k++)
            if (strcmp(k->name, map->items[i].key) == 0) found = true;
        if (!found && ++unknown <= 5)
            import_error(im, map->items[i].line, "unknown key '%s' in %s", map->items[i].key, where);
    }
    if (unknown > 5) fprintf(stderr, "%s: ... and %d more unknown keys\n", im->path, unknown - 5);
    return unknown == 0;
}

/* A value that is absent or null takes the default (upstream's dataclass default). */
static bool present(const CfgValue *v) { return v && v->kind != CV_NULL; }

static bool get_int(Importer *im, const CfgValue *map, const char *key, int64_t def, int64_t *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!present(v)) return true;
    if (v->kind == CV_FLOAT && v->f == floor(v->f) && fabs(v->f) < 1e15) {
        *out = (int64_t)v->f;  /* 4.0 written by a YAML dumper */
        return true;
    }
    if (v->kind != CV_INT) {
        import_error(im, v->line, "'%s' must be an integer, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v->i;
    return true;
}

static bool get_bool(Importer *im, const CfgValue *map, const char *key, bool def, bool *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!present(v)) return true;
    if (v->kind != CV_BOOL) {
        import_error(im, v->line, "'%s' must be true or false, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v->b;
    return true;
}

static bool get_number(Importer *im, const CfgValue *map, const char *key, double def, double *out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!present(v)) return true;
    if (v->kind != CV_INT && v->kind != CV_FLOAT) {
        import_error(im, v->line, "'%s' must be a number, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v->f;
    return true;
}

static bool get_string(Importer *im, const CfgValue *map, const char *key, const char *def,
                       const char **out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = def;
    if (!present(v)) return true;
    if (v->kind != CV_STRING) {
        import_error(im, v->line, "'%s' must be a string, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v->s;
    return true;
}

/* A sub-configuration: a mapping, or absent/null. */
static bool get_map(Importer *im, const CfgValue *map, const char *key, const CfgValue **out)
{
    const CfgValue *v = cfg_get(map, key);
    *out = NULL;
    if (!present(v)) return true;
    if (v->kind != CV_MAP) {
        import_error(im, v->line, "'%s' must be a mapping, got %s", key, cfg_kind_name(v->kind));
        return false;
    }
    *out = v;
    return true;
}

static int line_of(const CfgValue *map, const char *key)
{
    const CfgValue *v = cfg_get(map, key);
    return v ? v->line : map ? map->line : 0;
}

/* The shortest decimal form that reads back as the same double, always with a '.' or 'e'
 * so that the spec reads it as a float. */
static void format_number(char *buf, size_t len, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", len - strlen(buf) - 1);
}

/* One line of spec text, with an optional comment aligned after it. */
__attribute__((format(printf, 3, 4)))
static void put(FILE *out, const char *comment, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (comment) fprintf(out, "%-35s %s\n", line, comment);
    else fprintf(out, "%s\n", line);
}

/* ---------------------------------------------------------------------------------------
 * mamba_ssm MambaConfig (models/config_mamba.py) and the mixer's arguments (ssm_cfg). */

static const KnownKey mamba_keys[] = {
    {"d_model", false}, {"d_intermediate", false}, {"n_layer", false}, {"vocab_size", false},
    {"ssm_cfg", false}, {"attn_layer_idx", false}, {"attn_cfg", true}, {"rms_norm", false},
    {"residual_in_fp32", true}, {"fused_add_norm", true}, {"pad_vocab_size_multiple", false},
    {"tie_embeddings", false}, {NULL, false},
};

static const KnownKey ssm_keys[] = {
    {"layer", false}, {"d_state", false}, {"d_conv", false}, {"expand", false},
    {"dt_rank", false}, {"dt_min", true}, {"dt_max", true}, {"dt_init", true},
    {"dt_scale", true}, {"dt_init_floor", true}, {"conv_bias", false}, {"bias", false},
    {"use_fast_path", true}, {"layer_idx", true}, {NULL, false},
};

/* The mixer's arguments as written: an integer stays "2", a float its shortest form. */
static void number_text(const CfgValue *v, double value, char *buf, size_t len)
{
    if (!present(v)) return; /* the default's text stays */
    if (v->kind == CV_INT) snprintf(buf, len, "%lld", (long long)v->i);
    else format_number(buf, len, value);
}

/* One bound of a dt_limit / time_step_limit pair: a number, or transformers 5's
 * {"__float__": "Infinity"}. */
static bool limit_bound(Importer *im, const CfgValue *v, const char *key, double *out)
{
    if (v->kind == CV_INT || v->kind == CV_FLOAT) {
        *out = v->f;
        return true;
    }
    const CfgValue *f = v->kind == CV_MAP ? cfg_get(v, "__float__") : NULL;
    if (v->kind == CV_STRING || (f && f->kind == CV_STRING)) {
        const char *t = v->kind == CV_STRING ? v->s : f->s;
        if (strcmp(t, "Infinity") == 0 || strcmp(t, "inf") == 0) {
            *out = INFINITY;
            return true;
        }
    }
    import_error(im, v->line, "'%s' must hold two numbers (the upper one may be Infinity)", key);
    return false;
}

static bool get_limit(Importer *im, const CfgValue *map, const char *key, double out[2])
{
    const CfgValue *v = cfg_get(map, key);
    if (!present(v)) return true;
    if (v->kind != CV_LIST || v->count != 2) {
        import_error(im, v->line, "'%s' must be a list of two numbers, got %s", key,
                     cfg_kind_name(v->kind));
        return false;
    }
    return limit_bound(im, &v->items[0], key, &out[0]) && limit_bound(im, &v->items[1], key, &out[1]);
}

static const KnownKey mamba2_ssm_keys[] = {
    {"layer", false}, {"d_state", false}, {"d_conv", false}, {"expand", false},
    {"headdim", false}, {"d_ssm", false}, {"ngroups", false}, {"D_has_hdim", false},
    {"rmsnorm", false}, {"norm_before_gate", false}, {"dt_limit", false}, {"bias", false},
    {"conv_bias", false}, {"chunk_size", false}, {"conv_init", true}, {"A_init_range", true},
    {"dt_min", true}, {"dt_max", true}, {"dt_init_floor", true}, {"use_mem_eff_path", true},
    {"layer_idx", true}, {"sequence_parallel", true}, {"process_group", true}, {NULL, false},
};

/* ssm_cfg of a MambaConfig with layer "Mamba2": the arguments of mamba_ssm's Mamba2. */
static bool import_mamba2_ssm(Importer *im, const CfgValue *ssm, int64_t d_model, int64_t n_layer,
                              int64_t vocab, int64_t d_inter, int64_t pad, bool rms, bool tie,
                              const char *name, FILE *out)
{
    if (!check_keys(im, ssm, "ssm_cfg (the Mamba2 mixer's arguments)", mamba2_ssm_keys)) return false;
    if (d_inter != 0) {
        import_error(im, line_of(ssm, "layer"), "'d_intermediate' is %lld: mxc compiles Mamba-2 "
                     "blocks without the GatedMLP (the released Mamba-2 models have 0)",
                     (long long)d_inter);
        return false;
    }
    Mamba2Import s;
    mamba2_import_defaults(&s);
    s.d_model = d_model;
    s.n_layer = n_layer;
    s.vocab_size = vocab;
    s.pad_vocab_size_multiple = pad;
    s.rms_norm = rms;
    s.tie_embeddings = tie;
    bool ok = get_int(im, ssm, "d_state", 128, &s.d_state) & get_int(im, ssm, "d_conv", 4, &s.d_conv) &
              get_number(im, ssm, "expand", 2, &s.expand) & get_int(im, ssm, "headdim", 64, &s.headdim) &
              get_int(im, ssm, "d_ssm", 0, &s.d_ssm) & get_int(im, ssm, "ngroups", 1, &s.ngroups) &
              get_int(im, ssm, "chunk_size", 256, &s.chunk_size) &
              get_bool(im, ssm, "D_has_hdim", false, &s.D_has_hdim) &
              get_bool(im, ssm, "rmsnorm", true, &s.rmsnorm) &
              get_bool(im, ssm, "norm_before_gate", false, &s.norm_before_gate) &
              get_bool(im, ssm, "bias", false, &s.bias) & get_bool(im, ssm, "conv_bias", true, &s.conv_bias);
    if (!ok || !get_limit(im, ssm, "dt_limit", s.dt_limit)) return false;
    number_text(cfg_get(ssm, "expand"), s.expand, s.expand_text, sizeof s.expand_text);
    mamba2_import_print(out, name, &s);
    return true;
}

/* ---------------------------------------------------------------------------------------
 * transformers Mamba2Config (model_type "mamba2"): the Hugging Face conversion of the same
 * model; Mamba2ForCausalLM's checkpoints differ only in backbone.embeddings.weight, which the
 * binding accepts. vocab_size is used as is (already padded). */

static const KnownKey hf_mamba2_read[] = {
    {"model_type", false}, {"hidden_size", false}, {"num_hidden_layers", false},
    {"vocab_size", false}, {"state_size", false}, {"conv_kernel", false}, {"expand", false},
    {"head_dim", false}, {"num_heads", false}, {"n_groups", false}, {"chunk_size", false},
    {"time_step_limit", false}, {"use_bias", false}, {"use_conv_bias", false},
    {"layer_norm_epsilon", false}, {"rms_norm", false}, {"tie_word_embeddings", false},
    {"hidden_act", false}, {"intermediate_size", false}, {"norm_before_gate", false},
    {NULL, false},
};

static bool import_hf_mamba2(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    Mamba2Import s;
    mamba2_import_defaults(&s);
    int64_t heads = 128, inter = -1;
    const char *act = "silu";
    bool gate_first = false;
    s.pad_vocab_size_multiple = 1;
    s.tie_embeddings = false; /* Mamba2Config's default */
    s.headdim = 64;
    s.ngroups = 8;
    bool ok = get_int(im, c, "hidden_size", -1, &s.d_model) &
              get_int(im, c, "num_hidden_layers", -1, &s.n_layer) &
              get_int(im, c, "vocab_size", -1, &s.vocab_size) &
              get_int(im, c, "state_size", 128, &s.d_state) & get_int(im, c, "conv_kernel", 4, &s.d_conv) &
              get_number(im, c, "expand", 2, &s.expand) & get_int(im, c, "head_dim", 64, &s.headdim) &
              get_int(im, c, "num_heads", 128, &heads) & get_int(im, c, "n_groups", 8, &s.ngroups) &
              get_int(im, c, "chunk_size", 256, &s.chunk_size) &
              get_int(im, c, "intermediate_size", -1, &inter) &
              get_bool(im, c, "use_bias", false, &s.bias) &
              get_bool(im, c, "use_conv_bias", true, &s.conv_bias) &
              get_number(im, c, "layer_norm_epsilon", 1e-5, &s.norm_eps) &
              get_bool(im, c, "rms_norm", true, &s.rmsnorm) &
              get_bool(im, c, "tie_word_embeddings", false, &s.tie_embeddings) &
              get_string(im, c, "hidden_act", "silu", &act) &
              get_bool(im, c, "norm_before_gate", false, &gate_first);
    if (!ok || !get_limit(im, c, "time_step_limit", s.dt_limit)) return false;
    if (s.d_model < 0 || s.n_layer < 0 || s.vocab_size < 0) {
        import_error(im, 0, "the Mamba2Config lacks '%s' (hidden_size, num_hidden_layers and "
                     "vocab_size are required)", s.d_model < 0 ? "hidden_size"
                     : s.n_layer < 0 ? "num_hidden_layers" : "vocab_size");
        return false;
    }
    if (strcmp(act, "silu") != 0) {
        import_error(im, line_of(c, "hidden_act"), "'hidden_act' is '%s': the Mamba-2 mixer "
                     "computes SiLU", act);
        return false;
    }
    double d_inner = floor(s.expand * (double)s.d_model);
    if ((double)heads * (double)s.headdim != d_inner || (inter >= 0 && (double)inter != d_inner)) {
        import_error(im, line_of(c, "num_heads"), "num_heads * head_dim = %lld * %lld must equal "
                     "int(expand * hidden_size) = %.0f%s", (long long)heads, (long long)s.headdim,
                     d_inner, inter >= 0 ? " and intermediate_size" : "");
        return false;
    }
    number_text(cfg_get(c, "expand"), s.expand, s.expand_text, sizeof s.expand_text);
    if (gate_first) /* SEMANTICS-mamba2.md C.2: not a field transformers' Mamba2 reads */
        mamba2_import_note(&s, "norm_before_gate = true is not read by transformers' Mamba2, which "
                           "gates before the norm: so does this spec.");
    if (s.ngroups > 1) /* C.9 item 6 */
        mamba2_import_note(&s, "The gated norm is grouped (n_groups) as in mamba_ssm, which the "
                           "checkpoint comes from; transformers normalises over all channels.");
    if (s.norm_eps != 1e-5)
        mamba2_import_note(&s, "layer_norm_epsilon sets the block norms; the gated norm keeps "
                           "mamba_ssm's 1e-5.");
    /* PretrainedConfig carries many keys of its own (token ids, dtype, ...): not refused */
    bool other = false;
    for (size_t i = 0; i < c->count; i++) {
        bool read = false;
        for (const KnownKey *k = hf_mamba2_read; k->name; k++)
            if (strcmp(k->name, c->items[i].key) == 0) read = true;
        other |= !read;
    }
    if (other)
        mamba2_import_note(&s, "The config's other keys (token ids, init, training, dtype) do not "
                           "change the function.");
    mamba2_import_print(out, name, &s);
    return true;
}

static bool import_mamba(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    if (!check_keys(im, c, "the MambaConfig", mamba_keys)) return false;
    const CfgValue *attn = cfg_get(c, "attn_layer_idx");
    if (present(attn) && (attn->kind != CV_LIST || attn->count > 0)) {
        import_error(im, attn->line, "'attn_layer_idx' lists attention layers: mxc compiles Mamba "
                     "and Mamba-2 blocks only (hybrid Mamba + attention models are not supported)");
        return false;
    }
    int64_t d_model, n_layer, vocab, d_inter, pad;
    bool rms, tie;
    bool ok = get_int(im, c, "d_model", -1, &d_model) & get_int(im, c, "n_layer", -1, &n_layer) &
              get_int(im, c, "vocab_size", -1, &vocab) & get_int(im, c, "d_intermediate", 0, &d_inter) &
              get_int(im, c, "pad_vocab_size_multiple", 8, &pad) & get_bool(im, c, "rms_norm", true, &rms) &
              get_bool(im, c, "tie_embeddings", true, &tie);
    if (!ok) return false;
    if (d_model < 0 || n_layer < 0 || vocab < 0) {
        import_error(im, 0, "the MambaConfig lacks '%s' (d_model, n_layer and vocab_size are required)",
                     d_model < 0 ? "d_model" : n_layer < 0 ? "n_layer" : "vocab_size");
        return false;
    }
    const CfgValue *ssm;
    if (!get_map(im, c, "ssm_cfg", &ssm)) return false;
    int64_t d_state = 16, d_conv = 4, dt_rank = -1;
    double expand = 2;
    bool conv_bias = true, bias = false;
    const char *layer = "Mamba1";
    if (ssm) {
        if (!get_string(im, ssm, "layer", "Mamba1", &layer)) return false;
        if (strcmp(layer, "Mamba2") == 0)
            return import_mamba2_ssm(im, ssm, d_model, n_layer, vocab, d_inter, pad, rms, tie, name,
                                     out);
        if (strcmp(layer, "Mamba1") != 0) {
            import_error(im, line_of(ssm, "layer"), "'ssm_cfg.layer' is '%s': mxc compiles the "
                         "mixers 'Mamba1' and 'Mamba2'", layer);
            return false;
        }
        if (!check_keys(im, ssm, "ssm_cfg (the Mamba mixer's arguments)", ssm_keys)) return false;
        ok = get_int(im, ssm, "d_state", 16, &d_state) & get_int(im, ssm, "d_conv", 4, &d_conv) &
             get_number(im, ssm, "expand", 2, &expand) & get_bool(im, ssm, "conv_bias", true, &conv_bias) &
             get_bool(im, ssm, "bias", false, &bias);
        if (!ok) return false;
        const CfgValue *r = cfg_get(ssm, "dt_rank");
        if (present(r) && !(r->kind == CV_STRING && strcmp(r->s, "auto") == 0)) {
            if (!get_int(im, ssm, "dt_rank", -1, &dt_rank)) return false;
        }
    }
    const CfgValue *ev = ssm ? cfg_get(ssm, "expand") : NULL;
    char expand_text[40];
    if (!present(ev)) snprintf(expand_text, sizeof expand_text, "2");
    else if (ev->kind == CV_INT) snprintf(expand_text, sizeof expand_text, "%lld", (long long)ev->i);
    else format_number(expand_text, sizeof expand_text, expand);

    fprintf(out, "model %s {\n", name);
    put(out, "# mamba_ssm MambaLMHeadModel parameter names", "    family = mamba;");
    put(out, NULL, "    vocab_size = %lld;", (long long)vocab);
    put(out, NULL, "    pad_vocab_size_multiple = %lld;", (long long)pad);
    put(out, NULL, "    d_model = %lld;", (long long)d_model);
    put(out, "# n_layer", "    blocks = [mamba * %lld];", (long long)n_layer);
    put(out, rms ? "# rms_norm = true" : "# rms_norm = false", "    norm = %s;",
        rms ? "rmsnorm" : "layernorm");
    put(out, "# MixerModel's norm_epsilon (not in the config)", "    norm_eps = 1e-5;");
    put(out, "# tie_embeddings", "    tie_weights = %s;", tie ? "true" : "false");
    fprintf(out, "    mamba {\n");
    fprintf(out, "        d_state = %lld;\n", (long long)d_state);
    fprintf(out, "        d_conv = %lld;\n", (long long)d_conv);
    fprintf(out, "        expand = %s;\n", expand_text);
    if (dt_rank < 0) fprintf(out, "        dt_rank = auto;\n");
    else fprintf(out, "        dt_rank = %lld;\n", (long long)dt_rank);
    fprintf(out, "        conv_bias = %s;\n", conv_bias ? "true" : "false");
    fprintf(out, "        bias = %s;\n", bias ? "true" : "false");
    fprintf(out, "        d_intermediate = %lld;\n", (long long)d_inter);
    fprintf(out, "    }\n}\n");
    return true;
}

/* ---------------------------------------------------------------------------------------
 * xlstm xLSTMLMModelConfig (xlstm_lm_model.py, xlstm_block_stack.py, the blocks and components folders). */

static const KnownKey xlstm_keys[] = {
    {"vocab_size", false}, {"tie_weights", false}, {"weight_decay_on_embedding", true},
    {"add_embedding_dropout", true}, {"mlstm_block", false}, {"slstm_block", false},
    {"context_length", false}, {"num_blocks", false}, {"embedding_dim", false},
    {"add_post_blocks_norm", false}, {"bias", false}, {"dropout", true}, {"slstm_at", false},
    {"_block_map", true}, {NULL, false},
};
static const KnownKey mlstm_block_keys[] = {
    {"mlstm", false}, {"_num_blocks", true}, {"_block_idx", true}, {NULL, false},
};
static const KnownKey mlstm_keys[] = {
    {"proj_factor", false}, {"round_proj_up_dim_up", false}, {"round_proj_up_to_multiple_of", false},
    {"_proj_up_dim", true}, {"conv1d_kernel_size", false}, {"qkv_proj_blocksize", false},
    {"num_heads", false}, {"embedding_dim", true}, {"bias", true}, {"dropout", true},
    {"context_length", true}, {"_num_blocks", true}, {"_inner_embedding_dim", true}, {NULL, false},
};
static const KnownKey slstm_block_keys[] = {
    {"slstm", false}, {"feedforward", false}, {"_num_blocks", true}, {"_block_idx", true}, {NULL, false},
};
static const KnownKey slstm_keys[] = {
    {"hidden_size", true}, {"num_heads", false}, {"num_states", true}, {"backend", false},
    {"function", false}, {"bias_init", true}, {"recurrent_weight_init", true}, {"_block_idx", true},
    {"_num_blocks", true}, {"num_gates", true}, {"gradient_recurrent_cut", true},
    {"gradient_recurrent_clipval", true}, {"forward_clipval", false}, {"batch_size", true},
    {"input_shape", true}, {"internal_input_shape", true}, {"output_shape", true},
    {"constants", true}, {"dtype", true}, {"dtype_b", true}, {"dtype_r", true}, {"dtype_w", true},
    {"dtype_g", true}, {"dtype_s", true}, {"dtype_a", true},
    {"enable_automatic_mixed_precision", true}, {"initial_val", false}, {"embedding_dim", true},
    {"conv1d_kernel_size", false}, {"group_norm_weight", false}, {"dropout", true}, {NULL, false},
};
static const KnownKey ffn_keys[] = {
    {"proj_factor", false}, {"round_proj_up_dim_up", false}, {"round_proj_up_to_multiple_of", false},
    {"_proj_up_dim", true}, {"act_fn", false}, {"embedding_dim", true}, {"dropout", true},
    {"bias", false}, {"ff_type", false}, {"_num_blocks", true}, {NULL, false},
};

static const char *bool_text(bool b) { return b ? "true" : "false"; }

static bool import_xlstm(Importer *im, const CfgValue *c, const char *name, FILE *out)
{
    if (!check_keys(im, c, "the xLSTMLMModelConfig", xlstm_keys)) return false;
    int64_t vocab, ctx, num_blocks, emb;
    bool tie, post_norm, bias;
    const CfgValue *mb, *sb;
    bool ok = get_int(im, c, "vocab_size", -1, &vocab) & get_int(im, c, "context_length", -1, &ctx) &
              get_int(im, c, "num_blocks", 1, &num_blocks) & get_int(im, c, "embedding_dim", 128, &emb) &
              get_bool(im, c, "tie_weights", false, &tie) &
              get_bool(im, c, "add_post_blocks_norm", true, &post_norm) &
              get_bool(im, c, "bias", false, &bias) &
              get_map(im, c, "mlstm_block", &mb) & get_map(im, c, "slstm_block", &sb);
    if (!ok) return false;
    if (vocab < 1) {
        import_error(im, line_of(c, "vocab_size"), "the config has no vocab_size (upstream's default -1 "
                     "means unset); it is needed for the embedding and the head");
        return false;
    }
    if (num_blocks < 1 || num_blocks > SPEC_BLOCKS_MAX) {
        import_error(im, line_of(c, "num_blocks"), "'num_blocks' must be between 1 and %d",
                     SPEC_BLOCKS_MAX);
        return false;
    }
    if (!mb && !sb) {
        import_error(im, 0, "the config has neither an mlstm_block nor an slstm_block");
        return false;
    }
    /* The stack (xLSTMBlockStackConfig.__post_init__): without an mlstm_block every block is sLSTM. */
    bool all_slstm = !mb;
    char *is_slstm = pool_alloc(im, (size_t)num_blocks);
    const CfgValue *at = cfg_get(c, "slstm_at");
    if (all_slstm) {
        memset(is_slstm, 1, (size_t)num_blocks);
    } else if (present(at) && at->kind == CV_STRING && strcmp(at->s, "all") == 0) {
        all_slstm = true;
        memset(is_slstm, 1, (size_t)num_blocks);
    } else if (present(at)) {
        if (at->kind != CV_LIST) {
            import_error(im, at->line, "'slstm_at' must be a list of block indices or \"all\"");
            return false;
        }
        for (size_t i = 0; i < at->count; i++) {
            const CfgValue *e = &at->items[i];
            if (e->kind != CV_INT || e->i < 0 || e->i >= num_blocks) {
                import_error(im, e->line, "'slstm_at' element %zu is not a block index in 0 .. %lld",
                             i, (long long)num_blocks - 1);
                return false;
            }
            if (is_slstm[e->i]) {
                import_error(im, e->line, "'slstm_at' lists block %lld twice", (long long)e->i);
                return false;
            }
            is_slstm[e->i] = 1;
        }
    }
    bool any_m = false, any_s = false;
    for (int64_t i = 0; i < num_blocks; i++) {
        if (is_slstm[i]) any_s = true;
        else any_m = true;
    }
    if (any_s && !sb) {
        import_error(im, line_of(c, "slstm_at"), "'slstm_at' places sLSTM blocks but the config has no "
                     "slstm_block");
        return false;
    }

    /* mLSTM layer (mLSTMLayerConfig) */
    const CfgValue *ml = NULL;
    int64_t m_heads = 4, m_conv = 4, m_qkv = 4, m_round_to = 64;
    double m_pf = 2.0;
    bool m_round_up = true;
    if (mb) {
        if (!check_keys(im, mb, "mlstm_block", mlstm_block_keys) || !get_map(im, mb, "mlstm", &ml))
            return false;
        if (ml) {
            if (!check_keys(im, ml, "mlstm_block.mlstm", mlstm_keys)) return false;
            ok = get_int(im, ml, "num_heads", 4, &m_heads) &
                 get_int(im, ml, "conv1d_kernel_size", 4, &m_conv) &
                 get_int(im, ml, "qkv_proj_blocksize", 4, &m_qkv) &
                 get_number(im, ml, "proj_factor", 2.0, &m_pf) &
                 get_bool(im, ml, "round_proj_up_dim_up", true, &m_round_up) &
                 get_int(im, ml, "round_proj_up_to_multiple_of", 64, &m_round_to);
            if (!ok) return false;
        }
    }

    /* sLSTM layer (sLSTMLayerConfig) and its feed-forward (FeedForwardConfig) */
    const CfgValue *sl = NULL, *ff = NULL;
    int64_t s_heads = 4, s_conv = 4, f_round_to = 64;
    const char *backend = "cuda", *function = "slstm", *act = "gelu", *ff_type = "ffn_gated";
    bool has_ffn = true, f_round_up = true, f_bias = false, gn_weight = true;
    double f_pf = 1.3, init_val = 0;
    if (sb) {
        if (!check_keys(im, sb, "slstm_block", slstm_block_keys) || !get_map(im, sb, "slstm", &sl) ||
            !get_map(im, sb, "feedforward", &ff))
            return false;
        const CfgValue *ffv = cfg_get(sb, "feedforward");
        has_ffn = !(ffv && ffv->kind == CV_NULL);  /* absent: the default FeedForwardConfig() */
        if (sl) {
            if (!check_keys(im, sl, "slstm_block.slstm", slstm_keys)) return false;
            ok = get_int(im, sl, "num_heads", 4, &s_heads) &
                 get_int(im, sl, "conv1d_kernel_size", 4, &s_conv) &
                 get_string(im, sl, "backend", "cuda", &backend) &
                 get_string(im, sl, "function", "slstm", &function) &
                 get_bool(im, sl, "group_norm_weight", true, &gn_weight) &
                 get_number(im, sl, "initial_val", 0.0, &init_val);
            if (!ok) return false;
            if (strcmp(backend, "cuda") != 0 && strcmp(backend, "vanilla") != 0) {
                import_error(im, line_of(sl, "backend"),
                             "unknown sLSTM backend '%s' (expected cuda or vanilla)", backend);
                return false;
            }
            if (strcmp(function, "slstm") != 0) {
                import_error(im, line_of(sl, "function"), "sLSTM cell function '%s' is not supported "
                             "(only 'slstm')", function);
                return false;
            }
            if (present(cfg_get(sl, "forward_clipval"))) {
                import_error(im, line_of(sl, "forward_clipval"), "'forward_clipval' clips the sLSTM "
                             "cell in forward; mxc does not implement it (leave it null)");
                return false;
            }
            if (!gn_weight) {
                import_error(im, line_of(sl, "group_norm_weight"), "'group_norm_weight: false' is not "
                             "supported (mxc expects the group norm's weight)");
                return false;
            }
            if (init_val != 0) {
                import_error(im, line_of(sl, "initial_val"), "a non-zero 'initial_val' (initial sLSTM "
                             "state) is not supported");
                return false;
            }
        }
        if (ff) {
            if (!check_keys(im, ff, "slstm_block.feedforward", ffn_keys)) return false;
            ok = get_number(im, ff, "proj_factor", 1.3, &f_pf) &
                 get_string(im, ff, "act_fn", "gelu", &act) &
                 get_bool(im, ff, "bias", false, &f_bias) &
                 get_string(im, ff, "ff_type", "ffn_gated", &ff_type) &
                 get_bool(im, ff, "round_proj_up_dim_up", true, &f_round_up) &
                 get_int(im, ff, "round_proj_up_to_multiple_of", 64, &f_round_to);
            if (!ok) return false;
            if (strcmp(ff_type, "ffn_gated") != 0) {
                import_error(im, line_of(ff, "ff_type"), "feed-forward type '%s' is not supported "
                             "(only 'ffn_gated')", ff_type);
                return false;
            }
        }
    }

    char num[40];
    fprintf(out, "model %s {\n", name);
    put(out, "# xlstm xLSTMLMModel parameter names", "    family = xlstm;");
    fprintf(out, "    vocab_size = %lld;\n", (long long)vocab);
    fprintf(out, "    embedding_dim = %lld;\n", (long long)emb);
    fprintf(out, "    context_length = %lld;\n", (long long)ctx);
    fprintf(out, "    num_blocks = %lld;\n", (long long)num_blocks);
    if (all_slstm) {
        fprintf(out, "    slstm_at = all;\n");
    } else {
        fprintf(out, "    slstm_at = [");
        bool first = true;
        for (int64_t i = 0; i < num_blocks; i++)
            if (is_slstm[i]) {
                fprintf(out, "%s%lld", first ? "" : ", ", (long long)i);
                first = false;
            }
        fprintf(out, "];\n");
    }
    fprintf(out, "    tie_weights = %s;\n", bool_text(tie));
    fprintf(out, "    add_post_blocks_norm = %s;\n", bool_text(post_norm));
    fprintf(out, "    bias = %s;\n", bool_text(bias));
    if (any_m) {
        format_number(num, sizeof num, m_pf);
        fprintf(out, "    mlstm {\n");
        fprintf(out, "        num_heads = %lld;\n", (long long)m_heads);
        fprintf(out, "        proj_factor = %s;\n", num);
        fprintf(out, "        conv1d_kernel_size = %lld;\n", (long long)m_conv);
        fprintf(out, "        qkv_proj_blocksize = %lld;\n", (long long)m_qkv);
        fprintf(out, "        round_proj_up_dim_up = %s;\n", bool_text(m_round_up));
        fprintf(out, "        round_proj_up_to_multiple_of = %lld;\n", (long long)m_round_to);
        fprintf(out, "    }\n");
    }
    if (any_s) {
        fprintf(out, "    slstm {\n");
        fprintf(out, "        num_heads = %lld;\n", (long long)s_heads);
        fprintf(out, "        conv1d_kernel_size = %lld;\n", (long long)s_conv);
        put(out, present(cfg_get(sl, "backend")) ? "# the layout of checkpoints of this sLSTM backend"
                                                  : "# backend: cuda, upstream's default",
            "        layout = %s;", backend);
        if (!has_ffn) {
            fprintf(out, "        feedforward = false;\n");
        } else {
            const char *act_spelled = strcmp(act, "relu^2") == 0 ? "relu2" : act;
            format_number(num, sizeof num, f_pf);
            fprintf(out, "        feedforward {\n");
            fprintf(out, "            proj_factor = %s;\n", num);
            fprintf(out, "            act_fn = \"%s\";\n", act_spelled);
            fprintf(out, "            bias = %s;\n", bool_text(f_bias));
            fprintf(out, "            round_proj_up_dim_up = %s;\n", bool_text(f_round_up));
            fprintf(out, "            round_proj_up_to_multiple_of = %lld;\n", (long long)f_round_to);
            fprintf(out, "        }\n");
        }
        fprintf(out, "    }\n");
    }
    fprintf(out, "}\n");
    return true;
}

/* ---------------------------------------------------------------------------------------
 * The command. */

/* The model name: --name, else the folder of a file called config.*, else the file's stem;
 * made into an identifier. */
static void model_name(const char *path, const char *given, char *out, size_t len)
{
    char buf[4096];
    const char *src = given;
    if (!src) {
        snprintf(buf, sizeof buf, "%s", path);
        for (size_t n = strlen(buf); n > 1 && buf[n - 1] == '/'; n--) buf[n - 1] = 0;
        char *base = strrchr(buf, '/');
        base = base ? base + 1 : buf;
        if (strncmp(base, "config.", 7) == 0 || strcmp(base, "config") == 0) {
            if (base > buf) {
                while (base > buf && base[-1] == '/') *--base = 0;
                char *dir = strrchr(buf, '/');
                src = dir ? dir + 1 : buf;
                if (!*src || strcmp(src, ".") == 0 || strcmp(src, "..") == 0) src = "model";
            } else {
                src = "model";
            }
        } else {
            char *dot = strchr(base, '.');
            if (dot && dot != base) *dot = 0;
            src = base;
        }
    }
    size_t k = 0;
    if (!isalpha((unsigned char)src[0]) && src[0] != '_') out[k++] = 'm';
    for (const char *p = src; *p && k + 1 < len; p++)
        out[k++] = isalnum((unsigned char)*p) ? *p : '_';
    out[k] = 0;
    if (strcmp(out, "model") == 0 || strcmp(out, "true") == 0 || strcmp(out, "false") == 0)
        snprintf(out, len, "%.200s_", src);  /* keywords of the spec language */
}

static const char import_usage[] =
    "usage: mxc import [--name NAME] CONFIG\n"
    "\n"
    "Write a spec for the model that CONFIG describes, to standard output:\n"
    "  - a mamba_ssm MambaConfig (config.json of the state-spaces Hugging Face repositories);\n"
    "  - an xlstm xLSTMLMModelConfig, as YAML or JSON.\n"
    "\n"
    "options:\n"
    "  --name NAME   the model's name (default: the folder of config.*, else the file's stem)\n"
    "  -h, --help    this text\n";

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mxc: error: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1 || n >= MAX_CONFIG_BYTES) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    bool bad = ferror(f) || !buf || n >= MAX_CONFIG_BYTES;
    fclose(f);
    if (bad) {
        fprintf(stderr, "mxc: error: cannot read %s%s\n", path, n >= MAX_CONFIG_BYTES ? ": too large" : "");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Recognise the configuration; returns 'm' (Mamba), 'x' (xLSTM) or 0 after a message. The
 * golden files of tests/golden keep the upstream config under "official_config", and the xlstm
 * experiment YAMLs under "model"; both wrappers are looked through. */
static int detect(Importer *im, const CfgValue **cfg)
{
    const CfgValue *c = *cfg;
    if (c->kind != CV_MAP) {
        import_error(im, c->line, "the configuration must be a mapping (a JSON object), got %s",
                     cfg_kind_name(c->kind));
        return 0;
    }
    const CfgValue *inner = cfg_get(c, "official_config");
    if (present(inner) && inner->kind == CV_MAP) {
        c = *cfg = inner;
    } else if ((inner = cfg_get(c, "model")) && inner->kind == CV_MAP && !cfg_get(c, "d_model") &&
               !cfg_get(c, "embedding_dim")) {
        c = *cfg = inner;
    }
    const CfgValue *mt = cfg_get(c, "model_type");
    if (mt && mt->kind == CV_STRING && strcmp(mt->s, "mamba2") == 0) return 'h';
    if (cfg_get(c, "model_type") || cfg_get(c, "hidden_size") || cfg_get(c, "state_size")) {
        import_error(im, 0, "this is a Hugging Face transformers config (model_type '%s'), not a "
                     "mamba_ssm or xlstm one: its checkpoints use other parameter names. Use the "
                     "original repository's config.json (the state-spaces/mamba-* repos without -hf)",
                     present(cfg_get(c, "model_type")) && cfg_get(c, "model_type")->kind == CV_STRING
                         ? cfg_get(c, "model_type")->s : "?");
        return 0;
    }
    if (cfg_get(c, "d_model") || cfg_get(c, "n_layer") || cfg_get(c, "ssm_cfg")) return 'm';
    if (cfg_get(c, "embedding_dim") || cfg_get(c, "num_blocks") || cfg_get(c, "mlstm_block") ||
        cfg_get(c, "slstm_block") || cfg_get(c, "slstm_at"))
        return 'x';
    import_error(im, 0, "not a MambaConfig (no d_model, n_layer) nor an xLSTMLMModelConfig (no "
                 "embedding_dim, num_blocks, mlstm_block, slstm_block)");
    return 0;
}

int cmd_import(int argc, char **argv)
{
    const char *name = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(import_usage, stdout);
            return MXC_EXIT_OK;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strncmp(argv[i], "--name=", 7) == 0) {
            name = argv[i] + 7;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "mxc: option '%s' is unknown or lacks its argument\n%s", argv[i], import_usage);
            return MXC_EXIT_USAGE;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "mxc: unexpected argument '%s'\n%s", argv[i], import_usage);
            return MXC_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "mxc: import needs a config file\n%s", import_usage);
        return MXC_EXIT_USAGE;
    }
    size_t len;
    char *text = read_file(path, &len);
    if (!text) return MXC_EXIT_ERROR;

    Importer im = {.path = path};
    CfgValue root = {0};
    size_t first = 0;
    while (first < len && strchr(" \t\r\n", text[first])) first++;
    bool parsed;
    JsonDoc *doc = NULL;
    const JsonValue *large = NULL; /* an xLSTM-large config: import_xlstm_large.c reads it */
    if (first < len && (text[first] == '{' || text[first] == '[')) {
        JsonError jerr;
        import_python_json_infinity(text, len); /* transformers' time_step_limit */
        parsed = json_parse(text, len, NULL, &doc, &jerr) == 0;
        if (parsed) {
            large = xlarge_config_find(json_root(doc));
            if (!large) parsed = from_json(&im, text, json_root(doc), &root);
        } else {
            import_error(&im, line_of_offset(text, jerr.offset), "invalid JSON: %s", jerr.msg);
        }
    } else {
        if (memchr(text, 0, len)) {
            import_error(&im, 0, "the file holds NUL bytes: not a text configuration");
            parsed = false;
        } else {
            parsed = parse_yaml(&im, text, &root);
        }
    }

    int status = MXC_EXIT_ERROR;
    char model[256];
    char *spec = NULL;
    size_t spec_len = 0;
    FILE *out = NULL;
    const CfgValue *cfg = &root;
    int kind = large ? 'L' : parsed ? detect(&im, &cfg) : 0;
    if (!kind) goto done;
    model_name(path, name, model, sizeof model);
    out = open_memstream(&spec, &spec_len);
    if (!out) goto done;
    fprintf(out, "# %s: imported by `mxc import` from %s (%s).\n", model, path,
            kind == 'm' ? "a mamba_ssm MambaConfig"
            : kind == 'h' ? "a transformers Mamba2Config"
            : kind == 'L' ? "an xLSTM-large xLSTMLargeConfig or transformers xLSTMConfig"
                          : "an xlstm xLSTMLMModelConfig");
    bool ok = kind == 'm' ? import_mamba(&im, cfg, model, out)
              : kind == 'h' ? import_hf_mamba2(&im, cfg, model, out)
              : kind == 'L' ? xlarge_config_import(path, large, model, out)
                            : import_xlstm(&im, cfg, model, out);
    fclose(out);
    if (!ok) goto done;

    /* What we print must check: run it through the frontend first. */
    DiagSink diag;
    diag_init(&diag, stderr);
    SpecFile *file = spec_load_string("<imported spec>", spec, &diag);
    diag_free(&diag);
    if (!file) {
        fprintf(stderr, "%s: error: the settings above do not make a valid model (the imported "
                "spec follows)\n%s", path, spec);
        goto done;
    }
    spec_free(file);
    fputs(spec, stdout);
    status = MXC_EXIT_OK;
done:
    json_free(doc);
    free(spec);
    free(text);
    pool_free(&im.pool);
    return status;
}
