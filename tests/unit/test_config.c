/* tests for reconciler/config.c: the shipped example, defaults, relative
 * paths, and refused configs with their exact place */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "unit_helpers.h"

static int parse(const char *text, struct agent_config *c, struct diag *diag)
{
    config_init(c);
    return config_parse(text, strlen(text), "test.yaml", c, diag);
}

static void test_shipped_example(void **state)
{
    (void)state;
    size_t length;
    char *text = read_source_file("examples/config/rolld.yaml", &length);
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    config_init(&c);
    int r = config_parse(text, length, "/etc/rolld/rolld.yaml", &c, &diag);
    print_diag(&diag);
    assert_int_equal(r, 0);
    assert_int_equal(diag.count, 0);
    assert_string_equal(c.name, "host-a");
    assert_string_equal(c.state_dir, "/var/lib/rolld");
    assert_int_equal(c.source_kind, SOURCE_GIT);
    assert_string_equal(c.git_url, "file:///srv/git/models.git");
    assert_string_equal(c.git_branch, "main");
    assert_string_equal(c.git_directory, "services");
    assert_int_equal(c.fetch_interval_s, 30);
    assert_true(c.status_git);
    assert_string_equal(c.status_branch, "rolld/status");
    assert_string_equal(c.author_email, "rolld@host-a.example.com");
    assert_true(c.revert_branches);
    assert_string_equal(c.allowed_signers, "/etc/rolld/allowed_signers");
    assert_null(c.gpg_keyring);
    assert_true(c.inventory.declared);
    assert_true(c.inventory.cpus == 16);
    assert_int_equal(c.inventory.memory, 64LL << 30);
    assert_int_equal(c.inventory.gpu_count, 4);
    assert_int_equal(c.inventory.gpus[3], 3);
    assert_string_equal(c.haproxy_binary, "/usr/sbin/haproxy");
    assert_int_equal(c.port_min, 20000);
    assert_int_equal(c.port_max, 29999);
    assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
    assert_int_equal(c.log_format, LOG_FORMAT_TEXT);
    config_clear(&c);
    diag_clear(&diag);
    free(text);
}

static void test_minimal_directory_source_and_defaults(void **state)
{
    (void)state;
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    assert_int_equal(parse("source:\n  directory: specs\nlog:\n  format: json\n", &c, &diag), 0);
    assert_int_equal(diag.count, 0);
    assert_int_equal(c.source_kind, SOURCE_DIRECTORY);
    /* relative to the file's directory; "test.yaml" has none */
    assert_string_equal(c.source_path, "specs");
    assert_false(c.status_git);
    assert_false(c.inventory.declared);
    assert_null(c.haproxy_binary); /* NULL: the default */
    assert_null(c.metrics_listen);
    assert_int_equal(c.port_min, 20000);
    assert_int_equal(c.debounce_ms, 30);
    assert_int_equal(c.log_format, LOG_FORMAT_JSON);
    config_clear(&c);
}

static void test_relative_paths_follow_the_file(void **state)
{
    (void)state;
    static const char text[] = "state_dir: state\n"
                               "source:\n  git:\n    url: ../origin.git\n    ssh_key: keys/id\n"
                               "signing:\n  gpg_keyring: /abs/keyring.gpg\n";
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    config_init(&c);
    assert_int_equal(config_parse(text, strlen(text), "/srv/conf/rolld.yaml", &c, &diag), 0);
    assert_string_equal(c.state_dir, "/srv/conf/state");
    assert_string_equal(c.git_url, "/srv/conf/../origin.git");
    assert_string_equal(c.ssh_key, "/srv/conf/keys/id");
    assert_string_equal(c.gpg_keyring, "/abs/keyring.gpg");
    assert_string_equal(c.git_branch, "main");
    assert_true(c.status_git); /* on by default for a Git source */
    config_clear(&c);
}

static void test_typo_gets_a_suggestion_at_its_place(void **state)
{
    (void)state;
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    assert_int_equal(parse("source:\n  directory: /s\ninventroy:\n  cpus: 4\n", &c, &diag),
                     -EINVAL);
    EXPECT_DIAG(&diag, "inventroy", 3, 1, "did you mean 'inventory'?");
    config_clear(&c);
    diag_clear(&diag);
}

static void test_refused_values_name_their_field(void **state)
{
    (void)state;
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    static const char text[] = "source:\n  directory: /s\n"
                               "inventory:\n  memory: lots\n  gpus: [0, 1, 1]\n"
                               "router:\n  ports: 80-90\n"
                               "listen:\n  metrics: nowhere\n";
    assert_int_equal(parse(text, &c, &diag), -EINVAL);
    EXPECT_DIAG(&diag, "inventory.memory", 4, 11, "not an amount of memory");
    EXPECT_DIAG(&diag, "inventory.gpus", 5, 16, "GPU 1 is listed twice");
    EXPECT_DIAG(&diag, "router.ports", 7, 10, "1024-65535");
    EXPECT_DIAG(&diag, "listen.metrics", 9, 12, "HOST:PORT");
    config_clear(&c);
    diag_clear(&diag);
}

static void test_source_must_be_one_thing(void **state)
{
    (void)state;
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    assert_int_equal(parse("source:\n  directory: /s\n  git:\n    url: /o.git\n", &c, &diag),
                     -EINVAL);
    EXPECT_DIAG(&diag, "source", 2, 3, "exactly one of");
    config_clear(&c);
    diag_clear(&diag);
    assert_int_equal(parse("name: a\n", &c, &diag), -EINVAL);
    EXPECT_DIAG(&diag, "source", 1, 1, "required");
    config_clear(&c);
    diag_clear(&diag);
}

static void test_status_branch_rules(void **state)
{
    (void)state;
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    assert_int_equal(parse("source:\n  directory: /s\nstatus:\n  git: true\n", &c, &diag), -EINVAL);
    EXPECT_DIAG(&diag, "status.git", 4, 8, "only when the source is a Git repository");
    config_clear(&c);
    diag_clear(&diag);
    assert_int_equal(parse("source:\n  git:\n    url: /o.git\n    branch: live\n"
                           "status:\n  branch: live\n",
                           &c, &diag),
                     -EINVAL);
    EXPECT_DIAG(&diag, "status.branch", 6, 11, "must not be the spec branch");
    config_clear(&c);
    diag_clear(&diag);
}

static void test_memory_and_gpu_list_parsers(void **state)
{
    (void)state;
    long long bytes;
    assert_int_equal(config_parse_memory("512Mi", &bytes), 0);
    assert_int_equal(bytes, 512LL << 20);
    assert_int_equal(config_parse_memory("2G", &bytes), 0);
    assert_int_equal(bytes, 2000000000LL);
    assert_int_equal(config_parse_memory("1073741824", &bytes), 0);
    assert_int_equal(bytes, 1LL << 30);
    assert_int_equal(config_parse_memory("1.5Gi", &bytes), 0);
    assert_int_equal(bytes, 3LL << 29);
    assert_int_equal(config_parse_memory("12GB", &bytes), -EINVAL);
    assert_int_equal(config_parse_memory("-1", &bytes), -EINVAL);
    struct inventory inv = {0};
    assert_int_equal(config_parse_gpu_list("0,2,3", &inv), 0);
    assert_int_equal(inv.gpu_count, 3);
    assert_int_equal(inv.gpus[1], 2);
    assert_int_equal(config_parse_gpu_list("0,,1", &inv), -EINVAL);
    assert_int_equal(config_parse_gpu_list("a", &inv), -EINVAL);
}

static void test_defaults_count_in_cross_checks(void **state)
{
    (void)state;
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    /* the default status branch is rolld/status: a spec branch of that name collides */
    assert_int_equal(parse("source:\n  git:\n    url: /o.git\n    branch: rolld/status\n", &c,
                           &diag),
                     -EINVAL);
    EXPECT_DIAG(&diag, "source.git.branch", 4, 13, "must not be the spec branch");
    config_clear(&c);
    diag_clear(&diag);
    /* every problem at once: a bad name does not hide an empty source */
    assert_int_equal(parse("name: Bad\nsource: {}\n", &c, &diag), -EINVAL);
    assert_non_null(diag_find(&diag, "name"));
    EXPECT_DIAG(&diag, "source", 2, 9, "exactly one of");
    config_clear(&c);
    diag_clear(&diag);
}

static void test_loose_numbers_are_refused(void **state)
{
    (void)state;
    long long bytes;
    int low, high;
    assert_int_equal(config_parse_memory("0x10Gi", &bytes), -EINVAL);
    assert_int_equal(config_parse_memory("1e3", &bytes), -EINVAL);
    assert_int_equal(config_parse_memory("1.2.3Gi", &bytes), -EINVAL);
    assert_int_equal(config_parse_ports("+2000- 3000", &low, &high), -EINVAL);
    assert_int_equal(config_parse_ports("2000-3000x", &low, &high), -EINVAL);
    assert_int_equal(config_parse_ports("1023-2000", &low, &high), -EINVAL);
    assert_int_equal(config_parse_ports("3000-2000", &low, &high), -EINVAL);
    assert_int_equal(config_parse_ports("2000-3000", &low, &high), 0);
    assert_int_equal(low, 2000);
    assert_int_equal(high, 3000);
    struct agent_config c;
    struct diag diag = DIAG_INIT;
    assert_int_equal(parse("source:\n  directory: /s\nlisten:\n  metrics: host:80x\n", &c, &diag),
                     -EINVAL);
    EXPECT_DIAG(&diag, "listen.metrics", 4, 12, "HOST:PORT");
    config_clear(&c);
    diag_clear(&diag);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_example),
        cmocka_unit_test(test_minimal_directory_source_and_defaults),
        cmocka_unit_test(test_relative_paths_follow_the_file),
        cmocka_unit_test(test_typo_gets_a_suggestion_at_its_place),
        cmocka_unit_test(test_refused_values_name_their_field),
        cmocka_unit_test(test_source_must_be_one_thing),
        cmocka_unit_test(test_status_branch_rules),
        cmocka_unit_test(test_memory_and_gpu_list_parsers),
        cmocka_unit_test(test_defaults_count_in_cross_checks),
        cmocka_unit_test(test_loose_numbers_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
