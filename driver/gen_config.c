/* gen_config.c - the generation settings of a model folder (gen_config.h), read with the
 * runtime's strict JSON parser. */
#include "driver/gen_config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/json.h"

static int fail(const char *path, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(const char *path, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (key) fprintf(stderr, "mxc run: error: %s: '%s': %s\n", path, key, msg);
    else fprintf(stderr, "mxc run: error: %s: %s\n", path, msg);
    return -1;
}

/* Parse dir/name into *doc; 0 with *doc NULL when the file does not exist. */
static int load(const char *dir, const char *name, char *path, size_t path_len, JsonDoc **doc)
{
    enum { MAX_BYTES = 16 << 20 };
    *doc = NULL;
    snprintf(path, path_len, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : fail(path, NULL, "%s", strerror(errno));
    char *buf = malloc(MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_BYTES + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf) return fail(path, NULL, "out of memory");
    if (bad || n > MAX_BYTES) {
        free(buf);
        return fail(path, NULL, bad ? "read error" : "larger than 16 MiB");
    }
    JsonError je;
    int rc = json_parse(buf, n, NULL, doc, &je);
    free(buf);
    if (rc != 0) return fail(path, NULL, "invalid JSON at byte %zu: %s", je.offset, je.msg);
    if (json_root(*doc)->kind != JSON_OBJECT) {
        json_free(*doc);
        *doc = NULL;
        return fail(path, NULL, "not a JSON object");
    }
    return 0;
}

static bool is_id(const JsonValue *v)
{
    return v->kind == JSON_NUMBER && v->is_int && v->u.n.i >= 0 && v->u.n.i <= INT32_MAX;
}

/* eos_token_id: an id or a non-empty list of ids; 1 when found, 0 when absent or null. */
static int read_eos_ids(GenConfig *g, const char *path, const JsonValue *root, const char *file)
{
    const JsonValue *v = json_get(root, "eos_token_id");
    if (!v || v->kind == JSON_NULL) return 0;
    g->n_eos = 0;
    if (is_id(v)) {
        g->eos[g->n_eos++] = (int32_t)v->u.n.i;
    } else if (v->kind == JSON_ARRAY && v->u.c.count > 0 && v->u.c.count <= GEN_MAX_EOS) {
        for (size_t i = 0; i < v->u.c.count; i++) {
            if (!is_id(&v->u.c.items[i]))
                return fail(path, "eos_token_id", "element %zu is not a token id (an integer from 0 to %d)", i, INT32_MAX);
            g->eos[g->n_eos++] = (int32_t)v->u.c.items[i].u.n.i;
        }
    } else if (v->kind == JSON_ARRAY) {
        return fail(path, "eos_token_id", "a list of %zu ids (expected 1 to %d)", v->u.c.count,
                    GEN_MAX_EOS);
    } else if (v->kind == JSON_NUMBER) {
        return fail(path, "eos_token_id", "%g is not a token id (an integer from 0 to %d)",
                    v->u.n.num, INT32_MAX);
    } else {
        return fail(path, "eos_token_id", "expected a token id or a list of them, found %s",
                    json_kind_name(v->kind));
    }
    snprintf(g->eos_from, sizeof g->eos_from, "%s", file);
    return 1;
}

/* A boolean key: 1/0, -1 when absent or null; -2 after an error. */
static int read_bool(const char *path, const JsonValue *root, const char *key)
{
    const JsonValue *v = json_get(root, key);
    if (!v || v->kind == JSON_NULL) return -1;
    if (v->kind == JSON_TRUE || v->kind == JSON_FALSE) return v->kind == JSON_TRUE;
    fail(path, key, "expected true or false, found %s", json_kind_name(v->kind));
    return -2;
}

/* A special token (a string, or an object with "content"), looked up in the tokenizer: its id,
 * -1 when absent or null, -2 after an error. */
static int32_t read_token(const char *path, const JsonValue *root, const char *key,
                          const MxcTokenizer *tok)
{
    const JsonValue *v = json_get(root, key);
    if (!v || v->kind == JSON_NULL) return -1;
    if (v->kind == JSON_OBJECT) {
        v = json_get(v, "content");
        if (!v || v->kind != JSON_STRING) {
            fail(path, key, "an object without a string \"content\"");
            return -2;
        }
    }
    if (v->kind != JSON_STRING) {
        fail(path, key, "expected a token (a string), found %s", json_kind_name(v->kind));
        return -2;
    }
    int32_t id = tok ? mxc_tokenizer_token_to_id(tok, v->u.s.str, v->u.s.len) : -1;
    if (id < 0) {
        fail(path, key, "'%.60s' is not a token of %s", v->u.s.str, tok ? "the tokenizer" : "any tokenizer (none is open)");
        return -2;
    }
    return id;
}

static int read_tokenizer_config(GenConfig *g, const char *dir, const MxcTokenizer *tok)
{
    char path[4096];
    JsonDoc *doc;
    if (load(dir, "tokenizer_config.json", path, sizeof path, &doc) != 0) return -1;
    if (!doc) return 0;
    const JsonValue *root = json_root(doc);
    int rc = -1;
    int add_bos = read_bool(path, root, "add_bos_token");
    int add_eos = read_bool(path, root, "add_eos_token");
    int clean = read_bool(path, root, "clean_up_tokenization_spaces");
    if (add_bos == -2 || add_eos == -2 || clean == -2) goto out;
    g->clean_up = clean == 1;
    g->template_from_config = add_bos >= 0 || add_eos >= 0;
    int32_t bos = read_token(path, root, "bos_token", tok);
    int32_t eos = read_token(path, root, "eos_token", tok);
    if (bos == -2 || eos == -2) goto out;
    if (add_bos == 1) {
        if (bos < 0 && tok) bos = mxc_tokenizer_special_id(tok, "bos");
        if (bos < 0) {
            fail(path, "add_bos_token", "true, but the tokenizer has no BOS token (bos_token)");
            goto out;
        }
        g->prompt_bos = bos;
    }
    if (add_eos == 1) {
        if (eos < 0 && tok) eos = mxc_tokenizer_special_id(tok, "eos");
        if (eos < 0) {
            fail(path, "add_eos_token", "true, but the tokenizer has no EOS token (eos_token)");
            goto out;
        }
        g->prompt_eos = eos;
    }
    if (!g->n_eos && eos >= 0) {
        g->eos[g->n_eos++] = eos;
        snprintf(g->eos_from, sizeof g->eos_from, "tokenizer_config.json");
    }
    rc = 0;
out:
    json_free(doc);
    return rc;
}

int gen_config_read(GenConfig *g, const char *model_dir, const char *tok_dir,
                    const MxcTokenizer *tok)
{
    memset(g, 0, sizeof *g);
    g->prompt_bos = g->prompt_eos = -1;
    static const char *const files[2] = {"generation_config.json", "config.json"};
    for (int k = 0; model_dir && k < 2 && !g->n_eos; k++) {
        char path[4096];
        JsonDoc *doc;
        if (load(model_dir, files[k], path, sizeof path, &doc) != 0) return -1;
        if (!doc) continue;
        int rc = read_eos_ids(g, path, json_root(doc), files[k]);
        json_free(doc);
        if (rc < 0) return -1;
    }
    return tok_dir ? read_tokenizer_config(g, tok_dir, tok) : 0;
}
