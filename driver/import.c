/* import.c - `mxc import [--name NAME] CONFIG|DIR`: the command line of the importer; the
 * work is in import/ (import/import.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"
#include "import/import.h"

static const char import_usage[] =
    "usage: mxc import [--name NAME] CONFIG|DIR\n"
    "\n"
    "Write a spec for the model that CONFIG describes, to standard output:\n"
    "  - a mamba_ssm MambaConfig (config.json of the state-spaces repositories);\n"
    "  - a transformers MambaConfig (config.json of the -hf repositories);\n"
    "  - an xlstm xLSTMLMModelConfig, as YAML or JSON.\n"
    "DIR is a model folder: its config.json is read.\n"
    "\n"
    "options:\n"
    "  --name NAME   the model's name (default: the folder of config.*, else the file's stem)\n"
    "  -h, --help    this text\n";

int cmd_import(int argc, char **argv)
{
    const char *name = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(import_usage, stdout);
            return MXC_EXIT_OK;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strncmp(argv[i], "--name=", 7) == 0) {
            name = argv[i] + 7;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "mxc: option '%s' is unknown or lacks its argument\n%s", argv[i], import_usage);
            return MXC_EXIT_USAGE;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "mxc: unexpected argument '%s'\n%s", argv[i], import_usage);
            return MXC_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "mxc: import needs a config file\n%s", import_usage);
        return MXC_EXIT_USAGE;
    }
    char *spec = import_spec(path, name);
    if (!spec) return MXC_EXIT_ERROR;
    fputs(spec, stdout);
    free(spec);
    return MXC_EXIT_OK;
}
