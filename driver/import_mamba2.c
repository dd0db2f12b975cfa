/* import_mamba2.c - Mamba-2 settings -> spec text (see import_mamba2.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "driver/import_mamba2.h"

void mamba2_import_defaults(Mamba2Import *s)
{
    *s = (Mamba2Import){.d_model = -1, .n_layer = -1, .vocab_size = -1,
                        .pad_vocab_size_multiple = 8, .rms_norm = true, .tie_embeddings = true,
                        .norm_eps = 1e-5, .d_state = 128, .d_conv = 4, .headdim = 64,
                        .ngroups = 1, .chunk_size = 256, .expand = 2, .expand_text = "2",
                        .rmsnorm = true, .conv_bias = true, .dt_limit = {0.0, INFINITY}};
}

void mamba2_import_note(Mamba2Import *s, const char *note)
{
    if (s->n_notes < MAMBA2_IMPORT_NOTES) s->notes[s->n_notes++] = note;
}

/* Shortest text that reads back as v, as a spec float ("inf" for infinity). */
static void print_float(FILE *out, double v)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    fputs(buf, out);
}

static const char *yes(bool b) { return b ? "true" : "false"; }

void mamba2_import_print(FILE *out, const char *name, const Mamba2Import *s)
{
    for (int i = 0; i < s->n_notes; i++) fprintf(out, "# %s\n", s->notes[i]);
    fprintf(out, "model %s {\n", name);
    fprintf(out, "    family = mamba;                 # mamba_ssm MambaLMHeadModel parameter names\n");
    fprintf(out, "    vocab_size = %lld;\n", (long long)s->vocab_size);
    fprintf(out, "    pad_vocab_size_multiple = %lld;\n", (long long)s->pad_vocab_size_multiple);
    fprintf(out, "    d_model = %lld;\n", (long long)s->d_model);
    fprintf(out, "    blocks = [mamba2 * %lld];\n", (long long)s->n_layer);
    fprintf(out, "    norm = %s;\n", s->rms_norm ? "rmsnorm" : "layernorm");
    fputs("    norm_eps = ", out);
    print_float(out, s->norm_eps);
    fputs(";\n", out);
    fprintf(out, "    tie_weights = %s;\n", yes(s->tie_embeddings));
    fprintf(out, "    mamba2 {\n");
    fprintf(out, "        d_state = %lld;\n", (long long)s->d_state);
    fprintf(out, "        d_conv = %lld;\n", (long long)s->d_conv);
    fprintf(out, "        expand = %s;\n", s->expand_text);
    fprintf(out, "        headdim = %lld;\n", (long long)s->headdim);
    fprintf(out, "        ngroups = %lld;\n", (long long)s->ngroups);
    if (s->d_ssm > 0) fprintf(out, "        d_ssm = %lld;\n", (long long)s->d_ssm);
    else fprintf(out, "        d_ssm = auto;                # = d_inner\n");
    fprintf(out, "        chunk_size = %lld;\n", (long long)s->chunk_size);
    fprintf(out, "        rmsnorm = %s;\n", yes(s->rmsnorm));
    fprintf(out, "        norm_before_gate = %s;\n", yes(s->norm_before_gate));
    fprintf(out, "        D_has_hdim = %s;\n", yes(s->D_has_hdim));
    fprintf(out, "        conv_bias = %s;\n", yes(s->conv_bias));
    fprintf(out, "        bias = %s;\n", yes(s->bias));
    fputs("        dt_limit = [", out);
    print_float(out, s->dt_limit[0]);
    fputs(", ", out);
    print_float(out, s->dt_limit[1]);
    fputs("];\n    }\n}\n", out);
}

void import_python_json_infinity(char *text, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\' && i + 1 < len) i++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == 'I' && len - i >= 8 && memcmp(text + i, "Infinity", 8) == 0) {
            memcpy(text + i, "1e999   ", 8); /* a leading '-' stays: -1e999 */
            i += 7;
        }
    }
}
