/* plan_memory.c - decide where every value lives.
 *
 * - Weights get dense slots in the runtime's weight table, in graph order.
 * - Tokens and the output are the caller's arrays; the output's producer writes straight
 *   into the logits when nothing else reads it.
 * - Slices are views: the same rows as their source, with a column offset.
 * - Every other per-token value gets a block of the chunk scratch area. Blocks are measured
 *   in floats per chunk row (the scratch holds B * chunk_len rows), allocated first-fit and
 *   released after the last reader, so that a 24-layer stack needs the scratch of about one
 *   layer, not of 24. A node's output never shares memory with its own sources. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

enum { ALIGN_FLOATS = 16 }; /* 64-byte aligned block starts */

typedef struct Block {
    int64_t start, size;
} Block;

typedef struct FreeList {
    Block *blocks; /* sorted by start, never adjacent */
    int n, cap;
    int64_t high; /* end of the area used so far */
} FreeList;

static int64_t round_up(int64_t v) { return (v + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static int64_t freelist_take(FreeList *f, int64_t size)
{
    size = round_up(size);
    for (int i = 0; i < f->n; i++) {
        Block *b = &f->blocks[i];
        if (b->size < size) continue;
        int64_t start = b->start;
        b->start += size;
        b->size -= size;
        if (b->size == 0) {
            memmove(b, b + 1, (size_t)(f->n - i - 1) * sizeof *b);
            f->n--;
        }
        return start;
    }
    /* Grow the area; a free block touching the end is reused as its first part. */
    if (f->n > 0 && f->blocks[f->n - 1].start + f->blocks[f->n - 1].size == f->high) {
        int64_t start = f->blocks[f->n - 1].start;
        f->n--;
        f->high = start + size;
        return start;
    }
    int64_t start = f->high;
    f->high += size;
    return start;
}

static void freelist_give(FreeList *f, int64_t start, int64_t size)
{
    size = round_up(size);
    int i = 0;
    while (i < f->n && f->blocks[i].start < start) i++;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 32;
        f->blocks = realloc(f->blocks, (size_t)f->cap * sizeof *f->blocks);
        if (!f->blocks) mxc_die("out of memory");
    }
    memmove(&f->blocks[i + 1], &f->blocks[i], (size_t)(f->n - i) * sizeof *f->blocks);
    f->blocks[i] = (Block){start, size};
    f->n++;
    /* Merge with the right, then the left neighbour. */
    if (i + 1 < f->n && f->blocks[i].start + f->blocks[i].size == f->blocks[i + 1].start) {
        f->blocks[i].size += f->blocks[i + 1].size;
        memmove(&f->blocks[i + 1], &f->blocks[i + 2], (size_t)(f->n - i - 2) * sizeof *f->blocks);
        f->n--;
    }
    if (i > 0 && f->blocks[i - 1].start + f->blocks[i - 1].size == f->blocks[i].start) {
        f->blocks[i - 1].size += f->blocks[i].size;
        memmove(&f->blocks[i], &f->blocks[i + 1], (size_t)(f->n - i - 1) * sizeof *f->blocks);
        f->n--;
    }
}

/* The node that owns the storage a value lives in (views lead to their source). */
static Node *storage_root(Node *n)
{
    while (n->op == OP_SLICE) n = n->src[0];
    return n;
}

void pass_plan_memory(Graph *g)
{
    ir_count_uses(g);
    int n = g->n_nodes;
    int *last_use = malloc((size_t)n * sizeof *last_use);
    if (!last_use) mxc_die("out of memory");
    for (int i = 0; i < n; i++) last_use[i] = -1;
    for (int i = 0; i < n; i++) {
        Node *node = g->nodes[i];
        if (node->dead) continue;
        for (int s = 0; s < node->n_src; s++) {
            Node *root = storage_root(node->src[s]);
            if (last_use[root->id] < i) last_use[root->id] = i;
        }
    }

    /* The output's producer writes into the logits directly when it is its only reader. */
    Node *produced = g->output->src[0];
    bool direct_output = produced->n_uses == 1 && ir_op_needs_scratch(produced->op);

    FreeList free_list = {0};
    int slot = 0;
    for (int i = 0; i < n; i++) {
        Node *node = g->nodes[i];
        node->store = (Storage){STORE_NONE, 0, 0, 0};
        if (node->dead) continue;
        int64_t cols = ir_type_cols(&node->type);
        switch (ir_op_kind(node->op)) {
        case OPK_INPUT:
            if (node->op == OP_WEIGHT) {
                node->attr.weight.slot = slot;
                slot += ir_dtype_slots(node->type.dtype); /* q8: values, then scales */
            } else {
                node->store = (Storage){STORE_TOKENS, 0, 1, 0};
            }
            break;
        case OPK_OUTPUT:
            node->store = (Storage){STORE_LOGITS, 0, cols, 0};
            break;
        case OPK_VIEW: {
            Storage s = node->src[0]->store;
            s.col_offset += node->attr.slice.start;
            node->store = s;
            break;
        }
        case OPK_ROWWISE: case OPK_UNARY: case OPK_BINARY: case OPK_PROJ: case OPK_RECURRENT:
            if (node == produced && direct_output)
                node->store = (Storage){STORE_LOGITS, 0, cols, 0};
            else
                node->store = (Storage){STORE_SCRATCH, freelist_take(&free_list, cols), cols, 0};
            break;
        }
        /* Release the sources this node is the last reader of (after its own output was
         * placed, so that the two never overlap). */
        for (int s = 0; s < node->n_src; s++) {
            Node *root = storage_root(node->src[s]);
            if (last_use[root->id] != i || root->store.kind != STORE_SCRATCH) continue;
            last_use[root->id] = -2; /* released once even if read twice by this node */
            freelist_give(&free_list, root->store.offset, ir_type_cols(&root->type));
        }
    }
    g->n_weight_slots = slot;
    g->scratch_per_row = free_list.high;
    free(free_list.blocks);
    free(last_use);
}
