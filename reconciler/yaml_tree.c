#include "yaml_tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct anchor {
    char *name;
    struct ynode *node;
};

struct ytree {
    struct ynode **nodes; /* every node, for freeing */
    size_t node_count, node_capacity;
    struct anchor *anchors;
    size_t anchor_count, anchor_capacity;
    struct ynode *root;
};

struct builder {
    struct ytree *tree;
    struct ynode *stack[YAML_TREE_MAX_DEPTH + 2];
    size_t depth;
    const char *file;
    struct diag *diag;
};

static struct ynode *tree_node_new(struct ytree *tree, enum ynode_kind kind, const yaml_mark_t *mark)
{
    if (tree->node_count == tree->node_capacity) {
        size_t capacity = tree->node_capacity ? tree->node_capacity * 2 : 64;
        struct ynode **grown = realloc(tree->nodes, capacity * sizeof(*grown));
        if (!grown)
            return NULL;
        tree->nodes = grown;
        tree->node_capacity = capacity;
    }
    struct ynode *node = calloc(1, sizeof(*node));
    if (!node)
        return NULL;
    node->kind = kind;
    node->line = (int)mark->line + 1;
    node->column = (int)mark->column + 1;
    node->weight = 1;
    tree->nodes[tree->node_count++] = node;
    return node;
}

static int node_push_item(struct ynode *parent, struct ynode *child)
{
    if (parent->slots_used == parent->slots_allocated) {
        size_t capacity = parent->slots_allocated ? parent->slots_allocated * 2 : 8;
        struct ynode **grown = realloc(parent->items, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        parent->items = grown;
        parent->slots_allocated = capacity;
    }
    parent->items[parent->slots_used++] = child;
    parent->count = parent->kind == YNODE_MAPPING ? parent->slots_used / 2 : parent->slots_used;
    return 0;
}

static int anchor_add(struct ytree *tree, const char *name, struct ynode *node)
{
    if (tree->anchor_count == tree->anchor_capacity) {
        size_t capacity = tree->anchor_capacity ? tree->anchor_capacity * 2 : 8;
        struct anchor *grown = realloc(tree->anchors, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        tree->anchors = grown;
        tree->anchor_capacity = capacity;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    tree->anchors[tree->anchor_count].name = copy;
    tree->anchors[tree->anchor_count].node = node;
    tree->anchor_count++;
    return 0;
}

static struct ynode *anchor_find(struct ytree *tree, const char *name)
{
    /* the latest anchor of a name wins, as YAML says */
    for (size_t i = tree->anchor_count; i > 0; i--)
        if (strcmp(tree->anchors[i - 1].name, name) == 0)
            return tree->anchors[i - 1].node;
    return NULL;
}

static bool scalar_equal(const struct ynode *a, const struct ynode *b)
{
    return a->kind == YNODE_SCALAR && b->kind == YNODE_SCALAR && strcmp(a->value, b->value) == 0;
}

/* Attaches a finished node (scalar, alias target or closed collection) to the
 * node on top of the stack, or makes it the root. */
static int builder_attach(struct builder *b, struct ynode *node, const yaml_mark_t *mark)
{
    if (b->depth == 0) {
        b->tree->root = node;
        return 0;
    }
    struct ynode *parent = b->stack[b->depth - 1];
    if (parent->kind == YNODE_MAPPING && parent->slots_used % 2 == 0) {
        /* node is a key */
        if (node->kind != YNODE_SCALAR) {
            diag_add(b->diag, b->file, (int)mark->line + 1, (int)mark->column + 1, "",
                     "mapping keys must be plain strings");
            return -EINVAL;
        }
        for (size_t i = 0; i < parent->slots_used; i += 2) {
            if (scalar_equal(parent->items[i], node)) {
                diag_add(b->diag, b->file, node->line, node->column, node->value,
                         "duplicate key '%s' (first at line %d); remove one of them",
                         node->value, parent->items[i]->line);
                return -EINVAL;
            }
        }
    }
    if (parent->weight + node->weight > YAML_TREE_MAX_NODES) {
        diag_add(b->diag, b->file, (int)mark->line + 1, (int)mark->column + 1, "",
                 "document expands to more than %d nodes (aliases counted); refusing it",
                 YAML_TREE_MAX_NODES);
        return -E2BIG;
    }
    parent->weight += node->weight;
    return node_push_item(parent, node);
}

static int builder_open(struct builder *b, enum ynode_kind kind, const yaml_event_t *event,
                        const yaml_char_t *anchor)
{
    if (b->depth >= YAML_TREE_MAX_DEPTH) {
        diag_add(b->diag, b->file, (int)event->start_mark.line + 1,
                 (int)event->start_mark.column + 1, "",
                 "nesting deeper than %d levels; refusing the document", YAML_TREE_MAX_DEPTH);
        return -E2BIG;
    }
    struct ynode *node = tree_node_new(b->tree, kind, &event->start_mark);
    if (!node)
        return -ENOMEM;
    if (anchor && anchor_add(b->tree, (const char *)anchor, node) < 0)
        return -ENOMEM;
    b->stack[b->depth++] = node;
    return 0;
}

static int builder_close(struct builder *b, const yaml_event_t *event)
{
    struct ynode *node = b->stack[--b->depth];
    return builder_attach(b, node, &event->start_mark);
}

static int builder_event(struct builder *b, const yaml_event_t *event, int *documents)
{
    switch (event->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*documents > 1) {
            diag_add(b->diag, b->file, (int)event->start_mark.line + 1,
                     (int)event->start_mark.column + 1, "",
                     "more than one YAML document; put one service per file");
            return -EINVAL;
        }
        return 0;
    case YAML_SCALAR_EVENT: {
        struct ynode *node = tree_node_new(b->tree, YNODE_SCALAR, &event->start_mark);
        if (!node)
            return -ENOMEM;
        node->value = strndup((const char *)event->data.scalar.value, event->data.scalar.length);
        if (!node->value)
            return -ENOMEM;
        if (strlen(node->value) != event->data.scalar.length) {
            diag_add(b->diag, b->file, node->line, node->column, "",
                     "scalar contains a NUL character");
            return -EINVAL;
        }
        node->plain = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                      event->data.scalar.plain_implicit;
        if (event->data.scalar.anchor &&
            anchor_add(b->tree, (const char *)event->data.scalar.anchor, node) < 0)
            return -ENOMEM;
        return builder_attach(b, node, &event->start_mark);
    }
    case YAML_ALIAS_EVENT: {
        struct ynode *target = anchor_find(b->tree, (const char *)event->data.alias.anchor);
        if (!target) {
            diag_add(b->diag, b->file, (int)event->start_mark.line + 1,
                     (int)event->start_mark.column + 1, "", "alias '*%s' has no anchor",
                     (const char *)event->data.alias.anchor);
            return -EINVAL;
        }
        for (size_t i = 0; i < b->depth; i++) {
            if (b->stack[i] == target) {
                diag_add(b->diag, b->file, (int)event->start_mark.line + 1,
                         (int)event->start_mark.column + 1, "",
                         "alias '*%s' refers to a node that contains it",
                         (const char *)event->data.alias.anchor);
                return -EINVAL;
            }
        }
        return builder_attach(b, target, &event->start_mark);
    }
    case YAML_SEQUENCE_START_EVENT:
        return builder_open(b, YNODE_SEQUENCE, event, event->data.sequence_start.anchor);
    case YAML_MAPPING_START_EVENT:
        return builder_open(b, YNODE_MAPPING, event, event->data.mapping_start.anchor);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return builder_close(b, event);
    default:
        return 0;
    }
}

struct ytree *ytree_parse(const char *buf, size_t length, const char *file, struct diag *diag)
{
    if (length > YAML_TREE_MAX_BYTES) {
        diag_add(diag, file, 0, 0, "", "file is %zu bytes, over the limit of %d; refusing it",
                 length, YAML_TREE_MAX_BYTES);
        return NULL;
    }
    struct ytree *tree = calloc(1, sizeof(*tree));
    if (!tree)
        return NULL;
    struct builder b = {.tree = tree, .file = file, .diag = diag};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(tree);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, length);

    int documents = 0, r = 0;
    for (;;) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event)) {
            const yaml_mark_t *mark =
                parser.problem_mark.line || parser.problem_mark.column ? &parser.problem_mark
                                                                       : &parser.context_mark;
            diag_add(diag, file, (int)mark->line + 1, (int)mark->column + 1, "",
                     "invalid YAML: %s%s%s", parser.problem ? parser.problem : "syntax error",
                     parser.context ? " " : "", parser.context ? parser.context : "");
            r = -EINVAL;
            break;
        }
        bool done = event.type == YAML_STREAM_END_EVENT;
        r = builder_event(&b, &event, &documents);
        yaml_event_delete(&event);
        if (r < 0 || done)
            break;
    }
    yaml_parser_delete(&parser);
    if (r < 0) {
        ytree_free(tree);
        return NULL;
    }
    return tree;
}

const struct ynode *ytree_root(const struct ytree *tree)
{
    return tree ? tree->root : NULL;
}

void ytree_free(struct ytree *tree)
{
    if (!tree)
        return;
    for (size_t i = 0; i < tree->node_count; i++) {
        free(tree->nodes[i]->value);
        free(tree->nodes[i]->items);
        free(tree->nodes[i]);
    }
    for (size_t i = 0; i < tree->anchor_count; i++)
        free(tree->anchors[i].name);
    free(tree->anchors);
    free(tree->nodes);
    free(tree);
}

const struct ynode *ynode_map_key(const struct ynode *map, size_t i)
{
    return map->items[2 * i];
}

const struct ynode *ynode_map_value(const struct ynode *map, size_t i)
{
    return map->items[2 * i + 1];
}

const struct ynode *ynode_map_get(const struct ynode *map, const char *key)
{
    if (!map || map->kind != YNODE_MAPPING)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->items[2 * i]->value, key) == 0)
            return map->items[2 * i + 1];
    return NULL;
}

bool ynode_is_null(const struct ynode *node)
{
    if (!node)
        return true;
    if (node->kind != YNODE_SCALAR || !node->plain)
        return false;
    const char *v = node->value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

const char *ynode_kind_name(const struct ynode *node)
{
    if (!node || ynode_is_null(node))
        return "null";
    switch (node->kind) {
    case YNODE_SCALAR:
        return "a scalar";
    case YNODE_SEQUENCE:
        return "a list";
    case YNODE_MAPPING:
        return "a mapping";
    }
    return "?";
}
