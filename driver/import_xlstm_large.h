/* import_xlstm_large.h - `mxc import` of an xLSTM-large configuration (the xLSTM-7B
 * architecture): NX-AI's xLSTMLargeConfig as JSON, or a transformers xLSTMConfig
 * (model_type "xlstm"). Kept apart from import.c's other formats behind this interface. */
#ifndef MXC_IMPORT_XLSTM_LARGE_H
#define MXC_IMPORT_XLSTM_LARGE_H

#include <stdbool.h>
#include <stdio.h>

#include "runtime/json.h"

/* The configuration object inside a parsed JSON document when it is an xLSTM-large one
 * (the object itself, or its "official_config" as in the golden cases); NULL otherwise. */
const JsonValue *xlarge_config_find(const JsonValue *root);

/* Write `model NAME { ... }` for it to `out`. Problems are reported on stderr as
 * "PATH: error: ..." naming the key; returns false after any. */
bool xlarge_config_import(const char *path, const JsonValue *cfg, const char *name, FILE *out);

#endif
