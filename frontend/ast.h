/* ast.h - syntax tree of a spec file, and the state shared by the scanner and the parser.
 *
 * The tree is exactly what was written, nothing checked: a file is a list of models, a model
 * a list of items, an item either `key = value;` or `name { items }`. check.c turns it into
 * ModelSpecs. Every node owns its children and strings (malloc'd); the *_free functions free
 * a node with everything below and after it. */
#ifndef MXC_AST_H
#define MXC_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/diag.h"

typedef enum {
    VAL_INT,    /* i */
    VAL_FLOAT,  /* f */
    VAL_BOOL,   /* i: 0 or 1 */
    VAL_IDENT,  /* s */
    VAL_STRING, /* s: the bytes between the quotes (there are no escapes) */
    VAL_REPEAT, /* s * i: the list element `ident * count`; count_loc is the count's */
    VAL_LIST,   /* elems[0 .. n_elems) */
    VAL_BAD,    /* a literal that already had a lexical error (integer overflow...): the
                   checker skips it silently, the error is out already */
} ValueKind;

typedef struct Value {
    ValueKind kind;
    Loc loc;
    int64_t i;
    double f;
    char *s;
    Loc count_loc;
    struct Value **elems;
    int n_elems, cap_elems;
} Value;

typedef enum { ITEM_SET, ITEM_SECTION } ItemKind;

typedef struct Item {
    ItemKind kind;
    char *key;         /* the key or section name */
    Loc loc;           /* of the key */
    Value *value;      /* ITEM_SET */
    struct Item *body; /* ITEM_SECTION: its items, in source order */
    struct Item *next; /* next item of the same model or section */
} Item;

typedef struct AstModel {
    char *name;
    Loc loc;      /* the `model` keyword */
    Loc name_loc;
    Item *items;  /* in source order */
    struct AstModel *next;
} AstModel;

/* Value of a number token: `bad` when the scanner already reported it (too large). */
typedef struct AstNum {
    int64_t i;
    double f;
    bool bad;
} AstNum;

/* Sections nest at most this deep (braces of the model included); deeper input is cut off
 * with one error, so that neither the parser stack nor the tree can be driven deep. */
enum { PARSE_MAX_DEPTH = 32 };

/* Scanner and parser state of one parse (the flex `extra`, the bison parse-param). */
typedef struct ParseCtx {
    DiagSink *diag;
    const char *file;
    int line, col;          /* position of the next byte the scanner reads */
    Loc tok_end;            /* just after the last token */
    Loc prev_end;           /* just after the token before it (where a missing ';' belongs) */
    char tok_text[40];      /* the last token's text, cut short, for syntax errors */
    int depth;              /* '{' not closed yet */
    Loc open[PARSE_MAX_DEPTH];
    int n_errors;           /* lexical and syntax errors of this parse */
    bool stop;              /* gave up (nesting, too many errors): the scanner returns EOF */
    bool eof_reported;      /* a syntax error at the end of file was reported */
    Loc last_error;         /* where the last syntax error was reported */
    AstModel *models;       /* the result, in source order */
} ParseCtx;

/* Builders, one per grammar action. Lists are built backwards (push = prepend) and put in
 * source order by the builder of the enclosing node. Strings passed in are taken over. */
Value *ast_value_int(Loc loc, AstNum n);
Value *ast_value_float(Loc loc, AstNum n);
Value *ast_value_bool(Loc loc, bool b);
Value *ast_value_ident(Loc loc, char *s);
Value *ast_value_string(Loc loc, char *s);
Value *ast_value_repeat(Loc loc, char *s, Loc count_loc, AstNum count);
Value *ast_list_new(Loc loc);
Value *ast_list_start(Loc loc, Value *first);
Value *ast_list_push(Value *list, Value *elem);
Item *ast_item_set(Loc loc, char *key, Value *v);
Item *ast_item_section(Loc loc, char *name, Item *rev_body);
Item *ast_items_push(Item *rev, Item *it);
AstModel *ast_model_new(Loc loc, Loc name_loc, char *name, Item *rev_items);
AstModel *ast_models_push(AstModel *rev, AstModel *m);
void ast_file_finish(ParseCtx *ctx, AstModel *rev_models);

void ast_value_free(Value *v);
void ast_item_free(Item *it);
void ast_model_free(AstModel *m);

/* "an integer", "a string", ... for messages. */
const char *ast_value_kind_name(ValueKind k);

/* Parse `len` bytes of `text` (NUL bytes allowed: they are reported) as file `file`.
 * Returns the models in source order; *n_errors counts the lexical and syntax errors
 * reported to `diag`. Defined in lexer.l, next to the scanner it drives. */
AstModel *ast_parse(const char *file, const char *text, size_t len, DiagSink *diag,
                    int *n_errors);

/* check.c: check every model of the file and append the ModelSpecs to f->models. Errors go
 * to `diag`; f->models holds only the models that checked cleanly. */
struct SpecFile;
void check_models(const AstModel *models, struct SpecFile *f, DiagSink *diag);

/* Small helpers shared by the frontend's files (ast.c). */
void *ast_alloc(size_t n);
char *ast_strndup(const char *s, size_t n);

#endif
