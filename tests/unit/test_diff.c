/* tests for reconciler/diff.c: named lists matched by name, added and removed
 * things, free-form values compared whole, and the paths that name them */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "diff.h"
#include "unit_helpers.h"

static json_t *load(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);
    if (!value)
        fail_msg("bad JSON in test: %s: %s", error.text, text);
    return value;
}

/* The changes between two JSON texts. */
static void diff_texts(const char *old_text, const char *new_text, struct change_list *out)
{
    json_t *a = load(old_text), *b = load(new_text);
    assert_int_equal(diff_documents(a, b, out), 0);
    json_decref(a);
    json_decref(b);
}

static void print_changes(const struct change_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        fprintf(stderr, "  change: %s %s\n", change_kind_name(list->items[i].kind),
                list->items[i].path);
}

static void expect_change(const struct change_list *list, const char *path, enum change_kind kind)
{
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->items[i].path, path) != 0)
            continue;
        if (list->items[i].kind != kind) {
            print_changes(list);
            fail_msg("%s is %s, expected %s", path, change_kind_name(list->items[i].kind),
                     change_kind_name(kind));
        }
        return;
    }
    print_changes(list);
    fail_msg("no change at %s", path);
}

static void expect_count(const struct change_list *list, size_t count)
{
    if (list->count != count) {
        print_changes(list);
        fail_msg("%zu changes, expected %zu", list->count, count);
    }
}

static const char two_apps[] =
    "{\"name\":\"svc\",\"applications\":["
    "{\"name\":\"text\",\"import_path\":\"a:b\",\"deployments\":["
    "{\"name\":\"Model\",\"num_replicas\":2,\"user_config\":{\"t\":0.5,\"stops\":[\"a\",\"b\"]}},"
    "{\"name\":\"Tokenizer\",\"num_replicas\":1}]},"
    "{\"name\":\"image\",\"import_path\":\"c:d\",\"deployments\":[{\"name\":\"Vision\","
    "\"num_replicas\":1,\"autoscaling_config\":{\"min_replicas\":1,\"max_replicas\":4}}]}]}";

static void test_equal_documents_have_no_changes(void **state)
{
    (void)state;
    struct change_list list = {0};
    diff_texts(two_apps, two_apps, &list);
    expect_count(&list, 0);
    change_list_clear(&list);
}

static void test_named_lists_matched_by_name_not_position(void **state)
{
    (void)state;
    /* both lists reversed, keys shuffled: no change */
    static const char reordered[] =
        "{\"applications\":["
        "{\"deployments\":[{\"num_replicas\":1,\"name\":\"Vision\","
        "\"autoscaling_config\":{\"max_replicas\":4,\"min_replicas\":1}}],"
        "\"import_path\":\"c:d\",\"name\":\"image\"},"
        "{\"name\":\"text\",\"import_path\":\"a:b\",\"deployments\":["
        "{\"num_replicas\":1,\"name\":\"Tokenizer\"},"
        "{\"user_config\":{\"stops\":[\"a\",\"b\"],\"t\":0.5},\"name\":\"Model\",\"num_replicas\":"
        "2}"
        "]}],\"name\":\"svc\"}";
    struct change_list list = {0};
    diff_texts(two_apps, reordered, &list);
    expect_count(&list, 0);
    change_list_clear(&list);

    /* reordered and one field changed: exactly that field, named by name */
    static const char changed[] =
        "{\"name\":\"svc\",\"applications\":["
        "{\"name\":\"image\",\"import_path\":\"c:d\",\"deployments\":[{\"name\":\"Vision\","
        "\"num_replicas\":1,\"autoscaling_config\":{\"min_replicas\":1,\"max_replicas\":8}}]},"
        "{\"name\":\"text\",\"import_path\":\"a:b\",\"deployments\":["
        "{\"name\":\"Tokenizer\",\"num_replicas\":1},"
        "{\"name\":\"Model\",\"num_replicas\":3,\"user_config\":{\"t\":0.5,\"stops\":[\"a\",\"b\"]}"
        "}"
        "]}]}";
    diff_texts(two_apps, changed, &list);
    expect_count(&list, 2);
    expect_change(&list, "applications[text].deployments[Model].num_replicas", CHANGE_MODIFIED);
    expect_change(&list, "applications[image].deployments[Vision].autoscaling_config.max_replicas",
                  CHANGE_MODIFIED);
    change_list_clear(&list);
}

static void test_added_and_removed(void **state)
{
    (void)state;
    static const char old_text[] =
        "{\"name\":\"svc\",\"version_name\":\"v1\",\"applications\":["
        "{\"name\":\"text\",\"deployments\":[{\"name\":\"Model\"},{\"name\":\"Old\"}]},"
        "{\"name\":\"retired\",\"deployments\":[{\"name\":\"R\"}]}]}";
    static const char new_text[] = "{\"name\":\"svc\",\"image_uri\":\"r/x:1\",\"applications\":["
                                   "{\"name\":\"fresh\",\"deployments\":[{\"name\":\"F\"}]},"
                                   "{\"name\":\"text\",\"deployments\":[{\"name\":\"New\"},"
                                   "{\"name\":\"Model\",\"user_config\":{\"a\":1}}]}]}";
    struct change_list list = {0};
    diff_texts(old_text, new_text, &list);
    expect_change(&list, "version_name", CHANGE_REMOVED);
    expect_change(&list, "image_uri", CHANGE_ADDED);
    expect_change(&list, "applications[retired]", CHANGE_REMOVED);
    expect_change(&list, "applications[fresh]", CHANGE_ADDED);
    expect_change(&list, "applications[text].deployments[Old]", CHANGE_REMOVED);
    expect_change(&list, "applications[text].deployments[New]", CHANGE_ADDED);
    expect_change(&list, "applications[text].deployments[Model].user_config", CHANGE_ADDED);
    expect_count(&list, 7);
    change_list_clear(&list);

    /* and the other way round */
    diff_texts(new_text, old_text, &list);
    expect_change(&list, "version_name", CHANGE_ADDED);
    expect_change(&list, "image_uri", CHANGE_REMOVED);
    expect_change(&list, "applications[retired]", CHANGE_ADDED);
    expect_change(&list, "applications[fresh]", CHANGE_REMOVED);
    expect_change(&list, "applications[text].deployments[Model].user_config", CHANGE_REMOVED);
    expect_count(&list, 7);
    change_list_clear(&list);
}

static void test_free_form_values_compared_whole(void **state)
{
    (void)state;
    static const char old_text[] =
        "{\"applications\":[{\"name\":\"text\",\"runtime_env\":{\"pip\":[\"a\"],\"env_vars\":{"
        "\"X\":\"1\"}},"
        "\"args\":{\"model\":\"m\",\"size\":1},"
        "\"deployments\":[{\"name\":\"Model\",\"user_config\":{\"t\":0.5,\"nested\":{\"k\":1},"
        "\"items\":[{\"name\":\"a\",\"v\":1},{\"name\":\"b\",\"v\":2}]}}]}],"
        "\"env_vars\":{\"A\":\"1\",\"B\":\"2\"},\"tags\":{\"team\":\"x\"},"
        "\"compute_config\":{\"head\":{\"cpus\":1}}}";
    static const char new_text[] =
        "{\"applications\":[{\"name\":\"text\",\"runtime_env\":{\"pip\":[\"a\"],\"env_vars\":{"
        "\"X\":\"2\"}},"
        "\"args\":{\"model\":\"m\",\"size\":2},"
        "\"deployments\":[{\"name\":\"Model\",\"user_config\":{\"t\":0.5,\"nested\":{\"k\":2},"
        "\"items\":[{\"name\":\"a\",\"v\":1},{\"name\":\"b\",\"v\":2}]}}]}],"
        "\"env_vars\":{\"A\":\"1\",\"B\":\"3\"},\"tags\":{\"team\":\"y\"},"
        "\"compute_config\":{\"head\":{\"cpus\":2}}}";
    struct change_list list = {0};
    diff_texts(old_text, new_text, &list);
    expect_change(&list, "applications[text].deployments[Model].user_config", CHANGE_MODIFIED);
    expect_change(&list, "applications[text].runtime_env", CHANGE_MODIFIED);
    expect_change(&list, "applications[text].args", CHANGE_MODIFIED);
    expect_change(&list, "env_vars", CHANGE_MODIFIED);
    expect_change(&list, "tags", CHANGE_MODIFIED);
    expect_change(&list, "compute_config", CHANGE_MODIFIED);
    expect_count(&list, 6);
    change_list_clear(&list);

    /* a list of named things inside user_config is data: its order matters */
    static const char reordered_items[] =
        "{\"applications\":[{\"name\":\"text\",\"runtime_env\":{\"pip\":[\"a\"],\"env_vars\":{"
        "\"X\":\"1\"}},"
        "\"args\":{\"model\":\"m\",\"size\":1},"
        "\"deployments\":[{\"name\":\"Model\",\"user_config\":{\"t\":0.5,\"nested\":{\"k\":1},"
        "\"items\":[{\"name\":\"b\",\"v\":2},{\"name\":\"a\",\"v\":1}]}}]}],"
        "\"env_vars\":{\"A\":\"1\",\"B\":\"2\"},\"tags\":{\"team\":\"x\"},"
        "\"compute_config\":{\"head\":{\"cpus\":1}}}";
    diff_texts(old_text, reordered_items, &list);
    expect_count(&list, 1);
    expect_change(&list, "applications[text].deployments[Model].user_config", CHANGE_MODIFIED);
    change_list_clear(&list);

    /* user_config changing type, and from a value to null, is one change */
    diff_texts("{\"user_config\":{\"a\":1}}", "{\"user_config\":[1]}", &list);
    expect_count(&list, 1);
    expect_change(&list, "user_config", CHANGE_MODIFIED);
    change_list_clear(&list);
    diff_texts("{\"user_config\":{\"a\":1}}", "{\"user_config\":null}", &list);
    expect_count(&list, 1);
    expect_change(&list, "user_config", CHANGE_MODIFIED);
    change_list_clear(&list);
}

static void test_plain_lists_and_scalars(void **state)
{
    (void)state;
    struct change_list list = {0};
    /* a list of strings is compared whole, order included */
    diff_texts("{\"excludes\":[\"a\",\"b\"]}", "{\"excludes\":[\"b\",\"a\"]}", &list);
    expect_count(&list, 1);
    expect_change(&list, "excludes", CHANGE_MODIFIED);
    change_list_clear(&list);
    /* a name that becomes a mapping */
    diff_texts("{\"compute_config\":\"cpu-small\"}", "{\"compute_config\":{\"cpus\":4}}", &list);
    expect_count(&list, 1);
    expect_change(&list, "compute_config", CHANGE_MODIFIED);
    change_list_clear(&list);
    /* numbers: 1 and 1.0 are different JSON, but the decoder never writes 1.0 */
    diff_texts("{\"a\":{\"b\":{\"c\":1}}}", "{\"a\":{\"b\":{\"c\":2}}}", &list);
    expect_count(&list, 1);
    expect_change(&list, "a.b.c", CHANGE_MODIFIED);
    change_list_clear(&list);
    /* a list of mappings without names is not a named list */
    diff_texts("{\"l\":[{\"x\":1},{\"x\":2}]}", "{\"l\":[{\"x\":2},{\"x\":1}]}", &list);
    expect_count(&list, 1);
    expect_change(&list, "l", CHANGE_MODIFIED);
    change_list_clear(&list);
}

static void test_process_backend_entries_by_name(void **state)
{
    (void)state;
    static const char old_text[] =
        "{\"backend\":{\"type\":\"process\",\"process\":{\"applications\":["
        "{\"name\":\"a\",\"command\":[\"srv\",\"--x\"],\"env\":{\"K\":\"1\"}},"
        "{\"name\":\"b\",\"command\":[\"srv\"],\"health_path\":\"/h\"}]}}}";
    static const char new_text[] =
        "{\"backend\":{\"type\":\"process\",\"process\":{\"applications\":["
        "{\"name\":\"b\",\"command\":[\"srv\"],\"health_path\":\"/healthz\"},"
        "{\"name\":\"a\",\"command\":[\"srv\",\"--y\"],\"env\":{\"K\":\"2\"}}]}}}";
    struct change_list list = {0};
    diff_texts(old_text, new_text, &list);
    expect_count(&list, 3);
    expect_change(&list, "backend.process.applications[a].command", CHANGE_MODIFIED);
    expect_change(&list, "backend.process.applications[a].env", CHANGE_MODIFIED);
    expect_change(&list, "backend.process.applications[b].health_path", CHANGE_MODIFIED);
    change_list_clear(&list);
}

/* The same through the spec parser: the paths the planner shows. */
static void test_specs_diff_on_version_doc(void **state)
{
    (void)state;
    static const char one[] = "name: svc\n"
                              "applications:\n"
                              "  - name: text\n"
                              "    import_path: app:main\n"
                              "    deployments:\n"
                              "      - name: Model\n"
                              "        num_replicas: 2\n"
                              "        user_config: {temperature: 0.5}\n"
                              "      - name: Tokenizer\n"
                              "backend:\n"
                              "  process:\n"
                              "    applications:\n"
                              "      - name: text\n"
                              "        command: [model-server]\n"
                              "        ingress: Model\n";
    static const char two[] = "name: svc\n"
                              "rollout: {canary_percent: 10}\n"
                              "applications:\n"
                              "  - name: text\n"
                              "    import_path: app:main\n"
                              "    deployments:\n"
                              "      - name: Tokenizer\n"
                              "      - name: Model\n"
                              "        num_replicas: 3\n"
                              "        user_config: {temperature: 0.5}\n"
                              "backend:\n"
                              "  process:\n"
                              "    applications:\n"
                              "      - name: text\n"
                              "        ingress: Model\n"
                              "        command: [model-server]\n";
    struct service_spec *a = parse_ok(one);
    struct service_spec *b = parse_ok(two);
    struct change_list list = {0};
    json_t *version_a = spec_version_doc(a), *version_b = spec_version_doc(b);
    assert_int_equal(diff_documents(version_a, version_b, &list), 0);
    json_decref(version_a);
    json_decref(version_b);
    expect_count(&list, 1);
    expect_change(&list, "applications[text].deployments[Model].num_replicas", CHANGE_MODIFIED);
    change_list_clear(&list);
    change_list_clear(&list); /* clearing twice is harmless */
    spec_free(a);
    spec_free(b);
}

static void test_change_kind_names(void **state)
{
    (void)state;
    assert_string_equal(change_kind_name(CHANGE_MODIFIED), "modified");
    assert_string_equal(change_kind_name(CHANGE_ADDED), "added");
    assert_string_equal(change_kind_name(CHANGE_REMOVED), "removed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_documents_have_no_changes),
        cmocka_unit_test(test_named_lists_matched_by_name_not_position),
        cmocka_unit_test(test_added_and_removed),
        cmocka_unit_test(test_free_form_values_compared_whole),
        cmocka_unit_test(test_plain_lists_and_scalars),
        cmocka_unit_test(test_process_backend_entries_by_name),
        cmocka_unit_test(test_specs_diff_on_version_doc),
        cmocka_unit_test(test_change_kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
