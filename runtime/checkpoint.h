/* checkpoint.h - open the weights of a model as users have them: one safetensors file, the
 * shards of a large checkpoint listed by an index, or the folder that holds either.
 *
 * A sharded checkpoint (as Hugging Face saves one) is `model.safetensors.index.json`,
 *   {"metadata": {...}, "weight_map": {"tensor name": "model-00001-of-00002.safetensors", ...}}
 * beside the shard files it names. Every shard is mapped and validated as a file of its own
 * (safetensors.h), then the set is checked against the index and joined into one StFile:
 * a shard the index names but the folder lacks, a tensor the index places in a shard that does
 * not hold it, a tensor in a shard that the index does not list there, and a tensor in two
 * shards are each refused, naming the file and the tensor. Shard names are plain file names
 * in the index's folder. */
#ifndef MXC_RUNTIME_CHECKPOINT_H
#define MXC_RUNTIME_CHECKPOINT_H

#include "runtime/safetensors.h"

/* Open the shards listed by the index at `index_path`. Returns 0 and one StFile over all of
 * them, or non-zero with an error. */
int ckpt_open_index(const char *index_path, StFile **out);

/* Open `path`: a folder (its model.safetensors.index.json if present, else its
 * model.safetensors), a file whose name ends in ".json" (an index), or a safetensors file. */
int ckpt_open(const char *path, StFile **out);

#endif
