/* tests for reconciler/policy.c: the shipped policies, defaults, and refused
 * traffic steps with their exact place */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy.h"
#include "unit_helpers.h"

static void expect_steps(const struct policy *policy, const int *expected, size_t count)
{
    assert_int_equal(policy->step_count, count);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(policy->steps[i], expected[i]);
}

static void test_shipped_production_policy(void **state)
{
    (void)state;
    struct policy *policy = load_shipped_policy("production");
    static const int steps[] = {5, 10, 20, 30, 50, 75, 100};
    assert_string_equal(policy->name, "production");
    assert_string_equal(policy->name, POLICY_DEFAULT_NAME);
    assert_string_equal(policy->file, "policies/production.yaml");
    expect_steps(policy, steps, 7);
    assert_int_equal(policy->step_duration_s, 20);
    assert_int_equal(policy->start_timeout_s, 600);
    assert_int_equal(policy->failure_threshold, 3);
    assert_int_equal(policy->heavyweight, HEAVYWEIGHT_CANARY);
    assert_int_equal(policy->on_failure, ON_FAILURE_ROLLBACK);
    assert_int_equal(policy->timeout_s, 120 * 60); /* DESIGN rule 3: 120 minutes */
    assert_int_equal(policy->wave_percent, 20);
    policy_free(policy);
}

static void test_shipped_development_policy(void **state)
{
    (void)state;
    struct policy *policy = load_shipped_policy("development");
    static const int steps[] = {25, 50, 100};
    assert_string_equal(policy->name, "development");
    expect_steps(policy, steps, 3);
    assert_int_equal(policy->step_duration_s, 5);
    assert_int_equal(policy->start_timeout_s, 300);
    assert_int_equal(policy->heavyweight, HEAVYWEIGHT_IN_PLACE);
    assert_int_equal(policy->on_failure, ON_FAILURE_ROLLBACK);
    assert_int_equal(policy->timeout_s, 30 * 60);
    assert_int_equal(policy->wave_percent, 50);
    policy_free(policy);
}

static void test_policy_directory_loads_both(void **state)
{
    (void)state;
    const char *root = getenv("ROLLD_SOURCE_DIR");
    assert_non_null(root);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/policies", root);
    struct policy_set set = {0};
    struct diag diag = DIAG_INIT;
    assert_int_equal(source_dir_load_policies(dir, &set, &diag), 0);
    if (diag.count)
        print_diag(&diag);
    assert_int_equal(diag.count, 0);
    assert_int_equal(set.count, 3);
    assert_non_null(policy_set_find(&set, "production"));
    assert_non_null(policy_set_find(&set, "development"));
    const struct policy *gated = policy_set_find(&set, "production-gated");
    assert_non_null(gated);
    assert_int_equal(gated->approval_percent, 10);
    assert_true(gated->require_signed_commits);
    assert_int_equal(policy_set_find(&set, "production")->approval_percent, -1);
    assert_false(policy_set_find(&set, "production")->require_signed_commits);
    assert_null(policy_set_find(&set, "staging"));
    policy_set_clear(&set);
    assert_int_equal(set.count, 0);
}

static struct policy *parse(const char *text, struct diag *diag)
{
    return policy_parse(text, strlen(text), "test.yaml", diag);
}

static void test_defaults_of_a_bare_policy(void **state)
{
    (void)state;
    struct diag diag = DIAG_INIT;
    struct policy *policy = parse("name: bare\n", &diag);
    assert_non_null(policy);
    static const int steps[] = {5, 10, 20, 30, 50, 75, 100};
    expect_steps(policy, steps, 7);
    assert_int_equal(policy->step_duration_s, 20);
    assert_int_equal(policy->start_timeout_s, 600);
    assert_int_equal(policy->failure_threshold, 3);
    assert_int_equal(policy->heavyweight, HEAVYWEIGHT_CANARY);
    assert_int_equal(policy->on_failure, ON_FAILURE_ROLLBACK);
    assert_int_equal(policy->timeout_s, 7200);
    assert_int_equal(policy->wave_percent, 20);
    policy_free(policy);

    policy = parse("name: hold\n"
                   "on_failure: hold\n"
                   "canary:\n"
                   "  steps: [100]\n"
                   "  step_duration: 0s\n",
                   &diag);
    assert_non_null(policy);
    static const int one[] = {100};
    expect_steps(policy, one, 1);
    assert_int_equal(policy->step_duration_s, 0);
    assert_int_equal(policy->on_failure, ON_FAILURE_HOLD);
    policy_free(policy);
    assert_int_equal(diag.count, 0);

    /* an explicit null is "not set": the default */
    policy = parse("name: nulls\n"
                   "heavyweight: null\n"
                   "on_failure: ~\n"
                   "timeout:\n"
                   "canary: ~\n",
                   &diag);
    if (!policy)
        print_diag(&diag);
    assert_non_null(policy);
    assert_int_equal(policy->heavyweight, HEAVYWEIGHT_CANARY);
    assert_int_equal(policy->on_failure, ON_FAILURE_ROLLBACK);
    assert_int_equal(policy->timeout_s, 7200);
    expect_steps(policy, steps, 7);
    policy_free(policy);
    assert_int_equal(diag.count, 0);
}

static void expect_bad_steps(const char *steps, const char *field, int line, int column,
                             const char *needle)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "name: bad\n"
             "canary:\n"
             "  steps: %s\n",
             steps);
    struct diag diag = DIAG_INIT;
    struct policy *policy = parse(text, &diag);
    if (policy) {
        policy_free(policy);
        fail_msg("steps %s were accepted", steps);
    }
    const struct diag_entry *e = diag_only(&diag);
    if (strcmp(e->field, field) || e->line != line || e->column != column ||
        !strstr(e->message, needle)) {
        print_diag(&diag);
        fail_msg("steps %s: expected %s at %d:%d with \"%s\"", steps, field, line, column, needle);
    }
    diag_clear(&diag);
}

static void test_bad_steps_are_rejected(void **state)
{
    (void)state;
    /* "  steps: " is 9 characters: the list starts at column 10 */
    expect_bad_steps("[10, 5, 100]", "canary.steps", 3, 15, "steps must increase; 5 follows 10");
    expect_bad_steps("[5, 50, 50, 100]", "canary.steps", 3, 18,
                     "steps must increase; 50 follows 50");
    expect_bad_steps("[5, 50]", "canary.steps", 3, 10, "the last step must be 100");
    expect_bad_steps("[]", "canary.steps", 3, 10, "give 1 to 100 traffic steps");
    expect_bad_steps("[0, 100]", "canary.steps[0]", 3, 11, "use a value from 1 to 100");
    expect_bad_steps("[5, 150]", "canary.steps[1]", 3, 14, "150 is out of range");
    /* a step that is wrong on its own is reported once, at its own place */
    expect_bad_steps("[5, ten, 3, 100]", "canary.steps[1]", 3, 14, "expected an integer");
    expect_bad_steps("[5, -5, 100]", "canary.steps[1]", 3, 14, "out of range");
    expect_bad_steps("[5, ten, 100]", "canary.steps[1]", 3, 14, "expected an integer");
    expect_bad_steps("[5, 10.5, 100]", "canary.steps[1]", 3, 14, "expected an integer");
    expect_bad_steps("50", "canary.steps", 3, 10, "expected a list");
    expect_bad_steps("{a: 1}", "canary.steps", 3, 10, "expected a list");
}

static void test_other_policy_errors(void **state)
{
    (void)state;
    struct diag diag = DIAG_INIT;
    struct policy *policy = parse("description: no name\n"
                                  "heavywieght: in_place\n"
                                  "on_failure: retry\n"
                                  "timeout: 90\n"
                                  "canary:\n"
                                  "  start_timeout: 0s\n"
                                  "  failure_threshold: 0\n"
                                  "in_place:\n"
                                  "  wave_percent: 101\n",
                                  &diag);
    assert_null(policy);
    EXPECT_DIAG(&diag, "name", 1, 1, "required field 'name' is missing");
    EXPECT_DIAG(&diag, "heavywieght", 2, 1, "did you mean 'heavyweight'?");
    EXPECT_DIAG(&diag, "on_failure", 3, 13, "'retry' is not one of rollback, hold");
    EXPECT_DIAG(&diag, "timeout", 4, 10, "is not a duration", "such as 90s");
    EXPECT_DIAG(&diag, "canary.start_timeout", 6, 18, "out of range");
    EXPECT_DIAG(&diag, "canary.failure_threshold", 7, 22, "use a value from 1 to 1000");
    EXPECT_DIAG(&diag, "in_place.wave_percent", 9, 17, "use a value from 1 to 100");
    assert_int_equal(diag.count, 7);
    diag_clear(&diag);

    /* an enum value close to a real one gets a suggestion */
    policy = parse("name: x\nheavyweight: inplace\n", &diag);
    assert_null(policy);
    EXPECT_DIAG(&diag, "heavyweight", 2, 14, "did you mean 'in_place'?");
    diag_clear(&diag);

    /* an empty file */
    policy = parse("", &diag);
    assert_null(policy);
    assert_int_equal(diag.count, 1);
    assert_non_null(strstr(diag.entries[0].message, "not a valid policy"));
    diag_clear(&diag);

    /* hostile YAML is refused like in a spec */
    policy = parse("name: a\nname: b\n", &diag);
    assert_null(policy);
    EXPECT_DIAG(&diag, "name", 2, 1, "duplicate key 'name'");
    diag_clear(&diag);
}

static void test_policy_set(void **state)
{
    (void)state;
    struct policy_set set = {0};
    struct diag diag = DIAG_INIT;
    struct policy *a = parse("name: a\n", &diag);
    struct policy *b = parse("name: b\nheavyweight: in_place\n", &diag);
    assert_int_equal(policy_set_add(&set, a), 0);
    assert_int_equal(policy_set_add(&set, b), 0);
    assert_ptr_equal(policy_set_find(&set, "a"), a);
    assert_ptr_equal(policy_set_find(&set, "b"), b);
    assert_null(policy_set_find(&set, "c"));
    policy_set_clear(&set);
    policy_free(NULL);
    assert_int_equal(diag.count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_production_policy),
        cmocka_unit_test(test_shipped_development_policy),
        cmocka_unit_test(test_policy_directory_loads_both),
        cmocka_unit_test(test_defaults_of_a_bare_policy),
        cmocka_unit_test(test_bad_steps_are_rejected),
        cmocka_unit_test(test_other_policy_errors),
        cmocka_unit_test(test_policy_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
