/* spec.h - the checked model specification: what the frontend hands to the IR builder.
 *
 * A spec file holds one or more `model NAME { ... }` definitions. The frontend parses the
 * file (lexer.l, parser.y), then checks each model (check.c): unknown keys, types, ranges,
 * divisibility, and fills in every default and derived size, so that later stages never see
 * an unset field. Every field keeps the location of the key that set it (or of the model
 * header when defaulted), so that later stages can still point at the source. */
#ifndef MXC_SPEC_H
#define MXC_SPEC_H

#include <stdbool.h>
#include <stdio.h>

#include "frontend/diag.h"

/* Upper bounds enforced by the checker, so that later stages can multiply two sizes in
 * int64_t (or a size and a block count) without overflow. */
#define SPEC_DIM_MAX (1 << 20)    /* d_model, inner sizes, heads, d_state, multiples */
#define SPEC_VOCAB_MAX (1 << 24)  /* vocab_size */
#define SPEC_BLOCKS_MAX 4096      /* blocks in the stack */
#define SPEC_KERNEL_MAX 1024      /* conv kernel sizes */
#define SPEC_FACTOR_MAX 1024.0    /* expand, proj_factor */
#define SPEC_MLSTM_CHUNK_MAX 256  /* mlstm_large chunk_size: the chunkwise cell keeps an L x L
                                     and a DHqk x L matrix on the stack */
#define SPEC_CHUNK_AUTO (-1)      /* mlstm_large chunk_size = auto (the default) */
#define SPEC_NAME_MAX 64          /* model name: the default C prefix (backend_prefix_ok) */

/* FAMILY_XLSTM_LARGE: NX-AI xlstm.xlstm_large (the xLSTM-7B release), SEMANTICS-xlstm-large.md. */
typedef enum { FAMILY_MAMBA, FAMILY_XLSTM, FAMILY_XLSTM_LARGE } Family;
typedef enum { BLOCK_MAMBA, BLOCK_MLSTM, BLOCK_SLSTM, BLOCK_MAMBA2, BLOCK_MLSTM_LARGE } BlockKind;
enum { BLOCK_KINDS = 5 };
typedef enum { WEIGHT_MODE_SINGLE, WEIGHT_MODE_FUSED } WeightMode;
typedef enum { NORM_RMSNORM, NORM_LAYERNORM } NormKind;
typedef enum { ACT_GELU, ACT_RELU, ACT_RELU2, ACT_SIGMOID, ACT_SWISH, ACT_SELU } ActFn;
typedef enum { SLSTM_LAYOUT_VANILLA, SLSTM_LAYOUT_CUDA } SlstmLayout;
/* How the big matrices (projections, embedding table, head) are stored and read; small and
 * sensitive parameters stay f32 whatever this says (docs/spec-language.md). */
typedef enum { WEIGHT_F32, WEIGHT_BF16, WEIGHT_F16, WEIGHT_Q8 } WeightType;

/* Mamba (v1) mixer settings; names and defaults as in mamba_ssm's Mamba.__init__. */
typedef struct MambaSpec {
    int d_state;        /* 16 */
    int d_conv;         /* 4 */
    double expand;      /* 2 */
    int dt_rank;        /* derived: ceil(d_model / 16) when `auto` */
    bool conv_bias;     /* true */
    bool bias;          /* false: in_proj / out_proj bias */
    int d_inner;        /* derived: (int)(expand * d_model) */
    int d_intermediate; /* 0: no GatedMLP; > 0 adds one per block (mamba_ssm MambaConfig) */
    int mlp_hidden;     /* derived: ceil(d_intermediate / 128) * 128, 0 when no MLP */
    Loc loc;            /* the `mamba { }` section, or the model header */
} MambaSpec;

/* Mamba-2 (SSD) mixer settings; names and defaults as in mamba_ssm's Mamba2.__init__
 * (SEMANTICS-mamba2.md C.1). */
typedef struct Mamba2Spec {
    int d_state;           /* 128: N, state size per head */
    int d_conv;            /* 4 */
    double expand;         /* 2 */
    int headdim;           /* 64: P */
    int ngroups;           /* 1: G, B/C groups shared by blocks of heads */
    int d_ssm_arg;         /* 0 = unset (upstream None): d_ssm = d_inner */
    int chunk_size;        /* 256: SSD block length (rounding only; the chunked form caps it) */
    bool rmsnorm;          /* true: gated RMSNorm before out_proj */
    bool norm_before_gate; /* false: norm(y * SiLU(z)); true: norm(y) * SiLU(z) */
    bool D_has_hdim;       /* false: D per head [H]; true: per channel [d_ssm] */
    bool conv_bias;        /* true */
    bool bias;             /* false: in_proj / out_proj bias */
    double dt_limit[2];    /* (0, inf): clamp of softplus(dt + dt_bias) */
    int d_inner;           /* derived: (int)(expand * d_model) */
    int d_ssm;             /* derived: d_ssm_arg or d_inner */
    int nheads;            /* derived: d_ssm / headdim */
    int d_mlp;             /* derived: d_inner - d_ssm (gated-MLP branch) */
    int conv_dim;          /* derived: d_ssm + 2 G N */
    int d_in_proj;         /* derived: 2 d_inner + 2 G N + H */
    Loc loc;
} Mamba2Spec;

/* mLSTM layer settings; names and defaults as in xlstm's mLSTMLayerConfig. */
typedef struct MlstmSpec {
    int num_heads;                    /* 4 */
    double proj_factor;               /* 2.0 */
    int conv1d_kernel_size;           /* 4 */
    int qkv_proj_blocksize;           /* 4 */
    bool round_proj_up_dim_up;        /* true: ceil, false: floor */
    int round_proj_up_to_multiple_of; /* 64 */
    int inner_dim;                    /* derived: I */
    int head_dim;                     /* derived: I / num_heads */
    Loc loc;
} MlstmSpec;

/* Gated feed-forward of sLSTM blocks; xlstm's FeedForwardConfig. */
typedef struct FfnSpec {
    double proj_factor;               /* 1.3 */
    ActFn act_fn;                     /* gelu */
    bool bias;                        /* false */
    bool round_proj_up_dim_up;        /* true */
    int round_proj_up_to_multiple_of; /* 64 */
    int inner_dim;                    /* derived: F */
    Loc loc;
} FfnSpec;

/* sLSTM layer settings; xlstm's sLSTMLayerConfig (+ the checkpoint layout of the cell). */
typedef struct SlstmSpec {
    int num_heads;          /* 4 */
    int conv1d_kernel_size; /* 4; 0 = no conv */
    SlstmLayout layout;     /* vanilla: layout of _recurrent_kernel_ / _bias_ in the weights */
    bool feedforward;       /* true: block has the gated FFN */
    FfnSpec ffn;
    int head_dim;           /* derived: d_model / num_heads */
    Loc loc;
} SlstmSpec;

/* The block of xLSTM-large (xLSTMLargeConfig, SEMANTICS-xlstm-large D.1): pre-RMSNorm, dense
 * q/k/v/ogate and i/f gate projections, the mLSTM cell with soft-capped gates, a per-head
 * LayerNorm, out_proj, then a SwiGLU feed-forward. */
typedef struct MlstmLargeSpec {
    int num_heads;                   /* required when the stack has such a block */
    double qk_dim_factor;            /* 0.5 */
    double v_dim_factor;             /* 1.0 */
    double gate_soft_cap;            /* 15; 0 = none (cap·tanh(x/cap) of the i/f pre-activations) */
    double eps;                      /* 1e-6: the cell's normaliser eps */
    double ffn_proj_factor;          /* 2.6667 */
    int ffn_round_up_to_multiple_of; /* 64 */
    WeightMode weight_mode;          /* single: q, k, v, ...; fused: qkv_opreact, ... */
    int chunk_size;                  /* SPEC_CHUNK_AUTO: the compiler picks the cell's form
                                        for a forward by cost; 0 or 1: the recurrent form;
                                        >= 2: the chunkwise form, pieces of this many */
    int qk_dim, v_dim;               /* derived: int(E * factor) */
    int qk_head_dim, v_head_dim;     /* derived: / num_heads */
    int ffn_dim;                     /* derived: upstream's round-up to the multiple */
    Loc loc;
} MlstmLargeSpec;

/* Sections of block kinds that the stack does not use are checked (types, ranges), then
 * left at their defaults with every derived size 0: they have no effect. */
typedef struct ModelSpec {
    char *name;                  /* identifier; also the default C prefix */
    Family family;               /* parameter naming: mamba | xlstm */
    int vocab_size;              /* required */
    int pad_vocab_size_multiple; /* mamba: 8, xlstm: 1 */
    int vocab_padded;            /* derived: vocab rounded up to the multiple */
    int d_model;                 /* `d_model` or `embedding_dim`; required */
    int n_blocks;
    BlockKind *blocks;           /* n_blocks entries, in stack order */
    NormKind norm;               /* mamba: rmsnorm, xlstm: layernorm (offset gain 1 + w) */
    double norm_eps;             /* 1e-5 */
    bool tie_weights;            /* mamba: true, xlstm: false */
    int context_length;          /* xlstm: informative only (-1 = unset); forward is not limited */
    bool add_post_blocks_norm;   /* xlstm: true (mamba always has norm_f) */
    bool bias;                   /* xlstm stack `bias` (alias `use_bias`): false */
    double logit_soft_cap;       /* cap·tanh(z/cap) of the logits; xlstm_large: 30, else 0 = none */
    WeightType weight_type;      /* f32 */
    MambaSpec mamba;
    Mamba2Spec mamba2;
    MlstmSpec mlstm;
    SlstmSpec slstm;
    MlstmLargeSpec mlstm_large;
    Loc loc;                     /* the `model` keyword */
} ModelSpec;

/* All models of one spec file. */
typedef struct SpecFile {
    char *path;
    int n_models;
    ModelSpec *models;
} SpecFile;

/* Parse and check a spec file. Diagnostics go to `diag` (several per run when possible).
 * Returns the checked models, or NULL when any error was reported. */
SpecFile *spec_load_file(const char *path, DiagSink *diag);

/* The same from a string held in memory; `name` is the file name used in diagnostics. */
SpecFile *spec_load_string(const char *name, const char *text, DiagSink *diag);

/* Find a model by name, or the only model when name is NULL. NULL if none matches. */
const ModelSpec *spec_find_model(const SpecFile *f, const char *name);

void spec_free(SpecFile *f);

/* Human-readable names of enum values, as spelled in the spec language. */
const char *spec_family_name(Family f);
const char *spec_block_name(BlockKind k);
const char *spec_norm_name(NormKind n);
const char *spec_act_name(ActFn a);
const char *spec_layout_name(SlstmLayout l);
const char *spec_weight_mode_name(WeightMode w);
const char *spec_weight_type_name(WeightType t);
/* "f32", "bf16", "f16", "q8" -> the type; false for anything else. */
bool spec_weight_type_parse(const char *name, WeightType *out);

/* Print a model back as spec text with every default made explicit (mxc check --resolved). */
void spec_print(FILE *out, const ModelSpec *m);

#endif
