/*
 * yaml_tree.h - a YAML document as a small tree that remembers where each
 * node came from, built from libyaml's event stream within fixed limits.
 *
 * Guarantees: input larger than YAML_TREE_MAX_BYTES, nesting deeper than
 * YAML_TREE_MAX_DEPTH, or more than YAML_TREE_MAX_NODES nodes once aliases are
 * counted as the subtrees they stand for (the "billion laughs" defence) is
 * refused with an error naming line and column; so are duplicate mapping keys,
 * non-scalar keys and more than one document. Aliases share nodes; the tree
 * owns every node and frees them together.
 */
#ifndef ROLLD_YAML_TREE_H
#define ROLLD_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define YAML_TREE_MAX_BYTES (1024 * 1024)
#define YAML_TREE_MAX_DEPTH 64
#define YAML_TREE_MAX_NODES 100000

enum ynode_kind { YNODE_SCALAR, YNODE_SEQUENCE, YNODE_MAPPING };

struct ynode {
    enum ynode_kind kind;
    int line;   /* 1-based */
    int column; /* 1-based */
    /* scalar */
    char *value;
    bool plain; /* unquoted: may be a number, a bool or null */
    /* sequence: items[i]; mapping: items[2i] key, items[2i+1] value */
    struct ynode **items;
    size_t count;  /* sequence length or number of mapping pairs */
    size_t weight; /* nodes in the subtree with aliases expanded */
    size_t slots_used, slots_allocated; /* storage of items */
};

struct ytree;

/* Parses buf. Returns a tree (caller frees with ytree_free) whose root may be
 * NULL for an empty document, or NULL with errors in diag. */
struct ytree *ytree_parse(const char *buf, size_t length, const char *file, struct diag *diag);
const struct ynode *ytree_root(const struct ytree *tree);
void ytree_free(struct ytree *tree);

/* Mapping helpers. */
const struct ynode *ynode_map_key(const struct ynode *map, size_t i);
const struct ynode *ynode_map_value(const struct ynode *map, size_t i);
const struct ynode *ynode_map_get(const struct ynode *map, const char *key);
bool ynode_is_null(const struct ynode *node);
const char *ynode_kind_name(const struct ynode *node);

#endif
