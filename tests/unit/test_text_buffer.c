/* tests for reconciler/text_buffer.c: appends that grow the text, a
 * reservation made present at once, and a failure kept to the end */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "text_buffer.h"

static void appends_grow(void **state)
{
    (void)state;
    struct text t = {0};
    for (int i = 0; i < 10000; i++) {
        text_puts(&t, "line ");
        text_ull(&t, (unsigned long long)i);
        text_putc(&t, '\n');
    }
    text_ull(&t, 0);
    text_ull(&t, 18446744073709551615ULL);
    size_t length = t.length;
    char *s = text_finish(&t);
    assert_non_null(s);
    assert_int_equal(strlen(s), length);
    assert_memory_equal(s, "line 0\nline 1\n", 14);
    assert_non_null(strstr(s, "line 9999\n018446744073709551615"));
    free(s);
}

/* every whole page of [p, p + n) present in memory */
static bool all_resident(const char *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t end = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    size_t pages = (end - start) / (size_t)page, present = 0;
    unsigned char *vec = malloc(pages);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)start, end - start, vec), 0);
    for (size_t i = 0; i < pages; i++)
        present += vec[i] & 1;
    free(vec);
    return pages > 0 && present == pages;
}

static void reserve_makes_pages_present(void **state)
{
    (void)state;
    size_t capacity = 3 * 1024 * 1024; /* over glibc's mmap threshold: fresh pages */
    struct text t = {0};
    assert_true(text_reserve(&t, capacity));
    assert_int_equal(t.capacity, capacity);
    assert_int_equal(t.length, 0);
    long page = sysconf(_SC_PAGESIZE);
    /* a kernel before 5.14 has no MADV_POPULATE_WRITE: nothing to check */
    char *middle = t.data + capacity / 2;
    if (madvise(middle - (uintptr_t)middle % (size_t)page, (size_t)page, 23) != 0 &&
        errno == EINVAL) {
        free(t.data);
        skip();
    }
    assert_true(all_resident(t.data, capacity));
    /* appends fill it without moving it, then grow it */
    char *data = t.data;
    char block[4096];
    memset(block, 'x', sizeof(block));
    for (size_t n = 0; n + sizeof(block) < capacity; n += sizeof(block))
        text_append(&t, block, sizeof(block));
    assert_ptr_equal(t.data, data);
    for (int i = 0; i < 512; i++)
        text_append(&t, block, sizeof(block));
    assert_true(t.capacity > capacity);
    size_t length = t.length;
    char *s = text_finish(&t);
    assert_non_null(s);
    assert_int_equal(strlen(s), length);
    free(s);
    /* a text already written keeps what it has */
    struct text u = {0};
    text_puts(&u, "kept");
    assert_true(text_reserve(&u, capacity));
    assert_string_equal(u.data, "kept");
    free(text_finish(&u));
}

static void failure_kept_to_the_end(void **state)
{
    (void)state;
    struct text t = {0};
    text_puts(&t, "before");
    char long_word[400];
    memset(long_word, 'y', sizeof(long_word) - 1);
    long_word[sizeof(long_word) - 1] = 0;
    text_printf(&t, "%s", long_word); /* over 255 bytes: refused */
    text_puts(&t, "after");
    assert_true(t.failed);
    assert_null(text_finish(&t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_grow),
        cmocka_unit_test(reserve_makes_pages_present),
        cmocka_unit_test(failure_kept_to_the_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
