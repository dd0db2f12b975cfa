/* import.c - `import_spec`: read a configuration file, recognise its format, and return the
 * checked spec that the format's importer writes (see import.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend/spec.h"
#include "import/cfg.h"
#include "import/import.h"
#include "import/xlstm_large.h"
#include "runtime/json.h"

/* Tried in order: a transformers config may keep mamba_ssm keys (d_model) beside its own, and
 * hf_mamba takes every transformers config that no format before it took (and refuses it
 * unless it is a MambaConfig). */
static const ConfigFormat *const formats[] = {&import_hf_mamba2, &import_hf_mamba,
                                              &import_mamba_ssm, &import_xlstm};

bool import_is_folder(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void import_folder_config(const char *dir, char *buf, size_t len)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    snprintf(buf, len, "%.*s/config.json", (int)n, dir);
}

static char *read_config(const char *path, size_t *len)
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
        if (n < cap - 1 || n >= CFG_MAX_BYTES) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    bool bad = ferror(f) || !buf || n >= CFG_MAX_BYTES;
    fclose(f);
    if (bad) {
        fprintf(stderr, "mxc: error: cannot read %s%s\n", path, n >= CFG_MAX_BYTES ? ": too large" : "");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

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

/* The configuration proper: the golden files of tests/golden keep the upstream config under
 * "official_config", and the xlstm experiment YAMLs under "model"; both wrappers are looked
 * through. Returns the format, or NULL after a message. */
static const ConfigFormat *detect(Importer *im, const CfgValue **cfg)
{
    const CfgValue *c = *cfg;
    if (c->kind != CV_MAP) {
        cfg_error(im, c->line, "the configuration must be a mapping (a JSON object), got %s",
                  cfg_kind_name(c->kind));
        return NULL;
    }
    const CfgValue *inner = cfg_get(c, "official_config");
    if (cfg_present(inner) && inner->kind == CV_MAP) {
        c = *cfg = inner;
    } else if ((inner = cfg_get(c, "model")) && inner->kind == CV_MAP && !cfg_get(c, "d_model") &&
               !cfg_get(c, "embedding_dim")) {
        c = *cfg = inner;
    }
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
        if (formats[i]->detect(c)) return formats[i];
    cfg_error(im, 0, "not a MambaConfig (no d_model, n_layer), a transformers config (no "
              "model_type) nor an xLSTMLMModelConfig (no embedding_dim, num_blocks, mlstm_block, "
              "slstm_block)");
    return NULL;
}

/* Parse `text` as JSON when it starts with '{' or '[', else as YAML. An xLSTM-large config
 * (JSON only) is left in *doc with *large set: xlstm_large.c reads it from there. */
static bool parse_config(Importer *im, char *text, size_t len, CfgValue *root, JsonDoc **doc,
                         const JsonValue **large)
{
    size_t first = strspn(text, " \t\r\n");
    if (first < len && (text[first] == '{' || text[first] == '[')) {
        import_python_json_infinity(text, len); /* transformers' time_step_limit */
        if (!(*doc = cfg_parse_json(im, text, len))) return false;
        if ((*large = xlarge_config_find(json_root(*doc)))) return true;
        return cfg_from_json(im, text, *doc, root);
    }
    if (memchr(text, 0, len)) {
        cfg_error(im, 0, "the file holds NUL bytes: not a text configuration");
        return false;
    }
    if (!cfg_read_yaml(im, text, len, root)) return false;
    if (root->kind == CV_NULL) {  /* nothing but comments, or an empty document */
        cfg_error(im, 0, "the file is empty");
        return false;
    }
    return true;
}

char *import_spec(const char *path, const char *name)
{
    char config[4096];
    if (import_is_folder(path)) {
        import_folder_config(path, config, sizeof config);
        path = config;
    }
    size_t len;
    char *text = read_config(path, &len);
    if (!text) return NULL;
    /* A UTF-8 byte order mark, as some editors write it, is not part of the text. */
    size_t skip = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;

    Importer im = {.path = path};
    CfgValue root = {0};
    char model[256];
    char *spec = NULL;
    size_t spec_len = 0;
    const CfgValue *cfg = &root;
    const ConfigFormat *format = NULL;
    JsonDoc *doc = NULL;
    const JsonValue *large = NULL;
    bool ok = parse_config(&im, text + skip, len - skip, &root, &doc, &large) &&
              (large || (format = detect(&im, &cfg)));
    FILE *out = ok ? open_memstream(&spec, &spec_len) : NULL;
    if (out) {
        model_name(path, name, model, sizeof model);
        fprintf(out, "# %s: imported by `mxc import` from %s (%s).\n", model, path,
                large ? "an xLSTM-large xLSTMLargeConfig or transformers xLSTMConfig"
                      : format->description);
        ok = large ? xlarge_config_import(path, large, model, out)
                   : format->write_spec(&im, cfg, model, out);
        ok &= fclose(out) == 0;
    } else if (ok) {
        fprintf(stderr, "mxc: error: out of memory\n");
        ok = false;
    }
    if (ok) {  /* What we give must check: run it through the frontend first. */
        DiagSink diag;
        diag_init(&diag, stderr);
        SpecFile *file = spec_load_string("<imported spec>", spec, &diag);
        diag_free(&diag);
        if (!file)
            fprintf(stderr, "%s: error: the settings above do not make a valid model (the "
                    "imported spec follows)\n%s", path, spec);
        ok = file != NULL;
        spec_free(file);
    }
    if (!ok) {
        free(spec);
        spec = NULL;
    }
    json_free(doc);
    free(text);
    cfg_arena_free(&im.arena);
    return spec;
}
