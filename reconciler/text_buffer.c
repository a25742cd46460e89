/*
 * text_buffer.c - a growing text; see text_buffer.h.
 */
#include "text_buffer.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* below this, a block comes from the heap, whose pages are mostly present */
#define PREFAULT_MIN (256 * 1024)

bool text_reserve(struct text *t, size_t capacity)
{
    if (t->data || !capacity)
        return !t->failed;
    if (!(t->data = malloc(capacity))) {
        t->failed = true;
        return false;
    }
    t->capacity = capacity;
    t->data[0] = 0;
    long page = sysconf(_SC_PAGESIZE);
    if (capacity >= PREFAULT_MIN && page > 0) {
        uintptr_t start = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
        uintptr_t end = ((uintptr_t)t->data + capacity) & ~((uintptr_t)page - 1);
        /* a kernel without it (EINVAL) faults the pages in as before */
        if (end > start)
            (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
    }
    return true;
}

void text_append(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->length + n + 1 > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 1024;
        while (capacity < t->length + n + 1)
            capacity *= 2;
        char *grown = realloc(t->data, capacity);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->capacity = capacity;
    }
    memcpy(t->data + t->length, s, n);
    t->length += n;
    t->data[t->length] = 0;
}

void text_puts(struct text *t, const char *s)
{
    text_append(t, s, strlen(s));
}

void text_putc(struct text *t, char c)
{
    text_append(t, &c, 1);
}

void text_printf(struct text *t, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* only short formatted pieces (numbers, fixed words) come through here */
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        t->failed = true;
        return;
    }
    text_append(t, buf, (size_t)n);
}

char *text_finish(struct text *t)
{
    if (t->failed || !t->data) {
        free(t->data);
        return NULL;
    }
    return t->data;
}

void text_ull(struct text *t, unsigned long long v)
{
    char digits[24];
    size_t n = sizeof(digits);
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    text_append(t, digits + n, sizeof(digits) - n);
}
