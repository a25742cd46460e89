/* tests for reconciler/autoscale.c: the process backend's autoscaling decision */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autoscale.h"

static const struct autoscale_bounds bounds = {1, 8, 0};

/* wall-clock milliseconds, as the agent passes them */
#define T 1700000000000LL

static void test_scales_up_after_the_delay(void **state)
{
    (void)state;
    struct autoscale_state s = {2, 0, 0};
    /* 12 requests in flight at 2 per replica want 6 */
    assert_false(autoscale_decide(&s, &bounds, 2, 12, 100, 1000, 5000, T + 10000));
    assert_int_equal(s.replicas, 2);
    assert_false(autoscale_decide(&s, &bounds, 2, 12, 100, 1000, 5000, T + 10500));
    assert_true(autoscale_decide(&s, &bounds, 2, 12, 100, 1000, 5000, T + 11000));
    assert_int_equal(s.replicas, 6);
}

static void test_a_dip_resets_the_delay(void **state)
{
    (void)state;
    struct autoscale_state s = {2, 0, 0};
    assert_false(autoscale_decide(&s, &bounds, 2, 12, 100, 1000, 5000, T + 0));
    assert_false(autoscale_decide(&s, &bounds, 2, 4, 100, 1000, 5000, T + 600)); /* back to 2 */
    assert_false(autoscale_decide(&s, &bounds, 2, 12, 100, 1000, 5000, T + 1200));
    assert_int_equal(s.replicas, 2); /* the delay counts again from 1200 */
    assert_true(autoscale_decide(&s, &bounds, 2, 12, 100, 1000, 5000, T + 2200));
}

static void test_scales_down_to_min_after_its_delay(void **state)
{
    (void)state;
    struct autoscale_state s = {6, 0, 0};
    assert_false(autoscale_decide(&s, &bounds, 2, 0, 100, 1000, 5000, T + 0));
    assert_false(autoscale_decide(&s, &bounds, 2, 0, 100, 1000, 5000, T + 4999));
    assert_true(autoscale_decide(&s, &bounds, 2, 0, 100, 1000, 5000, T + 5000));
    assert_int_equal(s.replicas, 1);
}

static void test_bounds_and_canary_floor(void **state)
{
    (void)state;
    struct autoscale_state s = {4, 0, 0};
    assert_true(autoscale_decide(&s, &bounds, 1, 1000, 100, 0, 0, T + 0));
    assert_int_equal(s.replicas, 8); /* max */
    struct autoscale_bounds canary = {1, 8, 3};
    struct autoscale_state c = {3, 0, 0};
    assert_false(autoscale_decide(&c, &canary, 2, 0, 100, 0, 0, T + 0));
    assert_int_equal(c.replicas, 3); /* initial_replicas is the canary's floor */
    /* bounds that moved under the state apply at once */
    struct autoscale_state over = {12, 0, 0};
    assert_true(autoscale_decide(&over, &bounds, 2, 20, 100, 60000, 60000, T + 0));
    assert_int_equal(over.replicas, 8);
}

static void test_counts_in_steady_state_replicas(void **state)
{
    (void)state;
    /* at 50% capacity, 6 requests at 2 per replica want 3 replicas here,
     * which are 6 in steady state (ceil(6 * 50%) = 3 run) */
    struct autoscale_state s = {2, 0, 0};
    assert_true(autoscale_decide(&s, &bounds, 2, 6, 50, 0, 0, T + 0));
    assert_int_equal(s.replicas, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scales_up_after_the_delay),
        cmocka_unit_test(test_a_dip_resets_the_delay),
        cmocka_unit_test(test_scales_down_to_min_after_its_delay),
        cmocka_unit_test(test_bounds_and_canary_floor),
        cmocka_unit_test(test_counts_in_steady_state_replicas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
