/*
 * text_buffer.c - a growing text; see text_buffer.h.
 */
#include "text_buffer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
