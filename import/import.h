/* import.h - specs from the configuration files of upstream model code (`mxc import`).
 *
 * Reads a mamba_ssm MambaConfig (JSON), an xlstm xLSTMLMModelConfig (JSON or YAML) or a
 * Hugging Face transformers MambaConfig (JSON), or a model folder that holds one as
 * config.json, and writes the spec of that model. Each upstream format is one file of this
 * module (docs/import.md); what they share is in cfg.h. The spec is run through the frontend's
 * checks before it is returned, so a spec this module gives always builds. */
#ifndef MXC_IMPORT_H
#define MXC_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

/* The spec for the configuration at `path` (a file, or a folder holding config.json), as
 * malloc'd text; NULL after messages on stderr that name the file, line and key. `name` is the
 * model's name, or NULL for the folder of a file config.*, else the file's stem. */
char *import_spec(const char *path, const char *name);

/* Whether `path` is a directory, to be read as a model folder. */
bool import_is_folder(const char *path);

/* The config of model folder `dir` (DIR/config.json) into buf. */
void import_folder_config(const char *dir, char *buf, size_t len);

#endif
