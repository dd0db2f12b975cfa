/* import_mamba2.h - the Mamba-2 part of `mxc import`: settings read from an upstream
 * configuration (a mamba_ssm MambaConfig with ssm_cfg.layer = "Mamba2", or a transformers
 * Mamba2Config) turned into spec text.
 *
 * The reader of the configuration file fills a Mamba2Import, starting from the upstream
 * defaults, and calls mamba2_import_print; the rules of the mapping (what the spec says for
 * each setting, and what is noted as differing upstream) live in import_mamba2.c. */
#ifndef MXC_IMPORT_MAMBA2_H
#define MXC_IMPORT_MAMBA2_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { MAMBA2_IMPORT_NOTES = 8 };

typedef struct Mamba2Import {
    /* the language model (MambaConfig / the transformers config's top level) */
    int64_t d_model, n_layer, vocab_size, pad_vocab_size_multiple;
    bool rms_norm, tie_embeddings;
    double norm_eps;
    /* the mixer (mamba_ssm Mamba2.__init__ arguments) */
    int64_t d_state, d_conv, headdim, ngroups, d_ssm; /* d_ssm 0: None (= d_inner) */
    int64_t chunk_size;
    double expand;
    char expand_text[40];  /* as written in the config ("2", "1.5") */
    bool rmsnorm, norm_before_gate, D_has_hdim, conv_bias, bias;
    double dt_limit[2];
    /* comments for the top of the spec: settings read differently upstream, keys ignored */
    const char *notes[MAMBA2_IMPORT_NOTES];
    int n_notes;
} Mamba2Import;

/* MambaConfig's and Mamba2.__init__'s defaults (SEMANTICS-mamba2.md C.1). */
void mamba2_import_defaults(Mamba2Import *s);

/* Add a comment line (kept by pointer: a literal or text that outlives the print). */
void mamba2_import_note(Mamba2Import *s, const char *note);

/* Write `model NAME { ... }` for the settings. */
void mamba2_import_print(FILE *out, const char *name, const Mamba2Import *s);

/* Python's json module writes the bare tokens Infinity and -Infinity (transformers'
 * time_step_limit = [0.0, Infinity]); strict JSON has none. Rewrites each outside a string to
 * a number of the same width that reads as infinity (1e999), so offsets and lines stay. */
void import_python_json_infinity(char *text, size_t len);

#endif
