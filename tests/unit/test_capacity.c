/* tests for reconciler/capacity.c: the surge arithmetic and its invariants */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "capacity.h"

static const int production_steps[] = {5, 10, 20, 30, 50, 75, 100};
#define PRODUCTION_STEPS (sizeof(production_steps) / sizeof(production_steps[0]))

static void test_replicas_round_up(void **state)
{
    (void)state;
    assert_int_equal(capacity_replicas(7, 50), 4); /* the seed's example */
    assert_int_equal(capacity_replicas(7, 100), 7);
    assert_int_equal(capacity_replicas(7, 0), 0);
    assert_int_equal(capacity_replicas(1, 1), 1);
    assert_int_equal(capacity_replicas(10, 25), 3);
    assert_int_equal(capacity_replicas(4, 25), 1);
    assert_int_equal(capacity_replicas(0, 50), 0);
}

static void test_surge_50_follows_the_seed_sequence(void **state)
{
    (void)state;
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    size_t n = capacity_schedule(50, -1, production_steps, PRODUCTION_STEPS, steps);
    /* canary to S; traffic to S; primary down to 100-S; canary up; traffic; retire */
    const struct capacity_step expected[] = {
        {0, 100, 50}, {50, 100, 50}, {50, 50, 50}, {50, 50, 100}, {100, 50, 100}, {100, 0, 100},
    };
    assert_int_equal(n, sizeof(expected) / sizeof(expected[0]));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(steps[i].traffic, expected[i].traffic);
        assert_int_equal(steps[i].primary, expected[i].primary);
        assert_int_equal(steps[i].canary, expected[i].canary);
    }
    /* with 7 replicas the canary starts with 4 */
    assert_int_equal(capacity_replicas(7, steps[0].canary), 4);
}

static void test_without_surge_traffic_follows_policy(void **state)
{
    (void)state;
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    size_t n = capacity_schedule(0, -1, production_steps, PRODUCTION_STEPS, steps);
    assert_int_equal(n, PRODUCTION_STEPS + 2);
    assert_int_equal(steps[0].traffic, 0);
    assert_int_equal(steps[0].canary, 100);
    for (size_t i = 0; i < PRODUCTION_STEPS; i++) {
        assert_int_equal(steps[i + 1].traffic, production_steps[i]);
        assert_int_equal(steps[i + 1].primary, 100);
        assert_int_equal(steps[i + 1].canary, 100);
    }
    assert_int_equal(steps[n - 1].primary, 0);
    assert_int_equal(steps[n - 1].traffic, 100);
}

static void test_canary_percent_pauses(void **state)
{
    (void)state;
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    size_t n = capacity_schedule(0, 30, production_steps, PRODUCTION_STEPS, steps);
    assert_int_equal(steps[n - 1].traffic, 30);
    assert_int_equal(steps[n - 1].primary, 100);
    /* a pause between two policy steps is a step of its own */
    n = capacity_schedule(0, 15, production_steps, PRODUCTION_STEPS, steps);
    assert_int_equal(n, 4); /* 0, 5, 10, 15 */
    assert_int_equal(steps[3].traffic, 15);
    /* zero: canary started, no traffic */
    n = capacity_schedule(0, 0, production_steps, PRODUCTION_STEPS, steps);
    assert_int_equal(n, 1);
    assert_int_equal(steps[0].traffic, 0);
    /* 100 completes the rollout */
    n = capacity_schedule(0, 100, production_steps, PRODUCTION_STEPS, steps);
    assert_int_equal(steps[n - 1].primary, 0);
}

static void test_pause_with_surge_respects_both(void **state)
{
    (void)state;
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    size_t n = capacity_schedule(25, 30, production_steps, PRODUCTION_STEPS, steps);
    assert_int_equal(steps[n - 1].traffic, 30);
    for (size_t i = 0; i < n; i++)
        assert_true(capacity_step_valid(&steps[i], 25));
    assert_true(steps[n - 1].primary >= 70);
}

/* Exhaustive: every surge 1..100, every pause, replica counts 1..64. */
static void test_invariants_exhaustive(void **state)
{
    (void)state;
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    for (int surge = 0; surge <= 100; surge++) {
        for (int pause = -1; pause <= 100; pause++) {
            size_t n = capacity_schedule(surge, pause, production_steps, PRODUCTION_STEPS, steps);
            assert_true(n >= 1 && n < CAPACITY_MAX_STEPS);
            int target = pause < 0 ? 100 : pause;
            assert_int_equal(steps[n - 1].traffic, target);
            if (surge > 0)
                assert_int_equal(steps[0].canary, surge);
            for (size_t i = 0; i < n; i++) {
                assert_true(capacity_step_valid(&steps[i], surge));
                if (i > 0) {
                    /* one thing changes at a time, and only in the rollout's direction */
                    int changed = (steps[i].traffic != steps[i - 1].traffic) +
                                  (steps[i].primary != steps[i - 1].primary) +
                                  (steps[i].canary != steps[i - 1].canary);
                    assert_int_equal(changed, 1);
                    assert_true(steps[i].traffic >= steps[i - 1].traffic);
                    assert_true(steps[i].primary <= steps[i - 1].primary);
                    assert_true(steps[i].canary >= steps[i - 1].canary);
                }
                for (int replicas = 1; replicas <= 64; replicas++) {
                    int primary = capacity_replicas(replicas, steps[i].primary);
                    int canary = capacity_replicas(replicas, steps[i].canary);
                    /* each version has the replicas for its share of traffic */
                    assert_true(canary * 100 >= replicas * steps[i].traffic);
                    assert_true(primary * 100 >= replicas * (100 - steps[i].traffic));
                    /* a version that takes traffic has at least one replica */
                    if (steps[i].traffic > 0)
                        assert_true(canary >= 1);
                    if (steps[i].traffic < 100)
                        assert_true(primary >= 1);
                    /* rounding up adds at most one replica per version */
                    if (surge > 0)
                        assert_true(primary + canary <=
                                    replicas + capacity_replicas(replicas, surge) + 1);
                }
            }
            if (target == 100)
                assert_int_equal(steps[n - 1].primary, 0);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicas_round_up),
        cmocka_unit_test(test_surge_50_follows_the_seed_sequence),
        cmocka_unit_test(test_without_surge_traffic_follows_policy),
        cmocka_unit_test(test_canary_percent_pauses),
        cmocka_unit_test(test_pause_with_surge_respects_both),
        cmocka_unit_test(test_invariants_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
