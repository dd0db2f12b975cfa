/* spec.c - the frontend's entry points: load (parse + check) a spec file, look models up,
 * print a model back as spec text with every default explicit, free. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"
#include "frontend/spec.h"

/* Parse and check `len` bytes. The sink keeps its own copy of the text for caret lines. */
static SpecFile *spec_load_bytes(const char *name, const char *text, size_t len, DiagSink *diag)
{
    SpecFile *f = ast_alloc(sizeof *f);
    f->path = ast_strndup(name, strlen(name));
    diag_set_source_file(diag, f->path, text, len);
    int before = diag->n_errors;
    int n_syntax = 0;
    AstModel *models = ast_parse(f->path, text, len, diag, &n_syntax);
    /* After a syntax error, items are missing from the tree: checking it would only add
     * errors about keys that are in fact there. */
    if (n_syntax == 0)
        check_models(models, f, diag);
    ast_model_free(models);
    if (diag->n_errors > before) {
        spec_free(f);
        return NULL;
    }
    return f;
}

SpecFile *spec_load_string(const char *name, const char *text, DiagSink *diag)
{
    return spec_load_bytes(name, text, text ? strlen(text) : 0, diag);
}

SpecFile *spec_load_file(const char *path, DiagSink *diag)
{
    Loc at = {path, 0, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        diag_report(diag, DIAG_ERROR, at, "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* Read to EOF in growing chunks: works for pipes too. A spec may have 64 MiB (the
     * parser's limit, PARSE_MAX_BYTES in lexer.l); one byte more is enough to refuse it, so
     * an endless or huge input (/dev/zero, a checkpoint given by mistake) costs no more. */
    size_t cap = 1 << 16, len = 0, limit = (size_t)64 << 20;
    char *text = malloc(cap);
    if (!text)
        mxc_die("out of memory");
    for (;;) {
        if (len == cap) {
            cap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            text = realloc(text, cap);
            if (!text)
                mxc_die("out of memory");
        }
        size_t got = fread(text + len, 1, cap - len, fp);
        len += got;
        if (got == 0 || len > limit)
            break;
    }
    bool failed = ferror(fp);
    int err = errno;
    fclose(fp);
    if (failed || len > limit) {
        if (failed)
            diag_report(diag, DIAG_ERROR, at, "cannot read: %s", strerror(err));
        else
            diag_report(diag, DIAG_ERROR, at, "file is too large (more than %zu bytes)", limit);
        free(text);
        return NULL;
    }
    SpecFile *f = spec_load_bytes(path, text, len, diag);
    free(text);
    return f;
}

const ModelSpec *spec_find_model(const SpecFile *f, const char *name)
{
    if (!f)
        return NULL;
    if (!name)
        return f->n_models == 1 ? &f->models[0] : NULL;
    for (int i = 0; i < f->n_models; i++)
        if (strcmp(f->models[i].name, name) == 0)
            return &f->models[i];
    return NULL;
}

void spec_free(SpecFile *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_models; i++) {
        free(f->models[i].name);
        free(f->models[i].blocks);
    }
    free(f->models);
    free(f->path);
    free(f);
}

const char *spec_family_name(Family f)
{
    switch (f) {
    case FAMILY_MAMBA: return "mamba";
    case FAMILY_XLSTM: return "xlstm";
    case FAMILY_XLSTM_LARGE: return "xlstm_large";
    }
    return "?";
}

const char *spec_block_name(BlockKind k)
{
    switch (k) {
    case BLOCK_MAMBA: return "mamba";
    case BLOCK_MLSTM: return "mlstm";
    case BLOCK_SLSTM: return "slstm";
    case BLOCK_MLSTM_LARGE: return "mlstm_large";
    case BLOCK_MAMBA2: return "mamba2";
    }
    return "?";
}

const char *spec_weight_type_name(WeightType t)
{
    switch (t) {
    case WEIGHT_F32: return "f32";
    case WEIGHT_BF16: return "bf16";
    case WEIGHT_F16: return "f16";
    case WEIGHT_Q8: return "q8";
    }
    return "?";
}

bool spec_weight_type_parse(const char *name, WeightType *out)
{
    for (int t = WEIGHT_F32; t <= WEIGHT_Q8; t++)
        if (strcmp(name, spec_weight_type_name((WeightType)t)) == 0) {
            *out = (WeightType)t;
            return true;
        }
    return false;
}

const char *spec_norm_name(NormKind n)
{
    switch (n) {
    case NORM_RMSNORM: return "rmsnorm";
    case NORM_LAYERNORM: return "layernorm";
    }
    return "?";
}

const char *spec_act_name(ActFn a)
{
    switch (a) {
    case ACT_GELU: return "gelu";
    case ACT_RELU: return "relu";
    case ACT_RELU2: return "relu2";
    case ACT_SIGMOID: return "sigmoid";
    case ACT_SWISH: return "swish";
    case ACT_SELU: return "selu";
    }
    return "?";
}

const char *spec_layout_name(SlstmLayout l)
{
    switch (l) {
    case SLSTM_LAYOUT_VANILLA: return "vanilla";
    case SLSTM_LAYOUT_CUDA: return "cuda";
    }
    return "?";
}

const char *spec_weight_mode_name(WeightMode w)
{
    switch (w) {
    case WEIGHT_MODE_SINGLE: return "single";
    case WEIGHT_MODE_FUSED: return "fused";
    }
    return "?";
}

/* ---- spec_print ---------------------------------------------------------------------- */

/* The shortest text that reads back as the same double, always with a '.' or an exponent
 * so that it scans as a float. */
static void print_double(FILE *out, double v)
{
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        strcat(buf, ".0");
    fputs(buf, out);
}

static const char *bool_name(bool b)
{
    return b ? "true" : "false";
}

/* The stack as a list, runs folded: [mlstm, slstm, mlstm * 2]. */
static void print_blocks(FILE *out, const ModelSpec *m)
{
    fputs("[", out);
    for (int i = 0; i < m->n_blocks;) {
        int j = i;
        while (j < m->n_blocks && m->blocks[j] == m->blocks[i])
            j++;
        fprintf(out, "%s%s", i ? ", " : "", spec_block_name(m->blocks[i]));
        if (j - i > 1)
            fprintf(out, " * %d", j - i);
        i = j;
    }
    fputs("]", out);
}

static void print_cap(FILE *out, double cap)
{
    if (cap > 0 && cap == floor(cap) && cap < 1e15)
        fprintf(out, "%.1f", cap); /* 30.0, not the shortest form 3e+01 */
    else if (cap > 0)
        print_double(out, cap);
    else
        fputs("none", out);
}

static bool model_uses(const ModelSpec *m, BlockKind k)
{
    for (int i = 0; i < m->n_blocks; i++)
        if (m->blocks[i] == k)
            return true;
    return false;
}

/* Sections are printed for the block kinds the stack uses (the others have no effect);
 * derived sizes follow as comments. */
void spec_print(FILE *out, const ModelSpec *m)
{
    bool xlstm = m->family != FAMILY_MAMBA;
    fprintf(out, "model %s {\n", m->name);
    fprintf(out, "    family = %s;\n", spec_family_name(m->family));
    fprintf(out, "    vocab_size = %d;\n", m->vocab_size);
    fprintf(out, "    pad_vocab_size_multiple = %d;    # padded vocabulary: %d\n",
            m->pad_vocab_size_multiple, m->vocab_padded);
    fprintf(out, "    %s = %d;\n", xlstm ? "embedding_dim" : "d_model", m->d_model);
    fputs("    blocks = ", out);
    print_blocks(out, m);
    fputs(";\n", out);
    fprintf(out, "    norm = %s;\n", spec_norm_name(m->norm));
    fputs("    norm_eps = ", out);
    print_double(out, m->norm_eps);
    fputs(";\n", out);
    fprintf(out, "    tie_weights = %s;\n", bool_name(m->tie_weights));
    fprintf(out, "    context_length = %d;\n", m->context_length);
    fprintf(out, "    add_post_blocks_norm = %s;\n", bool_name(m->add_post_blocks_norm));
    fprintf(out, "    bias = %s;\n", bool_name(m->bias));
    if (m->family == FAMILY_XLSTM_LARGE || m->logit_soft_cap > 0) {
        fputs("    output_logit_soft_cap = ", out);
        print_cap(out, m->logit_soft_cap);
        fputs(";\n", out);
    }
    if (m->weight_type != WEIGHT_F32) /* f32, the default, is left out: older specs print as before */
        fprintf(out, "    weight_type = %s;\n", spec_weight_type_name(m->weight_type));

    if (model_uses(m, BLOCK_MAMBA)) {
        const MambaSpec *mb = &m->mamba;
        fputs("    mamba {\n", out);
        fprintf(out, "        d_state = %d;\n", mb->d_state);
        fprintf(out, "        d_conv = %d;\n", mb->d_conv);
        fputs("        expand = ", out);
        print_double(out, mb->expand);
        fputs(";\n", out);
        fprintf(out, "        dt_rank = %d;\n", mb->dt_rank);
        fprintf(out, "        conv_bias = %s;\n", bool_name(mb->conv_bias));
        fprintf(out, "        bias = %s;\n", bool_name(mb->bias));
        fprintf(out, "        d_intermediate = %d;\n", mb->d_intermediate);
        fprintf(out, "        # derived: d_inner = %d, mlp_hidden = %d\n", mb->d_inner,
                mb->mlp_hidden);
        fputs("    }\n", out);
    }
    if (model_uses(m, BLOCK_MAMBA2)) {
        const Mamba2Spec *m2 = &m->mamba2;
        fputs("    mamba2 {\n", out);
        fprintf(out, "        d_state = %d;\n", m2->d_state);
        fprintf(out, "        d_conv = %d;\n", m2->d_conv);
        fputs("        expand = ", out);
        print_double(out, m2->expand);
        fputs(";\n", out);
        fprintf(out, "        headdim = %d;\n", m2->headdim);
        fprintf(out, "        ngroups = %d;\n", m2->ngroups);
        fprintf(out, "        d_ssm = %d;\n", m2->d_ssm);
        fprintf(out, "        chunk_size = %d;\n", m2->chunk_size);
        fprintf(out, "        rmsnorm = %s;\n", bool_name(m2->rmsnorm));
        fprintf(out, "        norm_before_gate = %s;\n", bool_name(m2->norm_before_gate));
        fprintf(out, "        D_has_hdim = %s;\n", bool_name(m2->D_has_hdim));
        fprintf(out, "        conv_bias = %s;\n", bool_name(m2->conv_bias));
        fprintf(out, "        bias = %s;\n", bool_name(m2->bias));
        fputs("        dt_limit = [", out);
        print_double(out, m2->dt_limit[0]);
        fputs(", ", out);
        print_double(out, m2->dt_limit[1]);
        fputs("];\n", out);
        fprintf(out, "        # derived: d_inner = %d, nheads = %d, d_mlp = %d, conv_dim = %d, "
                "d_in_proj = %d\n", m2->d_inner, m2->nheads, m2->d_mlp, m2->conv_dim,
                m2->d_in_proj);
        fputs("    }\n", out);
    }
    if (model_uses(m, BLOCK_MLSTM)) {
        const MlstmSpec *ml = &m->mlstm;
        fputs("    mlstm {\n", out);
        fprintf(out, "        num_heads = %d;\n", ml->num_heads);
        fputs("        proj_factor = ", out);
        print_double(out, ml->proj_factor);
        fputs(";\n", out);
        fprintf(out, "        conv1d_kernel_size = %d;\n", ml->conv1d_kernel_size);
        fprintf(out, "        qkv_proj_blocksize = %d;\n", ml->qkv_proj_blocksize);
        fprintf(out, "        round_proj_up_dim_up = %s;\n", bool_name(ml->round_proj_up_dim_up));
        fprintf(out, "        round_proj_up_to_multiple_of = %d;\n",
                ml->round_proj_up_to_multiple_of);
        fprintf(out, "        # derived: inner_dim = %d, head_dim = %d\n", ml->inner_dim,
                ml->head_dim);
        fputs("    }\n", out);
    }
    if (model_uses(m, BLOCK_SLSTM)) {
        const SlstmSpec *sl = &m->slstm;
        fputs("    slstm {\n", out);
        fprintf(out, "        num_heads = %d;\n", sl->num_heads);
        fprintf(out, "        conv1d_kernel_size = %d;\n", sl->conv1d_kernel_size);
        fprintf(out, "        layout = %s;\n", spec_layout_name(sl->layout));
        fprintf(out, "        # derived: head_dim = %d\n", sl->head_dim);
        if (sl->feedforward) {
            const FfnSpec *ff = &sl->ffn;
            fputs("        feedforward {\n", out);
            fputs("            proj_factor = ", out);
            print_double(out, ff->proj_factor);
            fputs(";\n", out);
            fprintf(out, "            act_fn = %s;\n", spec_act_name(ff->act_fn));
            fprintf(out, "            bias = %s;\n", bool_name(ff->bias));
            fprintf(out, "            round_proj_up_dim_up = %s;\n",
                    bool_name(ff->round_proj_up_dim_up));
            fprintf(out, "            round_proj_up_to_multiple_of = %d;\n",
                    ff->round_proj_up_to_multiple_of);
            fprintf(out, "            # derived: inner_dim = %d\n", ff->inner_dim);
            fputs("        }\n", out);
        } else {
            fputs("        feedforward = false;\n", out);
        }
        fputs("    }\n", out);
    }
    if (model_uses(m, BLOCK_MLSTM_LARGE)) {
        const MlstmLargeSpec *xl = &m->mlstm_large;
        fputs("    mlstm_large {\n", out);
        fprintf(out, "        num_heads = %d;\n", xl->num_heads);
        fputs("        qk_dim_factor = ", out);
        print_double(out, xl->qk_dim_factor);
        fputs(";\n        v_dim_factor = ", out);
        print_double(out, xl->v_dim_factor);
        fputs(";\n        gate_soft_cap = ", out);
        print_cap(out, xl->gate_soft_cap);
        fputs(";\n        eps = ", out);
        print_double(out, xl->eps);
        fputs(";\n        ffn_proj_factor = ", out);
        print_double(out, xl->ffn_proj_factor);
        fputs(";\n", out);
        fprintf(out, "        ffn_round_up_to_multiple_of = %d;\n", xl->ffn_round_up_to_multiple_of);
        fprintf(out, "        weight_mode = %s;\n", spec_weight_mode_name(xl->weight_mode));
        if (xl->chunk_size == SPEC_CHUNK_AUTO)
            fputs("        chunk_size = auto;\n", out);
        else
            fprintf(out, "        chunk_size = %d;\n", xl->chunk_size);
        fprintf(out, "        # derived: qk_dim = %d, v_dim = %d, qk_head_dim = %d, v_head_dim = %d, "
                "ffn_dim = %d\n", xl->qk_dim, xl->v_dim, xl->qk_head_dim, xl->v_head_dim,
                xl->ffn_dim);
        fputs("    }\n", out);
    }
    fputs("}\n", out);
}
