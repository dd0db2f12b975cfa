/* ops.h - the op table of the IR, one X-macro row per op.
 *
 * Columns: enum suffix, printed name, fewest sources, most sources, summary.
 * The enum, the names, the arity checks of the verifier and the printer expand from this
 * table; every switch over ops has no `default:` so that a new row breaks the build
 * (-Werror=switch) until each stage handles it. */
#ifndef MXC_OPS_H
#define MXC_OPS_H

#define IR_OPS(X)                                                                           \
    /* graph inputs */                                                                      \
    X(TOKENS, "tokens", 0, 0, "token ids of the chunk, i32[B,T]")                           \
    X(WEIGHT, "weight", 0, 0, "a named parameter bound at load time")                       \
    /* per-token ops (rows are independent) */                                              \
    X(EMBED, "embed", 2, 2, "row lookup: table[tokens]")                                    \
    X(RMSNORM, "rmsnorm", 2, 3, "x * rsqrt(mean(x^2) + eps) * gain (+ bias)")               \
    X(LAYERNORM, "layernorm", 2, 3, "per group: (x - mean) * rsqrt(var + eps) * gain (+ bias)") \
    X(LINEAR, "linear", 2, 10, "x W^T (+ bias), W [N, K]; fused: parts, act, residual")     \
    X(HEADWISE, "headwise", 2, 9, "block-diagonal linear: W [heads, out, in] (+ bias)")     \
    X(SLICE, "slice", 1, 1, "columns [start, start + len) of the last dim (a view)")        \
    X(CONCAT, "concat", 2, 3, "sources side by side along the last dim")                   \
    X(SILU, "silu", 1, 1, "x * sigmoid(x)")                                                 \
    X(SOFTPLUS, "softplus", 1, 1, "log(1 + exp(x)), x above 20 passes through")             \
    X(GELU, "gelu", 1, 1, "x * (1 + erf(x / sqrt 2)) / 2")                                  \
    X(RELU, "relu", 1, 1, "max(x, 0)")                                                      \
    X(RELU2, "relu2", 1, 1, "max(x, 0)^2")                                                  \
    X(SIGMOID, "sigmoid", 1, 1, "1 / (1 + exp(-x))")                                        \
    X(SELU, "selu", 1, 1, "scale * (x > 0 ? x : alpha * (exp(x) - 1))")                     \
    X(SCALE, "scale", 2, 2, "x * w, w a per-column weight")                                 \
    X(MUL, "mul", 2, 2, "elementwise product")                                              \
    X(ADD, "add", 2, 2, "elementwise sum")                                                  \
    X(SOFTCAP, "softcap", 1, 1, "cap * tanh(x / cap)")                                      \
    /* recurrent ops (carry state across positions and calls) */                            \
    X(CONV1D, "causal_conv1d", 2, 3, "depthwise causal conv over time (+ bias, activation)") \
    X(SELECTIVE_SCAN, "selective_scan", 6, 7, "Mamba scan: x, delta, A_log, B, C, D (, z)")  \
    X(MLSTM_CELL, "mlstm_cell", 5, 5, "mLSTM matrix memory: q, k, v, igate, fgate")         \
    X(SLSTM_CELL, "slstm_cell", 6, 6, "sLSTM scalar memory: i, f, z, o, R, bias")           \
    /* graph output */                                                                      \
    X(OUTPUT, "output", 1, 1, "the logits, written to the caller's buffer")

typedef enum {
#define IR_OP_ENUM(name, str, min_src, max_src, doc) OP_##name,
    IR_OPS(IR_OP_ENUM)
#undef IR_OP_ENUM
    OP_COUNT_
} Op;

#endif
