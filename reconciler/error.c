#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int diag_add(struct diag *diag, const char *file, int line, int column, const char *field,
             const char *fmt, ...)
{
    if (diag->count == diag->capacity) {
        size_t capacity = diag->capacity ? diag->capacity * 2 : 8;
        struct diag_entry *grown = realloc(diag->entries, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        diag->entries = grown;
        diag->capacity = capacity;
    }
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);

    struct diag_entry *entry = &diag->entries[diag->count];
    entry->file = strdup(file ? file : "");
    entry->field = strdup(field ? field : "");
    entry->message = strdup(message);
    entry->line = line;
    entry->column = column;
    if (!entry->file || !entry->field || !entry->message) {
        free(entry->file);
        free(entry->field);
        free(entry->message);
        return -ENOMEM;
    }
    diag->count++;
    return 0;
}

void diag_clear(struct diag *diag)
{
    for (size_t i = 0; i < diag->count; i++) {
        free(diag->entries[i].file);
        free(diag->entries[i].field);
        free(diag->entries[i].message);
    }
    free(diag->entries);
    diag->entries = NULL;
    diag->count = diag->capacity = 0;
}

void diag_format(const struct diag_entry *entry, FILE *out)
{
    fprintf(out, "%s:%d:%d: ", entry->file, entry->line, entry->column);
    if (entry->field[0])
        fprintf(out, "%s: ", entry->field);
    fputs(entry->message, out);
}
