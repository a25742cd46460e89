/* tests for reconciler/inventory.c: what versions and rollouts need of a host */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "inventory.h"
#include "unit_helpers.h"

static const struct policy production = {
    .name = "production", .steps = {5, 10, 20, 30, 50, 75, 100}, .step_count = 7,
    .step_duration_s = 20, .start_timeout_s = 600, .timeout_s = 7200, .failure_threshold = 3,
    .wave_percent = 20,
};

static struct service_spec *gpu_spec(const char *import_path, int replicas, double gpus,
                                     int surge)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "name: vision\n"
             "applications:\n"
             "  - name: detect\n"
             "    import_path: %s\n"
             "    deployments:\n"
             "      - name: Detector\n"
             "        num_replicas: %d\n"
             "        ray_actor_options: {num_cpus: 2, num_gpus: %g, memory: 1073741824}\n"
             "rollout:\n"
             "  max_surge_percent: %d\n"
             "backend:\n"
             "  process:\n"
             "    applications:\n"
             "      - name: detect\n"
             "        command: [serve]\n",
             import_path, replicas, gpus, surge);
    return parse_ok(text);
}

static void test_gpu_devices_pack_fractions(void **state)
{
    (void)state;
    assert_int_equal(inventory_gpu_devices(7, 0.5), 4);
    assert_int_equal(inventory_gpu_devices(4, 0.5), 2);
    assert_int_equal(inventory_gpu_devices(3, 0.3), 1);
    assert_int_equal(inventory_gpu_devices(4, 0.3), 2);
    assert_int_equal(inventory_gpu_devices(3, 0.6), 3); /* 0.6 + 0.6 do not share a device */
    assert_int_equal(inventory_gpu_devices(3, 1), 3);
    assert_int_equal(inventory_gpu_devices(2, 2), 4);
    assert_int_equal(inventory_gpu_devices(2, 1.5), 4);
    assert_int_equal(inventory_gpu_devices(0, 1), 0);
    assert_int_equal(inventory_gpu_devices(5, 0), 0);
}

static void test_version_need(void **state)
{
    (void)state;
    struct service_spec *spec = gpu_spec("app:v1", 7, 0.5, 50);
    struct resource_need need = inventory_need_version(spec, 100);
    assert_int_equal(need.gpu_devices, 4);
    assert_true(need.cpus == 14);
    assert_true(need.memory == 7LL * 1073741824);
    need = inventory_need_version(spec, 50); /* 4 replicas */
    assert_int_equal(need.gpu_devices, 2);
    assert_true(need.cpus == 8);
    spec_free(spec);
}

static void test_rollout_peak_with_surge(void **state)
{
    (void)state;
    struct service_spec *v1 = gpu_spec("app:v1", 7, 0.5, 50);
    struct service_spec *v2 = gpu_spec("app:v2", 7, 0.5, 50);
    /* surge 50 on 7 replicas: 7 + 4, then 4 + 7 replicas: 4 + 2 devices at the peak */
    struct resource_need peak = inventory_need_rollout(v2, v1, &production, 50);
    assert_int_equal(peak.gpu_devices, 6);
    assert_true(peak.cpus == 22);
    /* without surge both versions run in full */
    peak = inventory_need_rollout(v2, v1, &production, 0);
    assert_int_equal(peak.gpu_devices, 8);
    spec_free(v1);
    spec_free(v2);
}

static void test_fits_names_the_missing_resource(void **state)
{
    (void)state;
    char reason[128];
    struct resource_need need = {10, 0, 6};
    struct resource_need five_gpus = {100, 0, 5};
    assert_false(inventory_fits(&need, &five_gpus, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "6 GPUs"));
    assert_non_null(strstr(reason, "5 free"));
    struct resource_need few_cpus = {8, 0, 8};
    assert_false(inventory_fits(&need, &few_cpus, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "CPUs"));
    struct resource_need memory_need = {1, 2LL << 30, 0};
    struct resource_need one_gib = {8, 1LL << 30, 8};
    assert_false(inventory_fits(&memory_need, &one_gib, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "memory"));
    struct resource_need plenty = {100, 0, 8};
    assert_true(inventory_fits(&need, &plenty, reason, sizeof(reason)));
}

static void test_largest_surge_that_fits(void **state)
{
    (void)state;
    struct service_spec *v1 = gpu_spec("app:v1", 7, 0.5, 50);
    struct service_spec *v2 = gpu_spec("app:v2", 7, 0.5, 50);
    struct resource_need five = {1000, 0, 5};
    int surge = inventory_largest_surge(v2, v1, &production, &five);
    assert_true(surge >= 1 && surge < 50);
    /* the answer fits and one more does not */
    char reason[128];
    struct resource_need need = inventory_need_rollout(v2, v1, &production, surge);
    assert_true(inventory_fits(&need, &five, reason, sizeof(reason)));
    if (surge < 100) {
        need = inventory_need_rollout(v2, v1, &production, surge + 1);
        assert_false(inventory_fits(&need, &five, reason, sizeof(reason)));
    }
    /* four devices hold v1 alone: no surge fits */
    struct resource_need four = {1000, 0, 4};
    assert_int_equal(inventory_largest_surge(v2, v1, &production, &four), 0);
    spec_free(v1);
    spec_free(v2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_devices_pack_fractions),
        cmocka_unit_test(test_version_need),
        cmocka_unit_test(test_rollout_peak_with_surge),
        cmocka_unit_test(test_fits_names_the_missing_resource),
        cmocka_unit_test(test_largest_surge_that_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
