/* ir.h - the typed dataflow graph that every stage after the frontend works on.
 *
 * A graph computes one chunk of a model: T consecutive positions of B sequences. Every value
 * has a type with all feature dimensions fixed at compile time; values that vary per token
 * carry two leading symbolic dimensions [B, T] ("seq" types), which the generated code takes
 * as run-time arguments (1 <= T <= chunk_len). Weights have plain fixed shapes.
 *
 * Nodes are created in topological order (sources before users) and live in the graph's
 * arena; passes never free a node, they mark it dead and the printer and backend skip it.
 * Recurrent ops own a state slot: a fixed number of floats per sequence that persists
 * between chunks and calls. */
#ifndef MXC_IR_H
#define MXC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frontend/diag.h"
#include "ir/ops.h"

#define IR_MAX_SRC 12
#define IR_MAX_RANK 4
/* Most weights side by side in one fused projection (passes/fuse_projections.c; the
 * backend's matmul takes up to this many parts). */
#define IR_PROJ_MAX_PARTS 4

/* The chunked form of OP_SSD_SCAN: blocks of at most SSD_CHUNK_MAX tokens, taken by forward
 * calls of at least SSD_CHUNK_MIN tokens; shorter calls and the step run the recurrence.
 * Both by measured cost (docs/performance.md, M2-130 shape): the block's products cost
 * 2NP + Q(N + P)/2 multiply-adds a token against the recurrence's 2NP, so on a CPU (no
 * matrix units) short blocks win, 16 the fastest of 8 to 64; below 16 tokens a call's
 * recurrence is as fast or faster. */
enum { SSD_CHUNK_MAX = 16, SSD_CHUNK_MIN = 16 };

/* Element types. Values are f32 (tokens i32); weights may be narrow (pass narrow-weights):
 * bf16 / f16 are 2-byte floats; q8 is signed 8-bit values in blocks of IR_Q8_BLOCK along the
 * last dimension with one f32 scale per block (docs/runtime.md, "The q8 format"). */
typedef enum { DT_F32, DT_I32, DT_BF16, DT_F16, DT_Q8 } DType;
#define IR_Q8_BLOCK 32

typedef struct Type {
    DType dtype;
    bool seq;                   /* true: shape is [B, T, dim...] */
    int rank;                   /* number of entries in dim */
    int64_t dim[IR_MAX_RANK];   /* fixed dims (after B, T for seq types) */
} Type;

/* Where a value lives once memory is planned (passes/plan_memory.c). */
typedef enum {
    STORE_NONE,    /* not planned yet, or needs no storage (weights, dead nodes) */
    STORE_SCRATCH, /* rows of the chunk scratch area */
    STORE_TOKENS,  /* the caller's token array */
    STORE_LOGITS,  /* the caller's logits array */
} StoreKind;

/* A seq value's element (b, t, c) lives at base + (b*T + t) * row_stride + col_offset + c,
 * where base = scratch + offset * (B * chunk_len) for scratch values. Views (slices) share
 * their source's storage with a column offset. */
typedef struct Storage {
    StoreKind kind;
    int64_t offset;     /* scratch: start, in floats per row of the chunk */
    int64_t row_stride; /* floats between consecutive rows */
    int64_t col_offset; /* first column inside the row */
} Storage;

/* The numeric rules of an mLSTM cell, which differ between the classic block (SEMANTICS
 * B.8) and xLSTM-large (D.6). Both start from the zero state (m = 0). The key head size is
 * that of q and k, the value head size that of v (the types tell them apart). */
typedef struct MlstmNumerics {
    double eps;      /* h = qᵀC / (max(|q·n|, exp(-m)) + eps) */
    double q_scale;  /* q enters as q · q_scale (large: 1/sqrt(DHqk)) */
    double k_scale;  /* k enters the state as k · k_scale (classic: 1/sqrt(DH)) */
    double gate_cap; /* > 0: both gate pre-activations become cap·tanh(x/cap) first */
    int chunk_request; /* the spec's chunk_size: > 1 asks for the chunkwise form */
    int chunk;       /* > 1: a forward runs the chunkwise form with pieces of this many
                        positions (set by the mlstm-chunkwise pass); a step is recurrent */
} MlstmNumerics;
/* How a checkpoint stores a weight, when that is not the layout the kernels read: the
 * runtime rearranges it once when the file is opened (runtime/mxrt.h, MxrtTransform), so
 * kernels never index around a storage convention. */
typedef enum {
    WEIGHT_AS_STORED,   /* the kernels read the tensor as stored */
    WEIGHT_SWAP_MIDDLE, /* stored as [a][b][c][d] (attr.weight.view); kernels read [a][c][b][d] */
} WeightLayout;

typedef struct Node Node;
struct Node {
    Op op;
    int id;            /* dense, in creation order */
    Loc loc;           /* the spec construct this node comes from */
    int n_src;
    Node *src[IR_MAX_SRC];
    Type type;
    bool dead;         /* removed by a pass; kept in the arena */
    Node *forward;     /* set by ir_replace_uses: users of this node now use that one */
    int n_uses;        /* live users; maintained by ir_count_uses() */
    Storage store;     /* assigned by plan-memory */
    /* Attributes; which member is valid depends on op (documented per member). */
    union {
        struct {       /* OP_WEIGHT: its type is the layout the kernels read */
            const char *name;     /* official parameter name */
            const char *alt_name; /* also accepted under these names, separated by '\n'
                                     (tied head, Hugging Face naming), or NULL */
            int slot;             /* index in the weight table, assigned by plan-memory */
            WeightLayout layout;  /* how the checkpoint stores it (ir_weight_stored_swapped) */
            int stored_rank;      /* WEIGHT_SWAP_MIDDLE: the checkpoint's shape */
            int64_t stored_dim[IR_MAX_RANK];
            int64_t view[4];      /* WEIGHT_SWAP_MIDDLE: the stored data seen as [a][b][c][d] */
        } weight;
        struct {       /* OP_RMSNORM, OP_LAYERNORM */
            double eps;
            bool gain_offset;     /* effective gain is 1 + w (xLSTM convention) */
            int groups;           /* each row is normalised in this many equal groups
                                     (multi-head norm, Mamba-2's grouped gated norm);
                                     0 or 1 = the whole row */
        } norm;
        struct {       /* OP_LINEAR, OP_HEADWISE: sources are x, W_1..W_parts, then
                          b_1..b_parts if bias, then the residual if residual */
            int parts;            /* weights side by side in the output (projection fusion) */
            bool bias;
            bool residual;        /* LINEAR: result = residual + (x Wᵀ + b) */
            Op act;               /* LINEAR: applied before the residual add; OP_COUNT_ = none */
        } proj;
        struct {       /* OP_SLICE */
            int64_t start;
            int64_t len;
        } slice;
        struct {       /* recurrent ops (ir_op_is_recurrent) */
            int state;            /* index into Graph.states */
            int heads;            /* MLSTM_CELL, SLSTM_CELL */
            bool m_from_input;    /* SLSTM_CELL: on a sequence's first step (n = 0) the
                                     stabiliser m takes the input gate's pre-activation
                                     rather than max(i, log f + m) (upstream's rule) */
            Op act;               /* CONV1D: activation of the output; SELECTIVE_SCAN: OP_SILU
                                     = output gated by SiLU of a 7th source z; OP_COUNT_ = none */
            MlstmNumerics mlstm;  /* MLSTM_CELL */
            int groups;           /* SSD_SCAN: B/C groups (heads / groups heads share one) */
            int block;            /* SSD_SCAN: the spec's chunk_size (the preferred block) */
            int chunk;            /* SSD_SCAN: block length of the chunked form in the forward
                                     kernel (set by the ssd-chunked pass); 0 = recurrent form */
            double dt_min, dt_max; /* SSD_SCAN: clamp of softplus(dt + dt_bias) */
        } rec;
        struct {       /* OP_SOFTCAP */
            double cap;           /* > 0 */
        } softcap;
    } attr;
};

/* Per-sequence state owned by one recurrent node. */
typedef struct StateSlot {
    const char *what;  /* e.g. "layers.0 conv window" */
    int64_t floats;    /* per sequence */
    int64_t offset;    /* in floats, inside one sequence's state */
} StateSlot;

typedef struct Arena Arena;

/* The few facts of the model that the stages after lowering need beside the graph (the
 * descriptor and the header print them); they never see the spec itself. */
typedef struct IrModel {
    const char *name;
    int vocab_size;             /* tokens the model was trained on */
    int vocab_padded;           /* rows of the embedding, columns of the logits (0 in graphs
                                   built without a model, by unit tests: not checked) */
    int d_model;
    int n_blocks;
} IrModel;

typedef struct Graph {
    Arena *arena;
    IrModel model;              /* name in the graph's arena */
    int chunk_len;              /* largest T of a forward chunk */
    Node **nodes;               /* every node ever created, in creation order */
    int n_nodes, cap_nodes;
    Node *tokens;               /* the OP_TOKENS node */
    Node *output;               /* the OP_OUTPUT node */
    StateSlot *states;
    int n_states, cap_states;
    int64_t state_floats;       /* sum of state slots, per sequence */
    int64_t scratch_per_row;    /* scratch floats per chunk row; set by plan-memory */
    int n_weight_slots;         /* set by plan-memory */
    DType weight_dtype;         /* the big matrices' type (f32 or narrow); narrow-weights
                                   applies it; ir_lower_model sets the spec's weight_type,
                                   which the driver may override */
} Graph;

/* --- construction (graph.c) ---------------------------------------------------------- */
Graph *ir_graph_new(const IrModel *model, int chunk_len);
void ir_graph_free(Graph *g);
void *ir_alloc(Graph *g, size_t size);      /* zeroed arena memory, freed with the graph */
char *ir_strdup(Graph *g, const char *s);
char *ir_strfmt(Graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ir_add_state(Graph *g, const char *what, int64_t floats);

/* Builders: each creates one node, infers its type, and aborts on an internal shape error
 * (user-facing shape errors are caught by the frontend's checks before lowering). */
Node *ir_tokens(Graph *g, Loc loc);
Node *ir_weight(Graph *g, Loc loc, const char *name, const char *alt_name, int rank,
                const int64_t *dims);
/* The checkpoint stores weight w with shape `stored_dims`, and its data seen as
 * [view[0]][view[1]][view[2]][view[3]] has the middle two axes swapped relative to w's type. */
void ir_weight_stored_swapped(Node *w, int stored_rank, const int64_t *stored_dims,
                              const int64_t view[4]);
Node *ir_embed(Graph *g, Loc loc, Node *tokens, Node *table);
Node *ir_rmsnorm(Graph *g, Loc loc, Node *x, Node *gain, Node *bias, double eps);
Node *ir_layernorm(Graph *g, Loc loc, Node *x, Node *gain, Node *bias, double eps,
                   bool gain_offset, int groups);
Node *ir_linear(Graph *g, Loc loc, Node *x, Node *w, Node *bias);
Node *ir_headwise(Graph *g, Loc loc, Node *x, Node *w, Node *bias);
Node *ir_slice(Graph *g, Loc loc, Node *x, int64_t start, int64_t len);
Node *ir_concat(Graph *g, Loc loc, Node *a, Node *b, Node *c);
Node *ir_unary(Graph *g, Loc loc, Op op, Node *x);
Node *ir_binary(Graph *g, Loc loc, Op op, Node *a, Node *b);
Node *ir_conv1d(Graph *g, Loc loc, Node *x, Node *w, Node *bias, const char *what);
Node *ir_selective_scan(Graph *g, Loc loc, Node *x, Node *delta, Node *a_log, Node *b,
                        Node *c, Node *d, const char *what);
/* RMSNorm of each of `groups` equal column groups (Mamba-2's gated norm). */
Node *ir_rmsnorm_grouped(Graph *g, Loc loc, Node *x, Node *gain, double eps, int groups);
/* Mamba-2 SSD scan: x [B,T,H*P], dt [B,T,H] (before dt_bias and softplus), dt_bias [H],
 * A_log [H], B and C [B,T,G*N], D [H] or [H*P] -> y [B,T,H*P]; state h [H][P][N]. */
Node *ir_ssd_scan(Graph *g, Loc loc, Node *const src[7], int heads, int groups, double dt_min,
                  double dt_max, int block, const char *what);
/* q, k [B,T,NH*DHqk], v [B,T,NH*DHv]; igate, fgate pre-activations [B,T,NH]
 * -> h̃ [B,T,NH*DHv] (the classic block has DHqk = DHv) */
Node *ir_mlstm_cell(Graph *g, Loc loc, Node *q, Node *k, Node *v, Node *igate, Node *fgate,
                    int heads, const MlstmNumerics *num, const char *what);
/* cap · tanh(x / cap), elementwise (xLSTM-large's logits) */
Node *ir_softcap(Graph *g, Loc loc, Node *x, double cap);
/* i, f, z, o pre-activations [B,T,E] (input side); R and bias as stored -> h [B,T,E] */
Node *ir_slstm_cell(Graph *g, Loc loc, Node *const gates[4], Node *r, Node *bias, int heads,
                    const char *what);
Node *ir_output(Graph *g, Loc loc, Node *logits);

/* --- types and op facts (graph.c) ------------------------------------------------------ */
const char *ir_op_name(Op op);
int ir_op_min_src(Op op);
int ir_op_max_src(Op op);
OpKind ir_op_kind(Op op);
bool ir_op_is_recurrent(Op op);   /* owns a state slot (attr.rec) */
bool ir_op_is_activation(Op op);  /* an elementwise unary op; false for OP_COUNT_ ("none") */
bool ir_op_has_code(Op op);       /* has a kernel (see OPF_CODE) */
bool ir_op_needs_scratch(Op op);  /* its result takes scratch rows (see OPF_SCRATCH) */
bool ir_type_equal(const Type *a, const Type *b);
int64_t ir_type_cols(const Type *t);        /* product of the fixed dims after [B, T] */
int64_t ir_type_elems(const Type *t);       /* product of all fixed dims */
void ir_type_format(const Type *t, char *buf, size_t len);
const char *ir_dtype_name(DType d);         /* "f32", "bf16", ... as printed in types */
/* Weight slots a weight of this dtype takes: 2 for q8 (values, then scales), else 1. */
int ir_dtype_slots(DType d);

/* Infer the result type of `n` from its sources and attributes. Returns false with a
 * message in `err` when the sources do not fit the op. Used by the builders, by the
 * infer-shapes pass and by the verifier. */
bool ir_infer_type(const Node *n, Type *out, char *err, size_t errlen);

/* Recount Node.n_uses over live nodes (output included). */
void ir_count_uses(Graph *g);

/* Rewriting (for passes). A pass builds a node with the builders (it lands at the end of the
 * node list), then moves it to its place; every node's id is renumbered to its index. */
void ir_move_before(Graph *g, Node *n, Node *pos);
/* Every live use of `old` (a source or the output) becomes a use of `new`. Constant time:
 * `old` forwards to `new`, and sources are brought up to date by ir_resolve_sources (a pass
 * calls it on each node it looks at; the pipeline runs ir_resolve_all after every pass). */
void ir_replace_uses(Graph *g, Node *old, Node *new);
void ir_resolve_sources(Node *n);
void ir_resolve_all(Graph *g);
/* Index of the projection sources (OP_LINEAR, OP_HEADWISE). */
static inline int ir_proj_weight(const Node *n, int part) { return 1 + part; }
static inline int ir_proj_bias(const Node *n, int part) { return 1 + n->attr.proj.parts + part; }
static inline int ir_proj_residual(const Node *n)
{
    return 1 + n->attr.proj.parts * (n->attr.proj.bias ? 2 : 1);
}

/* --- checking and printing ------------------------------------------------------------ */
/* Structural and type invariants; returns the number of problems, each printed to `out`. */
int ir_verify(const Graph *g, FILE *out);
void ir_print(const Graph *g, FILE *out);
/* The attributes of n that shape what it computes, as "name=value, ..." (empty if none): the
 * IR dump prints them and the backend keys its kernels on them, so an attribute a kernel
 * depends on cannot be left out of one without the other. exact: reals in hexadecimal (%a),
 * so that values that differ always print differently. False if `len` is too small. */
bool ir_format_attrs(const Node *n, bool exact, char *buf, size_t len);

#endif
