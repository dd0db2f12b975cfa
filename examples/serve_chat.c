/* serve_chat.c - several conversations served from one batched state (docs/c-api.md,
 * "Stateful serving").
 *
 *   ./mxc build examples/kjv_mamba.mx -o build/libkjv_mamba.so     (also writes build/kjv_mamba.h)
 *   cc -Ibuild examples/serve_chat.c -Lbuild -lkjv_mamba -o build/serve_chat
 *   LD_LIBRARY_PATH=build build/serve_chat examples/kjv_mamba.safetensors served
 *
 * Four conversations (tokens are bytes; replies are greedy, REPLY bytes each) in three rounds:
 *
 *   round 0  c0 and c2 start
 *   round 1  c1 forks from c0 (slot copy) and both go on differently; c2 waits (parked)
 *   round 2  c1 is retired (slot reset) and c3 starts in its slot; c0 and c2 go on
 *
 * `served` keeps all of them in one state of BATCH slots: a user turn is read into its slot
 * alone (the slot is copied into a one-sequence state, prefilled with forward_last, copied
 * back), and the replies of every conversation of the round are decoded together, one batched
 * step per byte. A waiting conversation's slot is parked in a side state during the round's
 * decode and copied back afterwards. `served --stop-after R FILE` saves the state after round
 * R - 1 and exits; `served --resume-at R FILE` is a new process that loads it and serves the
 * rounds from R on. `alone` runs each conversation by itself in its own one-sequence state,
 * replaying the turns a fork inherited.
 *
 * Every mode prints one line per turn and reply, "cN> text" and "cN< text [top logit after
 * the reply]" (newlines as \n),
 * in the order it serves them; per conversation, the lines of `served` (in one process or in
 * two) are the same as those of `alone` (tests/run-serve-example.sh compares them). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kjv_mamba.h"

#define BATCH 3
#define REPLY 32
#define ROUNDS 3
#define N_CONV 4
#define VP kjv_mamba_VOCAB_PADDED

typedef struct Conv {
    int slot;
    int fork_of, fork_round;   /* -1: not a fork; else it starts as a copy of conversation
                                  fork_of at the beginning of round fork_round */
    const char *turn[ROUNDS];  /* NULL: no turn in that round */
    int retire_after;          /* its slot is reset after this round, -1: never */
} Conv;

static const Conv convs[N_CONV] = {
    {0, -1, 0, {"And Moses said unto the people, ", " And the LORD spake unto Moses, saying, ",
                " And he said, "}, -1},
    {1, 0, 1, {NULL, " Then Pharaoh called for Moses and Aaron, ", NULL}, 1},
    {2, -1, 0, {"In the beginning God ", NULL, " And God said, Let there be "}, -1},
    {1, -1, 2, {NULL, NULL, "Blessed are the poor in spirit: "}, -1},
};

static int die(const char *what)
{
    fprintf(stderr, "serve_chat: %s: %s\n", what, kjv_mamba_last_error());
    exit(1);
}

static int32_t argmax(const float *logits)
{
    int32_t best = 0;
    for (int32_t i = 1; i < kjv_mamba_VOCAB_SIZE; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* top: the largest logit after the reply's last byte (a reply line only), so that the lines
 * also compare the states the replies leave, not only the greedy bytes. */
static void print_line(int c, char dir, const int32_t *t, int n, float top)
{
    printf("c%d%c ", c, dir);
    for (int i = 0; i < n; i++) {
        if (t[i] == '\n') fputs("\\n", stdout);
        else if (t[i] == '\\') fputs("\\\\", stdout);
        else putchar(t[i] >= 32 && t[i] < 127 ? (int)t[i] : '?');
    }
    if (dir == '<') printf(" [%.5f]", top);
    putchar('\n');
}

static int32_t *bytes_of(const char *s, int *n)
{
    *n = (int)strlen(s);
    int32_t *t = malloc(sizeof *t * (size_t)*n);
    for (int i = 0; i < *n; i++) t[i] = (unsigned char)s[i];
    return t;
}

/* The user turn of conversation c into its slot of s, alone: the first reply byte. */
static int32_t read_turn(kjv_mamba_model *m, kjv_mamba_state *s, kjv_mamba_state *one, int c,
                         const char *text, bool print)
{
    int n;
    int32_t *t = bytes_of(text, &n);
    float logits[VP];
    if (s && kjv_mamba_state_copy_slot(one, 0, s, convs[c].slot)) die("copy_slot");
    if (kjv_mamba_forward_last(m, one, t, n, logits)) die("forward_last");
    if (s && kjv_mamba_state_copy_slot(s, convs[c].slot, one, 0)) die("copy_slot");
    if (print) print_line(c, '>', t, n, 0);
    free(t);
    return argmax(logits);
}

/* Conversation c alone, in its own state: the turns it inherited from the conversation it
 * forked from are replayed without printing. */
static void run_alone(kjv_mamba_model *m, int c)
{
    kjv_mamba_state *s;
    if (kjv_mamba_state_new(m, 1, &s)) die("state_new");
    const Conv *v = &convs[c];
    for (int r = 0; r < ROUNDS; r++) {
        const Conv *who = v->fork_of >= 0 && r < v->fork_round ? &convs[v->fork_of] : v;
        if (!who->turn[r]) continue;
        bool own = who == v;
        int32_t tok = read_turn(m, NULL, s, c, who->turn[r], own);
        int32_t reply[REPLY];
        float logits[VP];
        for (int i = 0; i < REPLY; i++) {
            reply[i] = tok;
            if (kjv_mamba_step(m, s, &tok, logits)) die("step");
            tok = argmax(logits);
        }
        if (own) print_line(c, '<', reply, REPLY, logits[tok]);
    }
    kjv_mamba_state_free(s);
}

/* Is conversation c alive (holding its slot) during round r? */
static bool alive(int c, int r)
{
    const Conv *v = &convs[c];
    int first = v->fork_of >= 0 ? v->fork_round : -1;
    if (first < 0)
        for (int k = 0; k < ROUNDS && first < 0; k++)
            if (v->turn[k]) first = k;
    return r >= first && (v->retire_after < 0 || r <= v->retire_after);
}

static void serve_round(kjv_mamba_model *m, kjv_mamba_state *s, kjv_mamba_state *one,
                        kjv_mamba_state *park, int r)
{
    int32_t tok[BATCH] = {0};
    int conv_of[BATCH];
    for (int b = 0; b < BATCH; b++) conv_of[b] = -1;
    /* forks first: a fork starts as a copy of its parent before the parent's new turn */
    for (int c = 0; c < N_CONV; c++)
        if (convs[c].fork_of >= 0 && convs[c].fork_round == r &&
            kjv_mamba_state_copy_slot(s, convs[c].slot, s, convs[convs[c].fork_of].slot))
            die("copy_slot (fork)");
    for (int c = 0; c < N_CONV; c++) {
        if (!alive(c, r)) continue;
        if (convs[c].turn[r]) {
            tok[convs[c].slot] = read_turn(m, s, one, c, convs[c].turn[r], true);
            conv_of[convs[c].slot] = c;
        } else if (kjv_mamba_state_copy_slot(park, convs[c].slot, s, convs[c].slot)) {
            die("copy_slot (park)");
        }
    }
    /* the replies of the round together, one batched step per byte */
    int32_t reply[BATCH][REPLY];
    float logits[BATCH * VP];
    for (int i = 0; i < REPLY; i++) {
        for (int b = 0; b < BATCH; b++) reply[b][i] = tok[b];
        if (kjv_mamba_step(m, s, tok, logits)) die("step");
        for (int b = 0; b < BATCH; b++) tok[b] = argmax(logits + (size_t)b * VP);
    }
    for (int b = 0; b < BATCH; b++)
        if (conv_of[b] >= 0)
            print_line(conv_of[b], '<', reply[b], REPLY, logits[(size_t)b * VP + tok[b]]);
    /* waiting conversations get their slots back; slots without one are cleared */
    for (int b = 0; b < BATCH; b++) {
        int holder = -1;
        for (int c = 0; c < N_CONV; c++)
            if (alive(c, r) && convs[c].slot == b && !(convs[c].retire_after == r)) holder = c;
        if (holder >= 0 && conv_of[b] < 0 && kjv_mamba_state_copy_slot(s, b, park, b))
            die("copy_slot (unpark)");
        if (holder < 0 && kjv_mamba_state_reset_slot(s, b)) die("reset_slot");
    }
}

int main(int argc, char **argv)
{
    bool split = argc == 6 && (strcmp(argv[3], "--stop-after") == 0 ||
                               strcmp(argv[3], "--resume-at") == 0);
    if (argc < 3 || (strcmp(argv[2], "alone") && strcmp(argv[2], "served")) ||
        (argc != 3 && !split)) {
        fprintf(stderr, "usage: serve_chat WEIGHTS alone|served [--stop-after R FILE | "
                        "--resume-at R FILE]\n");
        return 2;
    }
    kjv_mamba_model *m;
    if (kjv_mamba_open(argv[1], &m)) die(argv[1]);
    if (strcmp(argv[2], "alone") == 0) {
        for (int c = 0; c < N_CONV; c++) run_alone(m, c);
        kjv_mamba_close(m);
        return 0;
    }
    int from = 0, to = ROUNDS;
    if (split) {
        int r = atoi(argv[4]);
        if (r < 1 || r >= ROUNDS) {
            fprintf(stderr, "serve_chat: R must be in [1, %d]\n", ROUNDS - 1);
            return 2;
        }
        if (strcmp(argv[3], "--stop-after") == 0) to = r;
        else from = r;
    }
    kjv_mamba_state *s, *one, *park;
    if (kjv_mamba_state_new(m, BATCH, &s) || kjv_mamba_state_new(m, 1, &one) ||
        kjv_mamba_state_new(m, BATCH, &park))
        die("state_new");
    /* A new process picks up where the other stopped: the state of all slots, from the file. */
    if (from > 0 && kjv_mamba_state_load_file(s, argv[5])) die("state_load_file");
    for (int r = from; r < to; r++) serve_round(m, s, one, park, r);
    if (to < ROUNDS && kjv_mamba_state_save_file(s, argv[5])) die("state_save_file");
    kjv_mamba_state_free(s);
    kjv_mamba_state_free(one);
    kjv_mamba_state_free(park);
    kjv_mamba_close(m);
    return 0;
}
