/* wload.c - reading weights in their stored type and widening them to f32 in registers.
 *
 * Kernels address a weight by its flat element index from the weight's start (a q8 scale
 * depends on where the element sits in its block, so a row pointer alone would not do).
 * bf16 -> f32 is exact: the 16 bits become the upper half of the float. f16 -> f32 is exact
 * too: vcvtph2ps (LLVM's fpext from half) where the target has F16C, else integer code that
 * moves the exponent and mantissa into place and scales by 2^112, which handles subnormals
 * and keeps inf and NaN (no libcall either way). q8 is int8 times the block's f32 scale. */
#include "backend/codegen.h"

static LLVMValueRef splat_i32(Cg *cg, LLVMTypeRef t, uint32_t v)
{
    LLVMValueRef c = LLVMConstInt(cg->i32, v, 0);
    if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return c;
    unsigned n = LLVMGetVectorSize(t);
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n; i++) e[i] = c;
    return LLVMConstVector(e, n);
}

static LLVMValueRef splat_f32(Cg *cg, LLVMTypeRef t, double v)
{
    LLVMValueRef c = cg_f32(cg, v);
    if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return c;
    unsigned n = LLVMGetVectorSize(t);
    LLVMValueRef e[64];
    for (unsigned i = 0; i < n; i++) e[i] = c;
    return LLVMConstVector(e, n);
}

/* Same shape as `like` (scalar or vector), element type `elem`. */
static LLVMTypeRef shaped(LLVMTypeRef elem, LLVMTypeRef like)
{
    if (LLVMGetTypeKind(like) != LLVMVectorTypeKind) return elem;
    return LLVMVectorType(elem, LLVMGetVectorSize(like));
}

LLVMTypeRef cg_weight_elem(Cg *cg, const Node *w)
{
    switch (w->type.dtype) {
    case DT_BF16: return LLVMInt16TypeInContext(cg->ctx);
    case DT_F16: return LLVMHalfTypeInContext(cg->ctx);
    case DT_Q8: return LLVMInt8TypeInContext(cg->ctx);
    case DT_F32: return cg->f32;
    case DT_I32: break;
    }
    mxc_die("weight %s has dtype %s", w->attr.weight.name, ir_dtype_name(w->type.dtype));
}

/* f16 bits (i16 or <n x i16>) -> f32 without F16C. */
static LLVMValueRef half_bits_to_f32(Cg *cg, LLVMValueRef h16)
{
    LLVMBuilderRef B = cg->b;
    LLVMTypeRef it = shaped(cg->i32, LLVMTypeOf(h16)), ft = shaped(cg->f32, LLVMTypeOf(h16));
    LLVMValueRef h = LLVMBuildZExt(B, h16, it, "");
    LLVMValueRef sign = LLVMBuildShl(B, LLVMBuildAnd(B, h, splat_i32(cg, it, 0x8000), ""), splat_i32(cg, it, 16), "");
    LLVMValueRef em = LLVMBuildAnd(B, h, splat_i32(cg, it, 0x7fff), "");
    LLVMValueRef shifted = LLVMBuildShl(B, em, splat_i32(cg, it, 13), "");
    /* finite: (em << 13) read as a float is the value times 2^-112 (subnormals included) */
    LLVMValueRef scaled = LLVMBuildFMul(B, LLVMBuildBitCast(B, shifted, ft, ""), splat_f32(cg, ft, 0x1p112), "");
    LLVMValueRef special = LLVMBuildOr(B, shifted, splat_i32(cg, it, 0x7f800000), ""); /* inf, NaN */
    LLVMValueRef is_special = LLVMBuildICmp(B, LLVMIntUGE, em, splat_i32(cg, it, 0x7c00), "");
    LLVMValueRef mag = LLVMBuildSelect(B, is_special, special, LLVMBuildBitCast(B, scaled, it, ""), "");
    return LLVMBuildBitCast(B, LLVMBuildOr(B, mag, sign, ""), ft, "");
}

/* Stored elements (one or a vector) -> f32. */
static LLVMValueRef widen(Cg *cg, const Node *w, LLVMValueRef raw, LLVMValueRef flat)
{
    LLVMBuilderRef B = cg->b;
    LLVMTypeRef ft = shaped(cg->f32, LLVMTypeOf(raw)), it = shaped(cg->i32, LLVMTypeOf(raw));
    switch (w->type.dtype) {
    case DT_F32:
        return raw;
    case DT_BF16:
        return LLVMBuildBitCast(B, LLVMBuildShl(B, LLVMBuildZExt(B, raw, it, ""), splat_i32(cg, it, 16), ""), ft, "");
    case DT_F16:
        if (cg->has_f16c) return LLVMBuildFPExt(B, raw, ft, "");
        return half_bits_to_f32(cg, LLVMBuildBitCast(B, raw, shaped(LLVMInt16TypeInContext(cg->ctx), LLVMTypeOf(raw)), ""));
    case DT_Q8: {
        LLVMValueRef block = LLVMBuildLShr(B, flat, cg_i64(cg, 5), ""); /* IR_Q8_BLOCK = 32 */
        LLVMValueRef scale = cg_load(cg, cg_weight_scales(cg, w), block);
        LLVMValueRef v = LLVMBuildSIToFP(B, raw, ft, "");
        if (LLVMGetTypeKind(ft) == LLVMVectorTypeKind) scale = cg_vsplat(cg, ft, scale);
        return LLVMBuildFMul(B, v, scale, "");
    }
    case DT_I32:
        break;
    }
    mxc_die("weight %s has dtype %s", w->attr.weight.name, ir_dtype_name(w->type.dtype));
}

LLVMValueRef cg_wload(Cg *cg, const Node *w, LLVMValueRef flat)
{
    LLVMTypeRef et = cg_weight_elem(cg, w);
    LLVMValueRef raw = LLVMBuildLoad2(cg->b, et, cg_gep(cg, et, cg_weight(cg, w), flat), "");
    return widen(cg, w, raw, flat);
}

/* A q8 vector must not cross a block: `flat` is a multiple of the width, which divides 32. */
LLVMValueRef cg_wvload(Cg *cg, const Node *w, LLVMTypeRef vt, LLVMValueRef flat)
{
    LLVMTypeRef et = cg_weight_elem(cg, w);
    LLVMTypeRef st = LLVMVectorType(et, LLVMGetVectorSize(vt));
    LLVMValueRef raw = LLVMBuildLoad2(cg->b, st, cg_gep(cg, et, cg_weight(cg, w), flat), "");
    LLVMSetAlignment(raw, w->type.dtype == DT_F32 ? 4 : w->type.dtype == DT_Q8 ? 1 : 2);
    return widen(cg, w, raw, flat);
}

/* A hint that weight element `flat` will be read soon: llvm.prefetch, read, locality 2
 * (x86 prefetcht1: into L2, not L1; see matmul.c for why). An address past the weight's end
 * is harmless: a prefetch never faults. */
void cg_wprefetch(Cg *cg, const Node *w, LLVMValueRef flat)
{
    LLVMTypeRef et = cg_weight_elem(cg, w);
    /* not inbounds: the address may lie past the weight */
    LLVMValueRef p = LLVMBuildGEP2(cg->b, et, cg_weight(cg, w), &flat, 1, "");
    LLVMTypeRef pt = LLVMTypeOf(p);
    unsigned id = LLVMLookupIntrinsicID("llvm.prefetch", 13);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &pt, 1);
    LLVMValueRef args[4] = {p, LLVMConstInt(cg->i32, 0, 0), LLVMConstInt(cg->i32, 2, 0),
                            LLVMConstInt(cg->i32, 1, 0)};
    LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, &pt, 1), fn, args, 4, "");
}
