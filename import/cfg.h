/* cfg.h - what the importers share (private to import/): the configuration tree that the
 * JSON and YAML readers build, located messages, checked key lookup, and the spec writer.
 *
 * An importer (one file per upstream config format) gets the tree of one file, checks its
 * keys against the upstream class (unknown keys are refused, keys that only matter for
 * training are accepted and ignored), and writes spec text. Values keep their line and, for
 * numbers, their source text, so that every message names the file, the line and the key. */
#ifndef MXC_IMPORT_CFG_H
#define MXC_IMPORT_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Limits for hostile files: configs are small, and these bound time and memory. */
enum { CFG_MAX_BYTES = 16 << 20, CFG_MAX_DEPTH = 64, CFG_MAX_VALUES = 1 << 20 };

typedef enum { CV_NULL, CV_BOOL, CV_INT, CV_FLOAT, CV_STRING, CV_LIST, CV_MAP } CfgKind;

typedef struct CfgValue CfgValue;
struct CfgValue {
    CfgKind kind;
    int line;           /* 1-based line in the file, for messages */
    const char *key;    /* member of a map: its key */
    const char *s;      /* CV_STRING */
    const char *text;   /* CV_FLOAT: where the number is written, for messages (it ends at the
                           first character that cannot be part of a number) */
    CfgValue *items;    /* CV_LIST, CV_MAP: children in file order */
    size_t count;
    int *index;         /* CV_MAP: hash of the keys (cfg_map_index), 2 * count slots */
    int64_t i;          /* CV_INT */
    double f;           /* CV_FLOAT (and CV_INT, converted); may be infinite: checked on use */
    bool b;             /* CV_BOOL */
    bool int_overflow;  /* CV_FLOAT written as an integer that does not fit int64 */
};

/* Everything allocated while importing one file; freed at once at the end. */
typedef struct CfgArena {
    void **blocks;
    size_t n, cap;
} CfgArena;

typedef struct Importer {
    const char *path;   /* for messages */
    CfgArena arena;
    int errors;
} Importer;

void *cfg_alloc(Importer *im, size_t size);  /* zeroed; exits on out of memory */
char *cfg_strndup(Importer *im, const char *s, size_t n);
void cfg_arena_free(CfgArena *a);

/* `path:line: error: ...` (line 0: no line). */
void cfg_error(Importer *im, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* `s` for a message: quoted as is when short, else its start, "..." and its length. */
const char *cfg_clip(char *buf, size_t len, const char *s);
enum { CFG_CLIP = 96 };

/* Finish a map built by a reader: index its keys, refusing a duplicate (false after a message). */
bool cfg_map_index(Importer *im, CfgValue *map);

/* The member `key` of a map, or NULL (also when `map` is NULL or not a map). */
const CfgValue *cfg_get(const CfgValue *map, const char *key);
const char *cfg_kind_name(CfgKind k);

/* A value that is absent or null takes the default (upstream's default). */
bool cfg_present(const CfgValue *v);
/* The line of member `key`, else of the map. */
int cfg_line_of(const CfgValue *map, const char *key);

/* The keys an upstream class has; `ignored` ones are accepted and have no effect on the model
 * (training, initialisation, kernel choice). */
typedef struct CfgKey {
    const char *name;
    bool ignored;
} CfgKey;

/* Refuse members of `map` that are not in `keys` (a NULL-named end); `where` names the map. */
bool cfg_check_keys(Importer *im, const CfgValue *map, const char *where, const CfgKey *keys);

/* Typed access. Absent or null: the default. Otherwise the value must have the type and, for
 * numbers, lie in [min, max]; a message names the key, the value and the range. */
bool cfg_int(Importer *im, const CfgValue *map, const char *key, int64_t def, int64_t min,
             int64_t max, int64_t *out);
bool cfg_number(Importer *im, const CfgValue *map, const char *key, double def, double min,
                double max, double *out);
bool cfg_bool(Importer *im, const CfgValue *map, const char *key, bool def, bool *out);
bool cfg_string(Importer *im, const CfgValue *map, const char *key, const char *def,
                const char **out);
bool cfg_map(Importer *im, const CfgValue *map, const char *key, const CfgValue **out);
/* A required integer: absent or null is an error naming the key. */
bool cfg_require_int(Importer *im, const CfgValue *map, const char *key, const char *what,
                     int64_t min, int64_t max, int64_t *out);

/* The readers. `text` is NUL-terminated and `len` long; a BOM has been skipped. JSON is
 * parsed (NULL after a message), then made a tree: in between, import.c offers the document
 * to the xLSTM-large importer, which reads the JSON tree itself. */
typedef struct JsonDoc JsonDoc;
JsonDoc *cfg_parse_json(Importer *im, const char *text, size_t len);
bool cfg_from_json(Importer *im, const char *text, const JsonDoc *doc, CfgValue *root);
bool cfg_read_yaml(Importer *im, const char *text, size_t len, CfgValue *root);

/* Spec text. */
const char *cfg_bool_text(bool b);
/* The shortest decimal form that reads back as the same double, with a '.' or 'e'. */
void cfg_format_number(char *buf, size_t len, double v);
/* One line of spec text, with an optional comment aligned after it. */
void cfg_put(FILE *out, const char *comment, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One upstream config format: recognise it, then write the spec of a config of it. */
typedef struct ConfigFormat {
    const char *description;  /* "a mamba_ssm MambaConfig" */
    bool (*detect)(const CfgValue *cfg);
    bool (*write_spec)(Importer *im, const CfgValue *cfg, const char *name, FILE *out);
} ConfigFormat;

extern const ConfigFormat import_mamba_ssm;  /* mamba_ssm.c */
extern const ConfigFormat import_xlstm;      /* xlstm.c */
extern const ConfigFormat import_hf_mamba;   /* hf_mamba.c */
extern const ConfigFormat import_hf_mamba2;  /* mamba2.c */

/* mamba2.c: a MambaConfig whose ssm_cfg.layer is "Mamba2"; mamba_ssm.c reads the language
 * model's keys and hands the mixer's over. */
typedef struct MambaLmSettings {
    int64_t d_model, n_layer, vocab_size, d_intermediate, pad_vocab_size_multiple;
    bool rms_norm, tie_embeddings;
} MambaLmSettings;
bool import_mamba2_ssm(Importer *im, const CfgValue *ssm, const MambaLmSettings *lm,
                       const char *name, FILE *out);

/* Python's json module writes the bare tokens Infinity and -Infinity (transformers'
 * time_step_limit = [0.0, Infinity]); strict JSON has none. Rewrites each outside a string to
 * a number of the same width that reads as infinity (1e999), so offsets and lines stay. Only
 * the time-step limits accept it; anywhere else it is refused as not finite. */
void import_python_json_infinity(char *text, size_t len);

#endif
