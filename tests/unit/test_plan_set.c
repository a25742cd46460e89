/* tests for reconciler/plan_set.c: plans for every service of two snapshots,
 * read from real directories: an invalid file is never a deletion */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "plan_set.h"
#include "unit_helpers.h"

static struct policy_set policies;

static int setup(void **state)
{
    (void)state;
    memset(&policies, 0, sizeof(policies));
    assert_int_equal(policy_set_add(&policies, load_shipped_policy("production")), 0);
    assert_int_equal(policy_set_add(&policies, load_shipped_policy("development")), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    policy_set_clear(&policies);
    return 0;
}

/* Temporary directories of spec files, removed after each test even when
 * it fails. */
static char made[4][256];
static size_t made_count;

static void dir_make(char *path, size_t size)
{
    assert_true(made_count < 4);
    const char *tmp = getenv("TMPDIR");
    snprintf(path, size, "%s/rolld-plan-set-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(path));
    snprintf(made[made_count++], sizeof(made[0]), "%s", path);
}

static void dir_write(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static int dirs_remove(void **state)
{
    (void)state;
    for (size_t i = 0; i < made_count; i++) {
        DIR *d = opendir(made[i]);
        if (!d)
            continue;
        struct dirent *entry;
        char path[4096];
        while ((entry = readdir(d))) {
            if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
                continue;
            snprintf(path, sizeof(path), "%s/%s", made[i], entry->d_name);
            unlink(path);
        }
        closedir(d);
        if (rmdir(made[i]) < 0)
            return -1;
    }
    made_count = 0;
    return 0;
}

static void load(const char *dir, struct snapshot *snapshot)
{
    struct diag diag = DIAG_INIT;
    assert_int_equal(source_dir_load(dir, snapshot, &diag), 0);
    assert_int_equal(diag.count, 0);
}

/* A valid spec of service `name`; extra goes at the top level. */
static const char *service(char *buf, size_t size, const char *name, int replicas,
                           const char *extra)
{
    snprintf(buf, size,
             "name: %s\n"
             "%s"
             "applications:\n"
             "  - name: app\n"
             "    import_path: app:main\n"
             "    deployments:\n"
             "      - name: Model\n"
             "        num_replicas: %d\n"
             "backend:\n"
             "  process:\n"
             "    applications:\n"
             "      - name: app\n"
             "        command: [model-server]\n",
             name, extra ? extra : "", replicas);
    return buf;
}

static const struct service_plan *plan_of(const struct service_plan *plans, size_t count,
                                          const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (!strcmp(plans[i].name, name))
            return &plans[i];
    fail_msg("no plan for %s", name);
    return NULL;
}

static void expect_action(const struct service_plan *plans, size_t count, const char *name,
                          enum plan_action action)
{
    const struct service_plan *plan = plan_of(plans, count, name);
    if (plan->action != action)
        fail_msg("%s: %s, expected %s", name, plan_action_name(plan->action),
                 plan_action_name(action));
}

static void test_every_action_across_two_snapshots(void **state)
{
    (void)state;
    char old_dir[256], new_dir[256], buf[2048];
    dir_make(old_dir, sizeof(old_dir));
    dir_make(new_dir, sizeof(new_dir));
    dir_write(old_dir, "same.yaml", service(buf, sizeof(buf), "same", 1, NULL));
    dir_write(old_dir, "scaled.yaml", service(buf, sizeof(buf), "scaled", 1, NULL));
    dir_write(old_dir, "image.yml", service(buf, sizeof(buf), "image", 1, NULL));
    dir_write(old_dir, "gone.yaml", service(buf, sizeof(buf), "gone", 1, NULL));
    dir_write(old_dir, "notes.txt", "not a spec");
    dir_write(new_dir, "same.yaml", service(buf, sizeof(buf), "same", 1, NULL));
    dir_write(new_dir, "scaled.yaml", service(buf, sizeof(buf), "scaled", 3, NULL));
    dir_write(new_dir, "image.yml", service(buf, sizeof(buf), "image", 1, "image_uri: r/x:2\n"));
    dir_write(new_dir, "fresh.yaml", service(buf, sizeof(buf), "fresh", 1, NULL));
    dir_write(new_dir, ".hidden.yaml", "this: [is not read");

    struct snapshot next, current;
    load(new_dir, &next);
    load(old_dir, &current);
    assert_int_equal(next.count, 4);
    struct service_plan *plans;
    size_t count;
    assert_int_equal(plan_set_compute(&next, &current, &policies, &plans, &count), 0);
    assert_int_equal(count, 5);
    /* sorted by name */
    static const char *const order[] = {"fresh", "gone", "image", "same", "scaled"};
    for (size_t i = 0; i < count; i++)
        assert_string_equal(plans[i].name, order[i]);
    expect_action(plans, count, "fresh", PLAN_CREATE);
    expect_action(plans, count, "gone", PLAN_DELETE);
    expect_action(plans, count, "image", PLAN_CANARY);
    expect_action(plans, count, "same", PLAN_NONE);
    expect_action(plans, count, "scaled", PLAN_IN_PLACE_LIGHTWEIGHT);
    assert_non_null(strstr(plan_of(plans, count, "gone")->file, "gone.yaml"));
    plan_set_free(plans, count);

    /* against nothing, everything is created */
    assert_int_equal(plan_set_compute(&next, NULL, &policies, &plans, &count), 0);
    assert_int_equal(count, 4);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(plans[i].action, PLAN_CREATE);
    plan_set_free(plans, count);

    snapshot_clear(&next);
    snapshot_clear(&current);
}

static void test_invalid_next_spec_is_invalid_not_delete(void **state)
{
    (void)state;
    char old_dir[256], new_dir[256], buf[2048];
    dir_make(old_dir, sizeof(old_dir));
    dir_make(new_dir, sizeof(new_dir));
    dir_write(old_dir, "broken.yaml", service(buf, sizeof(buf), "broken", 2, NULL));
    dir_write(old_dir, "other.yaml", service(buf, sizeof(buf), "other", 1, NULL));
    /* the name is readable, the rest is not valid */
    dir_write(new_dir, "broken.yaml",
              "name: broken\n"
              "applications:\n"
              "  - name: app\n"
              "    import_path: app:main\n"
              "    deployments:\n"
              "      - name: Model\n"
              "        num_replicas: -1\n");
    dir_write(new_dir, "other.yaml", service(buf, sizeof(buf), "other", 4, NULL));

    struct snapshot next, current;
    load(new_dir, &next);
    load(old_dir, &current);
    struct service_plan *plans;
    size_t count;
    assert_int_equal(plan_set_compute(&next, &current, &policies, &plans, &count), 0);
    assert_int_equal(count, 2);
    const struct service_plan *broken = plan_of(plans, count, "broken");
    assert_int_equal(broken->action, PLAN_INVALID);
    assert_true(broken->errors.count >= 1);
    assert_non_null(
        diag_find(&broken->errors, "applications[app].deployments[Model].num_replicas"));
    assert_non_null(strstr(broken->file, "broken.yaml"));
    /* the other service is planned all the same */
    expect_action(plans, count, "other", PLAN_IN_PLACE_LIGHTWEIGHT);
    for (size_t i = 0; i < count; i++)
        assert_int_not_equal(plans[i].action, PLAN_DELETE);
    plan_set_free(plans, count);
    snapshot_clear(&next);
    snapshot_clear(&current);
}

/* A file so broken that its name cannot be read is still the file of the
 * service that ran from it: invalid, not deleted. */
static void test_unreadable_next_spec_is_not_a_deletion(void **state)
{
    (void)state;
    char old_dir[256], new_dir[256], buf[2048];
    dir_make(old_dir, sizeof(old_dir));
    dir_make(new_dir, sizeof(new_dir));
    dir_write(old_dir, "chat.yaml", service(buf, sizeof(buf), "chat", 2, NULL));
    dir_write(old_dir, "other.yaml", service(buf, sizeof(buf), "other", 1, NULL));
    /* a YAML syntax error: nothing of it can be read */
    dir_write(new_dir, "chat.yaml",
              "name: chat\n"
              "applications: [\n");
    dir_write(new_dir, "other.yaml", service(buf, sizeof(buf), "other", 1, NULL));

    /* snapshots are read from directories given with different spellings */
    char old_path[300];
    snprintf(old_path, sizeof(old_path), "%s/", old_dir);
    struct snapshot next, current;
    load(new_dir, &next);
    load(old_path, &current);
    struct service_plan *plans;
    size_t count;
    assert_int_equal(plan_set_compute(&next, &current, &policies, &plans, &count), 0);
    for (size_t i = 0; i < count; i++)
        if (plans[i].action == PLAN_DELETE)
            fail_msg("%s (%s) planned as delete", plans[i].name, plans[i].file);
    assert_int_equal(count, 2);
    const struct service_plan *chat = plan_of(plans, count, "chat");
    assert_int_equal(chat->action, PLAN_INVALID);
    assert_non_null(strstr(chat->errors.entries[0].message, "invalid YAML"));
    expect_action(plans, count, "other", PLAN_NONE);
    plan_set_free(plans, count);

    /* without a running version there is nothing to keep: invalid, unnamed */
    assert_int_equal(plan_set_compute(&next, NULL, &policies, &plans, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(plans[0].action, PLAN_INVALID);
    assert_string_equal(plans[0].name, "(unknown)");
    plan_set_free(plans, count);

    snapshot_clear(&next);
    snapshot_clear(&current);
}

static void test_two_files_with_the_same_service_name(void **state)
{
    (void)state;
    char dir[256], buf[2048];
    dir_make(dir, sizeof(dir));
    dir_write(dir, "a.yaml", service(buf, sizeof(buf), "chat", 1, NULL));
    dir_write(dir, "b.yaml", service(buf, sizeof(buf), "chat", 2, NULL));
    dir_write(dir, "c.yaml", service(buf, sizeof(buf), "solo", 1, NULL));
    struct snapshot next;
    load(dir, &next);
    assert_int_equal(next.count, 3);
    /* the first file in name order wins; the second is refused */
    assert_non_null(next.entries[0].spec);
    assert_null(next.entries[1].spec);
    const struct diag_entry *e = &next.entries[1].errors.entries[0];
    assert_int_equal(next.entries[1].errors.count, 1);
    assert_string_equal(e->field, "name");
    assert_non_null(strstr(e->message, "service 'chat' is already defined in"));
    assert_non_null(strstr(e->message, "a.yaml"));
    assert_non_null(strstr(e->message, "give each service its own name"));

    struct service_plan *plans;
    size_t count;
    assert_int_equal(plan_set_compute(&next, NULL, &policies, &plans, &count), 0);
    assert_int_equal(count, 3);
    /* sorted by name, then file */
    assert_string_equal(plans[0].name, "chat");
    assert_int_equal(plans[0].action, PLAN_CREATE);
    assert_non_null(strstr(plans[0].file, "a.yaml"));
    assert_string_equal(plans[1].name, "chat");
    assert_int_equal(plans[1].action, PLAN_INVALID);
    assert_non_null(strstr(plans[1].file, "b.yaml"));
    assert_string_equal(plans[2].name, "solo");
    assert_int_equal(plans[2].action, PLAN_CREATE);
    plan_set_free(plans, count);
    snapshot_clear(&next);
}

static void reload(const char *dir, struct snapshot *previous, struct snapshot *next)
{
    struct diag diag = DIAG_INIT;
    assert_int_equal(source_dir_reload(dir, previous, next, &diag), 0);
    assert_int_equal(diag.count, 0);
}

/* Waits until the files of dir are older than the window in which
 * source_dir_reload does not trust a file's times (100 ms): the test needs
 * files that are old, not an event to happen. */
static void age_files(void)
{
    struct timespec start, now;
    clock_gettime(CLOCK_REALTIME, &start);
    do {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        clock_gettime(CLOCK_REALTIME, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < 150);
}

/* source_dir_reload keeps the parsed entries of files that did not change
 * (the same spec object moves over), parses the changed, new and renamed
 * ones, and never keeps a refusal that no longer holds. */
static void test_reload_parses_only_what_changed(void **state)
{
    (void)state;
    char dir[256], buf[2048], path[4096], aside[4096];
    dir_make(dir, sizeof(dir));
    dir_write(dir, "a.yaml", service(buf, sizeof(buf), "alpha", 1, NULL));
    dir_write(dir, "b.yaml", service(buf, sizeof(buf), "beta", 1, NULL));
    dir_write(dir, "c.yaml", service(buf, sizeof(buf), "beta", 2, NULL)); /* refused */
    dir_write(dir, "d.yaml", service(buf, sizeof(buf), "delta", 1, NULL));
    struct snapshot first, second, third, fourth;
    age_files();
    load(dir, &first);
    assert_int_equal(first.count, 4);
    assert_null(first.entries[2].spec);
    const struct service_spec *alpha = first.entries[0].spec, *delta = first.entries[3].spec;

    /* d.yaml saved atomically with new content, b.yaml removed (c.yaml's
     * refusal must go), e.yaml added */
    dir_write(dir, "d.new", service(buf, sizeof(buf), "delta", 3, NULL));
    snprintf(aside, sizeof(aside), "%s/d.new", dir);
    snprintf(path, sizeof(path), "%s/d.yaml", dir);
    assert_int_equal(rename(aside, path), 0);
    snprintf(path, sizeof(path), "%s/b.yaml", dir);
    assert_int_equal(unlink(path), 0);
    dir_write(dir, "e.yaml", service(buf, sizeof(buf), "echo", 1, NULL));
    reload(dir, &first, &second);
    assert_int_equal(second.count, 4);
    assert_ptr_equal(second.entries[0].spec, alpha); /* a.yaml: kept as parsed */
    assert_null(first.entries[0].spec);              /* and taken from first */
    assert_non_null(second.entries[1].spec);         /* c.yaml: beta now */
    assert_string_equal(second.entries[1].spec->name, "beta");
    assert_int_equal(second.entries[1].errors.count, 0);
    assert_ptr_not_equal(second.entries[2].spec, delta); /* d.yaml: read again */
    assert_int_equal(second.entries[2].spec->applications[0].deployments[0].num_replicas, 3);
    assert_string_equal(second.entries[3].spec->name, "echo");
    assert_non_null(snapshot_find(&second, "echo"));
    snapshot_clear(&first);

    /* edits in place that keep the size, faster than the file times tick:
     * an entry read right after its file changed is read again */
    dir_write(dir, "c.yaml", service(buf, sizeof(buf), "beta", 5, NULL));
    reload(dir, &second, &third);
    assert_int_equal(third.entries[1].spec->applications[0].deployments[0].num_replicas, 5);
    dir_write(dir, "c.yaml", service(buf, sizeof(buf), "beta", 6, NULL));
    reload(dir, &third, &fourth);
    assert_int_equal(fourth.entries[1].spec->applications[0].deployments[0].num_replicas, 6);
    assert_ptr_equal(fourth.entries[0].spec, alpha);
    snapshot_clear(&second);
    snapshot_clear(&third);
    snapshot_clear(&fourth);
}

static void test_policy_per_service(void **state)
{
    (void)state;
    char old_dir[256], new_dir[256], buf[2048];
    dir_make(old_dir, sizeof(old_dir));
    dir_make(new_dir, sizeof(new_dir));
    dir_write(old_dir, "dev.yaml", service(buf, sizeof(buf), "dev", 1, "project: p1\n"));
    dir_write(old_dir, "prod.yaml", service(buf, sizeof(buf), "prod", 1, "project: p1\n"));
    dir_write(old_dir, "odd.yaml", service(buf, sizeof(buf), "odd", 1, NULL));
    /* the same heavyweight change under two policies, and an unknown policy */
    dir_write(new_dir, "dev.yaml",
              service(buf, sizeof(buf), "dev", 1, "project: p2\nrollout: {policy: development}\n"));
    dir_write(new_dir, "prod.yaml", service(buf, sizeof(buf), "prod", 1, "project: p2\n"));
    dir_write(new_dir, "odd.yaml",
              service(buf, sizeof(buf), "odd", 1, "rollout: {policy: staging}\n"));
    struct snapshot next, current;
    load(new_dir, &next);
    load(old_dir, &current);
    struct service_plan *plans;
    size_t count;
    assert_int_equal(plan_set_compute(&next, &current, &policies, &plans, &count), 0);
    expect_action(plans, count, "dev", PLAN_IN_PLACE_HEAVYWEIGHT);
    expect_action(plans, count, "prod", PLAN_CANARY);
    expect_action(plans, count, "odd", PLAN_INVALID);
    const struct service_plan *odd = plan_of(plans, count, "odd");
    assert_non_null(strstr(odd->errors.entries[0].message, "no policy named 'staging'"));
    assert_string_equal(plan_of(plans, count, "prod")->policy_name, "production");
    assert_ptr_equal(plan_set_policy_for(&policies, next.entries[0].spec),
                     policy_set_find(&policies, "development"));
    plan_set_free(plans, count);
    snapshot_clear(&next);
    snapshot_clear(&current);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_every_action_across_two_snapshots, dirs_remove),
        cmocka_unit_test_teardown(test_invalid_next_spec_is_invalid_not_delete, dirs_remove),
        cmocka_unit_test_teardown(test_unreadable_next_spec_is_not_a_deletion, dirs_remove),
        cmocka_unit_test_teardown(test_two_files_with_the_same_service_name, dirs_remove),
        cmocka_unit_test_teardown(test_policy_per_service, dirs_remove),
        cmocka_unit_test_teardown(test_reload_parses_only_what_changed, dirs_remove),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
