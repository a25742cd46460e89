/*
 * text_buffer.h - a growing text (status documents, the metrics page).
 *
 * After a failed allocation every append is a no-op and text_finish()
 * returns NULL, so callers check once at the end. Pure: no I/O.
 */
#ifndef ROLLD_TEXT_BUFFER_H
#define ROLLD_TEXT_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

struct text {
    char *data; /* NUL-terminated once anything was appended */
    size_t length, capacity;
    bool failed;
};

/* Makes room for capacity bytes at once (t empty); false when out of
 * memory. A large text's pages are made present in one system call: one
 * by one as the text is written, their faults cost several times the
 * writing (on a virtual machine, 16 us each measured: 6 ms for 1.5 MB). */
bool text_reserve(struct text *t, size_t capacity);
void text_append(struct text *t, const char *s, size_t n);
void text_puts(struct text *t, const char *s);
void text_putc(struct text *t, char c);
/* A decimal number, without printf. */
void text_ull(struct text *t, unsigned long long v);
/* Short formatted pieces only (numbers, fixed words): over 255 bytes fails. */
void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (caller frees), or NULL after a failure. */
char *text_finish(struct text *t);

#endif
