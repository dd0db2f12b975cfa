/* parser.y - grammar of the spec language (see docs/spec-language.md).
 *
 * Pure parser over the reentrant scanner of lexer.l. Each action is one builder call from
 * ast.c; meaning is given later by check.c. Error recovery: a missing ';' is reported once
 * and the item kept; any other bad item is skipped up to its ';'; garbage between models is
 * skipped up to the next `model`. %destructor frees whatever recovery throws away. */

%require "3.8"
%define api.pure full
%define api.prefix {spec_yy}
%define api.token.prefix {TK_}
%define api.location.type {Loc}
%define parse.error custom
%define parse.lac full
%locations
%param {void *scanner}
%parse-param {ParseCtx *ctx}

%code requires {
#include "frontend/ast.h"
}

%code provides {
/* The scanner is declared here because flex writes no header for us. */
int spec_yylex(SPEC_YYSTYPE *yylval, Loc *yylloc, void *scanner);
}

%code {
#include <stdio.h>
#include <string.h>

static void spec_yyerror(Loc *loc, void *scanner, ParseCtx *ctx, const char *msg);

/* Locations are points, not ranges: a rule is where its first symbol is. */
#define YYLLOC_DEFAULT(Cur, Rhs, N) \
    do { (Cur) = (N) ? YYRHSLOC(Rhs, 1) : YYRHSLOC(Rhs, 0); } while (0)
}

%union {
    char *str;
    AstNum num;
    Value *value;
    Item *item;
    AstModel *model;
}

%token END 0 "end of file"
%token MODEL "model" TRUE "true" FALSE "false"
%token <str> IDENT "identifier" STRING "string"
%token <num> INT "integer" FLOAT "float"
%token LBRACE "{" RBRACE "}" LBRACKET "[" RBRACKET "]"
%token EQUAL "=" SEMI ";" COMMA "," STAR "*"

%type <model> models model
%type <item> items item
%type <value> value list elems elem

%destructor { free($$); } <str>
%destructor { ast_value_free($$); } <value>
%destructor { ast_item_free($$); } <item>
%destructor { ast_model_free($$); } <model>

%%

file
    : models                            { ast_file_finish(ctx, $1); }
    ;

models
    : %empty                            { $$ = NULL; }
    | models model                      { $$ = ast_models_push($1, $2); }
    | models error                      { $$ = $1; }
    ;

model
    : "model" IDENT "{" items "}"       { $$ = ast_model_new(@1, @2, $2, $4); }
    ;

items
    : %empty                            { $$ = NULL; }
    | items item                        { $$ = ast_items_push($1, $2); }
    ;

item
    : IDENT "=" value ";"               { $$ = ast_item_set(@1, $1, $3); }
    | IDENT "=" value error             { $$ = ast_item_set(@1, $1, $3); yyerrok; }
    | IDENT "{" items "}"               { $$ = ast_item_section(@1, $1, $3); }
    | error ";"                         { $$ = NULL; yyerrok; }
    ;

value
    : INT                               { $$ = ast_value_int(@1, $1); }
    | FLOAT                             { $$ = ast_value_float(@1, $1); }
    | "true"                            { $$ = ast_value_bool(@1, true); }
    | "false"                           { $$ = ast_value_bool(@1, false); }
    | IDENT                             { $$ = ast_value_ident(@1, $1); }
    | STRING                            { $$ = ast_value_string(@1, $1); }
    | list                              { $$ = $1; }
    ;

list
    : "[" "]"                           { $$ = ast_list_new(@1); }
    | "[" elems "]"                     { $$ = $2; }
    | "[" elems "," "]"                 { $$ = $2; }
    ;

/* The list takes the location of its '[' (@0 is the "[" in front of elems). */
elems
    : elem                              { $$ = ast_list_start(@0, $1); }
    | elems "," elem                    { $$ = ast_list_push($1, $3); }
    ;

elem
    : INT                               { $$ = ast_value_int(@1, $1); }
    | FLOAT                             { $$ = ast_value_float(@1, $1); }
    | IDENT                             { $$ = ast_value_ident(@1, $1); }
    | STRING                            { $$ = ast_value_string(@1, $1); }
    | IDENT "*" INT                     { $$ = ast_value_repeat(@1, $1, @3, $3); }
    ;

%%

/* Names of tokens as the user should read them in "unexpected X, expected Y". */
static const char *token_desc(yysymbol_kind_t sym)
{
    switch (sym) {
    case YYSYMBOL_YYEOF: return "end of file";
    case YYSYMBOL_IDENT: return "identifier";
    case YYSYMBOL_STRING: return "string";
    case YYSYMBOL_INT: return "integer";
    case YYSYMBOL_FLOAT: return "float";
    case YYSYMBOL_MODEL: return "'model'";
    case YYSYMBOL_TRUE: return "'true'";
    case YYSYMBOL_FALSE: return "'false'";
    case YYSYMBOL_LBRACE: return "'{'";
    case YYSYMBOL_RBRACE: return "'}'";
    case YYSYMBOL_LBRACKET: return "'['";
    case YYSYMBOL_RBRACKET: return "']'";
    case YYSYMBOL_EQUAL: return "'='";
    case YYSYMBOL_SEMI: return "';'";
    case YYSYMBOL_COMMA: return "','";
    case YYSYMBOL_STAR: return "'*'";
    default: return yysymbol_name(sym);
    }
}

/* "unexpected X, expected A, B or C". The tokens that can start a value are folded into
 * "a value". A missing ';' at the end of a line is reported just after the value it should
 * follow, not at the start of the next line. */
static int yyreport_syntax_error(const yypcontext_t *pc, void *scanner, ParseCtx *ctx)
{
    (void)scanner;
    ctx->n_errors++;
    if (ctx->stop)
        return 0; /* the scanner gave up and said why; the EOF it fakes is not news */
    enum { MAX_EXPECTED = 12 };
    yysymbol_kind_t expected[MAX_EXPECTED];
    int n = yypcontext_expected_tokens(pc, expected, MAX_EXPECTED);
    if (n < 0)
        n = 0; /* more than MAX_EXPECTED: listing them would not help */
    yysymbol_kind_t look = yypcontext_token(pc);
    Loc loc = *yypcontext_location(pc);
    /* Recovery may stumble on the same token again (`a = 1 2;`), or on the end of file
     * twice; one message for each is enough. */
    if (ctx->last_error.line == loc.line && ctx->last_error.col == loc.col)
        return 0;
    if (look == YYSYMBOL_YYEOF && ctx->eof_reported)
        return 0;
    ctx->last_error = loc;
    ctx->eof_reported |= look == YYSYMBOL_YYEOF;

    if (n == 1 && expected[0] == YYSYMBOL_SEMI && ctx->prev_end.line > 0 &&
        ctx->prev_end.line < loc.line) {
        diag_report(ctx->diag, DIAG_ERROR, ctx->prev_end, "expected ';' after the value");
        return 0;
    }

    const char *names[MAX_EXPECTED];
    int n_names = 0;
    bool value = false;
    for (int i = 0; i < n; i++)
        value |= expected[i] == YYSYMBOL_STRING;
    if (value)
        names[n_names++] = "a value";
    for (int i = 0; i < n; i++) {
        switch (expected[i]) {
        case YYSYMBOL_INT: case YYSYMBOL_FLOAT: case YYSYMBOL_STRING: case YYSYMBOL_TRUE:
        case YYSYMBOL_FALSE: case YYSYMBOL_LBRACKET: case YYSYMBOL_IDENT:
            if (value)
                continue;
            break;
        default:
            break;
        }
        names[n_names++] = token_desc(expected[i]);
    }

    char what[80];
    if (look == YYSYMBOL_IDENT)
        snprintf(what, sizeof what, "identifier '%s'", ctx->tok_text);
    else if (look == YYSYMBOL_INT || look == YYSYMBOL_FLOAT)
        snprintf(what, sizeof what, "number %s", ctx->tok_text);
    else
        snprintf(what, sizeof what, "%s", token_desc(look));

    char exp[256] = "";
    size_t len = 0;
    for (int i = 0; i < n_names; i++) {
        const char *sep = i == 0 ? "" : i == n_names - 1 ? " or " : ", ";
        int w = snprintf(exp + len, sizeof exp - len, "%s%s", sep, names[i]);
        if (w < 0 || (size_t)w >= sizeof exp - len)
            break;
        len += (size_t)w;
    }
    if (n_names > 0)
        diag_report(ctx->diag, DIAG_ERROR, loc, "unexpected %s, expected %s", what, exp);
    else
        diag_report(ctx->diag, DIAG_ERROR, loc, "unexpected %s", what);

    if (look == YYSYMBOL_YYEOF && ctx->depth > 0 && ctx->depth <= PARSE_MAX_DEPTH)
        diag_report(ctx->diag, DIAG_NOTE, ctx->open[ctx->depth - 1],
                    "unterminated section: this '{' is never closed");
    return 0;
}

/* Only called for the parser's own failures (stack exhaustion), not for syntax errors. */
static void spec_yyerror(Loc *loc, void *scanner, ParseCtx *ctx, const char *msg)
{
    (void)scanner;
    ctx->n_errors++;
    diag_report(ctx->diag, DIAG_ERROR, *loc, "%s", msg);
}
