/* ast.c - builders and destructors of the syntax tree (one builder per grammar action). */
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"

void *ast_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        mxc_die("out of memory (%zu bytes)", n);
    return p;
}

char *ast_strndup(const char *s, size_t n)
{
    char *p = ast_alloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static Value *value_new(ValueKind kind, Loc loc)
{
    Value *v = ast_alloc(sizeof *v);
    v->kind = kind;
    v->loc = loc;
    return v;
}

Value *ast_value_int(Loc loc, AstNum n)
{
    Value *v = value_new(n.bad ? VAL_BAD : VAL_INT, loc);
    v->i = n.i;
    return v;
}

Value *ast_value_float(Loc loc, AstNum n)
{
    Value *v = value_new(n.bad ? VAL_BAD : VAL_FLOAT, loc);
    v->f = n.f;
    return v;
}

Value *ast_value_bool(Loc loc, bool b)
{
    Value *v = value_new(VAL_BOOL, loc);
    v->i = b;
    return v;
}

Value *ast_value_ident(Loc loc, char *s)
{
    Value *v = value_new(VAL_IDENT, loc);
    v->s = s;
    return v;
}

Value *ast_value_string(Loc loc, char *s)
{
    Value *v = value_new(VAL_STRING, loc);
    v->s = s;
    return v;
}

Value *ast_value_repeat(Loc loc, char *s, Loc count_loc, AstNum count)
{
    Value *v = value_new(count.bad ? VAL_BAD : VAL_REPEAT, loc);
    v->s = s;
    v->i = count.i;
    v->count_loc = count_loc;
    return v;
}

Value *ast_list_new(Loc loc)
{
    return value_new(VAL_LIST, loc);
}

Value *ast_list_start(Loc loc, Value *first)
{
    return ast_list_push(ast_list_new(loc), first);
}

/* Lists are kept in source order (an array), unlike items: they are read by index. */
Value *ast_list_push(Value *list, Value *elem)
{
    if (list->n_elems == list->cap_elems) {
        int cap = list->cap_elems ? 2 * list->cap_elems : 4;
        Value **e = realloc(list->elems, (size_t)cap * sizeof *e);
        if (!e)
            mxc_die("out of memory");
        list->elems = e;
        list->cap_elems = cap;
    }
    list->elems[list->n_elems++] = elem;
    return list;
}

Item *ast_item_set(Loc loc, char *key, Value *v)
{
    Item *it = ast_alloc(sizeof *it);
    it->kind = ITEM_SET;
    it->key = key;
    it->loc = loc;
    it->value = v;
    return it;
}

static Item *items_reverse(Item *rev)
{
    Item *out = NULL;
    while (rev) {
        Item *next = rev->next;
        rev->next = out;
        out = rev;
        rev = next;
    }
    return out;
}

Item *ast_item_section(Loc loc, char *name, Item *rev_body)
{
    Item *it = ast_alloc(sizeof *it);
    it->kind = ITEM_SECTION;
    it->key = name;
    it->loc = loc;
    it->body = items_reverse(rev_body);
    return it;
}

/* `it` is NULL for an item dropped by error recovery. */
Item *ast_items_push(Item *rev, Item *it)
{
    if (!it)
        return rev;
    it->next = rev;
    return it;
}

static AstModel *models_reverse(AstModel *rev)
{
    AstModel *out = NULL;
    while (rev) {
        AstModel *next = rev->next;
        rev->next = out;
        out = rev;
        rev = next;
    }
    return out;
}

AstModel *ast_model_new(Loc loc, Loc name_loc, char *name, Item *rev_items)
{
    AstModel *m = ast_alloc(sizeof *m);
    m->name = name;
    m->loc = loc;
    m->name_loc = name_loc;
    m->items = items_reverse(rev_items);
    return m;
}

AstModel *ast_models_push(AstModel *rev, AstModel *m)
{
    m->next = rev;
    return m;
}

void ast_file_finish(ParseCtx *ctx, AstModel *rev_models)
{
    ctx->models = models_reverse(rev_models);
}

void ast_value_free(Value *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n_elems; i++)
        ast_value_free(v->elems[i]);
    free(v->elems);
    free(v->s);
    free(v);
}

/* Frees `it` and every item after it; recursion only goes down the (bounded) nesting. */
void ast_item_free(Item *it)
{
    while (it) {
        Item *next = it->next;
        free(it->key);
        ast_value_free(it->value);
        ast_item_free(it->body);
        free(it);
        it = next;
    }
}

void ast_model_free(AstModel *m)
{
    while (m) {
        AstModel *next = m->next;
        free(m->name);
        ast_item_free(m->items);
        free(m);
        m = next;
    }
}

const char *ast_value_kind_name(ValueKind k)
{
    switch (k) {
    case VAL_INT: return "an integer";
    case VAL_FLOAT: return "a float";
    case VAL_BOOL: return "a boolean";
    case VAL_IDENT: return "an identifier";
    case VAL_STRING: return "a string";
    case VAL_REPEAT: return "a repetition";
    case VAL_LIST: return "a list";
    case VAL_BAD: return "an invalid literal";
    }
    return "a value";
}
