/* ops.h - the op table of the IR, one X-macro row per op.
 *
 * Columns: enum suffix, printed name, fewest sources, most sources, kind, flags, summary.
 * The enum, the names, the arity checks of the verifier and every predicate over ops
 * (ir_op_kind, ir_op_is_recurrent, ir_op_has_code, ir_op_needs_scratch, ...) expand from
 * this table, so a new op is one row here, a builder and its type rule (graph.c), its
 * attribute printer (print.c) and its emitter (backend/kernels.c). Those three switches over
 * ops have no `default:`, so that a new row breaks the build (-Werror=switch) until each
 * handles it; nothing else switches over ops. */
#ifndef MXC_OPS_H
#define MXC_OPS_H

/* What an op is, for the passes and the backend. */
typedef enum {
    OPK_INPUT,     /* a graph input: no code, no scratch (tokens, weights) */
    OPK_VIEW,      /* shares its source's storage (a column range) */
    OPK_ROWWISE,   /* each row of the result from the same row of the sources */
    OPK_UNARY,     /* an elementwise activation; can be folded into a projection or conv */
    OPK_BINARY,    /* an elementwise op of two values of one shape */
    OPK_PROJ,      /* a projection by a weight matrix (fusable parts, epilogue) */
    OPK_RECURRENT, /* carries a state slot across positions and calls */
    OPK_OUTPUT,    /* the logits, in the caller's buffer */
} OpKind;

/* Flags: OPF_CODE - the op has a kernel (an OUTPUT whose source already writes the logits
 * has none; see backend/codegen.c); OPF_SCRATCH - its result takes rows of the chunk scratch
 * area (and may instead be written straight into the logits when it feeds the output). */
enum { OPF_CODE = 1, OPF_SCRATCH = 2 };
#define OPF_KERNEL (OPF_CODE | OPF_SCRATCH)

#define IR_OPS(X)                                                                                      \
    /* graph inputs */                                                                                 \
    X(TOKENS, "tokens", 0, 0, OPK_INPUT, 0, "token ids of the chunk, i32[B,T]")                        \
    X(WEIGHT, "weight", 0, 0, OPK_INPUT, 0, "a named parameter bound at load time")                    \
    /* per-token ops (rows are independent) */                                                         \
    X(EMBED, "embed", 2, 2, OPK_ROWWISE, OPF_KERNEL, "row lookup: table[tokens]")                      \
    X(RMSNORM, "rmsnorm", 2, 3, OPK_ROWWISE, OPF_KERNEL, "x * rsqrt(mean(x^2) + eps) * gain (+ bias)") \
    X(LAYERNORM, "layernorm", 2, 3, OPK_ROWWISE, OPF_KERNEL,                                           \
      "per group: (x - mean) * rsqrt(var + eps) * gain (+ bias)")                                      \
    X(LINEAR, "linear", 2, 10, OPK_PROJ, OPF_KERNEL, "x W^T (+ bias), W [N, K]; fused: parts, act, residual") \
    X(HEADWISE, "headwise", 2, 9, OPK_PROJ, OPF_KERNEL, "block-diagonal linear: W [heads, out, in] (+ bias)") \
    X(SLICE, "slice", 1, 1, OPK_VIEW, 0, "columns [start, start + len) of the last dim (a view)")       \
    X(CONCAT, "concat", 2, 3, OPK_ROWWISE, OPF_KERNEL, "sources side by side along the last dim")     \
    X(SILU, "silu", 1, 1, OPK_UNARY, OPF_KERNEL, "x * sigmoid(x)")                                     \
    X(SOFTPLUS, "softplus", 1, 1, OPK_UNARY, OPF_KERNEL, "log(1 + exp(x)), x above 20 passes through") \
    X(GELU, "gelu", 1, 1, OPK_UNARY, OPF_KERNEL, "x * (1 + erf(x / sqrt 2)) / 2")                      \
    X(RELU, "relu", 1, 1, OPK_UNARY, OPF_KERNEL, "max(x, 0)")                                          \
    X(RELU2, "relu2", 1, 1, OPK_UNARY, OPF_KERNEL, "max(x, 0)^2")                                      \
    X(SIGMOID, "sigmoid", 1, 1, OPK_UNARY, OPF_KERNEL, "1 / (1 + exp(-x))")                            \
    X(SELU, "selu", 1, 1, OPK_UNARY, OPF_KERNEL, "scale * (x > 0 ? x : alpha * (exp(x) - 1))")         \
    X(SCALE, "scale", 2, 2, OPK_BINARY, OPF_KERNEL, "x * w, w a per-column weight")                    \
    X(MUL, "mul", 2, 2, OPK_BINARY, OPF_KERNEL, "elementwise product")                                 \
    X(ADD, "add", 2, 2, OPK_BINARY, OPF_KERNEL, "elementwise sum")                                     \
    X(SOFTCAP, "softcap", 1, 1, OPK_ROWWISE, OPF_KERNEL, "cap * tanh(x / cap) (attribute: not foldable)") \
    /* recurrent ops (carry state across positions and calls) */                                       \
    X(CONV1D, "causal_conv1d", 2, 3, OPK_RECURRENT, OPF_KERNEL,                                        \
      "depthwise causal conv over time (+ bias, activation)")                                          \
    X(SELECTIVE_SCAN, "selective_scan", 6, 7, OPK_RECURRENT, OPF_KERNEL,                               \
      "Mamba scan: x, delta, A_log, B, C, D (, z)")                                                    \
    X(SSD_SCAN, "ssd_scan", 7, 7, OPK_RECURRENT, OPF_KERNEL,                                           \
      "Mamba-2 scan: x, dt, dt_bias, A_log, B, C, D (one A per head)")                                 \
    X(MLSTM_CELL, "mlstm_cell", 5, 5, OPK_RECURRENT, OPF_KERNEL, "mLSTM matrix memory: q, k, v, igate, fgate") \
    X(SLSTM_CELL, "slstm_cell", 6, 6, OPK_RECURRENT, OPF_KERNEL, "sLSTM scalar memory: i, f, z, o, R, bias") \
    /* graph output */                                                                                 \
    X(OUTPUT, "output", 1, 1, OPK_OUTPUT, OPF_CODE, "the logits, written to the caller's buffer")

typedef enum {
#define IR_OP_ENUM(name, str, min_src, max_src, kind, flags, doc) OP_##name,
    IR_OPS(IR_OP_ENUM)
#undef IR_OP_ENUM
    OP_COUNT_
} Op;

#endif
