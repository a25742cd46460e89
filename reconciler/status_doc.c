#include "status_doc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "error.h"
#include "status.h"
#include "text_buffer.h"
#include "yaml_tree.h"

/* The Last error cell holds this many characters, "…" included; the section
 * below the table has the whole text. */
#define STATUS_CELL_MAX_CHARS 120
/* Version ids and commits are shown by their first characters, as git does. */
#define STATUS_SHORT_ID_CHARS 8

static const char *doc_string(const json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value && *value ? value : NULL;
}

static bool is_word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* Bytes of the first max_chars UTF-8 characters of s[0..length). */
static size_t utf8_prefix(const char *s, size_t length, size_t max_chars)
{
    size_t chars = 0;
    for (size_t i = 0; i < length; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == max_chars)
            return i;
    }
    return length;
}

static size_t utf8_length(const char *s, size_t length)
{
    size_t chars = 0;
    for (size_t i = 0; i < length; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return chars;
}

/* s[0..length) as inline markdown text that shows as written, also inside a
 * table cell: a line break becomes <br>, markdown punctuation is
 * backslash-escaped ('|' included, so it does not end the cell), and an
 * underscore inside a word stays as it is (it cannot start emphasis there). */
static void escape_inline(struct text *out, const char *s, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\r':
            if (i + 1 < length && s[i + 1] == '\n')
                break; /* \r\n is one line break */
            text_puts(out, "<br>");
            break;
        case '\n':
            text_puts(out, "<br>");
            break;
        case '\\':
        case '`':
        case '*':
        case '[':
        case ']':
        case '<':
        case '>':
        case '|':
        case '~':
        case '&':
            text_putc(out, '\\');
            text_putc(out, (char)c);
            break;
        case '_':
            if (!(i > 0 && i + 1 < length && is_word_byte((unsigned char)s[i - 1]) &&
                  is_word_byte((unsigned char)s[i + 1])))
                text_putc(out, '\\');
            text_putc(out, '_');
            break;
        default:
            text_putc(out, c < 0x20 || c == 0x7F ? ' ' : (char)c);
        }
    }
}

static void escape_text(struct text *out, const char *s)
{
    escape_inline(out, s, strlen(s));
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The first max_chars characters of s without the blanks around it, escaped,
 * with "…" when it was cut. */
static void escape_cut(struct text *out, const char *s, size_t max_chars)
{
    while (is_space(*s))
        s++;
    size_t length = strlen(s);
    while (length > 0 && is_space(s[length - 1]))
        length--;
    if (utf8_length(s, length) <= max_chars) {
        escape_inline(out, s, length);
        return;
    }
    size_t keep = utf8_prefix(s, length, max_chars - 1);
    while (keep > 0 && is_space(s[keep - 1]))
        keep--;
    escape_inline(out, s, keep);
    text_puts(out, "…");
}

static size_t longest_backtick_run(const char *s)
{
    size_t longest = 0, run = 0;
    for (const char *p = s; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    return longest;
}

/* s as a code span: fenced by more backticks than any run inside it. */
static void code_span(struct text *out, const char *s)
{
    size_t longest = longest_backtick_run(s);
    bool pad = *s == '`' || (*s && s[strlen(s) - 1] == '`') || *s == ' ';
    for (size_t i = 0; i <= longest; i++)
        text_putc(out, '`');
    if (pad)
        text_putc(out, ' ');
    for (const char *p = s; *p; p++)
        text_putc(out, (unsigned char)*p < 0x20 || *p == 0x7F ? ' ' : *p);
    if (pad)
        text_putc(out, ' ');
    for (size_t i = 0; i <= longest; i++)
        text_putc(out, '`');
}

/* s as a fenced code block: shown line by line, whatever it holds. */
static void fenced_block(struct text *out, const char *s)
{
    size_t longest = longest_backtick_run(s);
    size_t fence = longest >= 3 ? longest + 1 : 3;
    for (size_t i = 0; i < fence; i++)
        text_putc(out, '`');
    text_putc(out, '\n');
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\r' && p[1] == '\n')
            continue;
        if (c == '\r')
            c = '\n';
        text_putc(out, c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7F) ? (char)c : ' ');
    }
    if (!*s || s[strlen(s) - 1] != '\n')
        text_putc(out, '\n');
    for (size_t i = 0; i < fence; i++)
        text_putc(out, '`');
    text_putc(out, '\n');
}

static void short_id(struct text *out, const char *id)
{
    size_t length = strlen(id);
    escape_inline(out, id, utf8_prefix(id, length, STATUS_SHORT_ID_CHARS));
}

/* "v2 (a1b2c3d4, commit 0123abcd)": version_name, the version id and the
 * spec commit, each when known; "-" for no version. */
static void version_text(struct text *out, const json_t *side)
{
    if (!json_is_object(side)) {
        text_putc(out, '-');
        return;
    }
    const char *name = doc_string(side, "version_name");
    const char *version = doc_string(side, "version");
    const char *commit = doc_string(side, "commit");
    bool open = false;
    if (name && (!version || strcmp(name, version))) {
        escape_text(out, name);
        if (version) {
            text_puts(out, " (");
            short_id(out, version);
            open = true;
        }
    } else if (version) {
        short_id(out, version);
    } else {
        text_puts(out, "?");
    }
    if (commit) {
        text_puts(out, open ? ", commit " : " (commit ");
        short_id(out, commit);
        open = true;
    }
    if (open)
        text_putc(out, ')');
}

static int traffic_percent(const json_t *doc, const char *side)
{
    json_t *value = json_object_get(json_object_get(doc, "traffic"), side);
    if (!json_is_integer(value))
        return -1;
    json_int_t percent = json_integer_value(value);
    return percent < 0 ? 0 : percent > 100 ? 100 : (int)percent;
}

static bool has_rollout(const json_t *doc)
{
    return json_is_object(json_object_get(doc, "rollout")) ||
           json_is_object(json_object_get(doc, "canary"));
}

static void traffic_text(struct text *out, const json_t *doc)
{
    int canary = traffic_percent(doc, "canary");
    if (has_rollout(doc) || canary > 0) {
        char bar[64];
        status_traffic_bar(canary < 0 ? 0 : canary, bar, sizeof(bar));
        text_printf(out, "`%s %3d%%` canary", bar, canary < 0 ? 0 : canary);
        return;
    }
    int primary = traffic_percent(doc, "primary");
    if (primary == 0)
        text_puts(out, "no traffic");
    else
        text_printf(out, "%d%% primary", primary < 0 ? 100 : primary);
}

static void error_cell(struct text *out, const json_t *doc)
{
    const char *spec_error = doc_string(doc, "spec_error");
    const char *last_error = doc_string(doc, "last_error");
    if (spec_error) {
        char *text;
        if (asprintf(&text, "spec error: %s", spec_error) < 0) {
            out->failed = true;
            return;
        }
        escape_cut(out, text, STATUS_CELL_MAX_CHARS);
        free(text);
    } else if (last_error) {
        escape_cut(out, last_error, STATUS_CELL_MAX_CHARS);
    } else {
        text_putc(out, '-');
    }
}

static bool needs_section(const json_t *doc)
{
    json_t *source = json_object_get(doc, "source");
    return has_rollout(doc) || doc_string(doc, "last_error") || doc_string(doc, "spec_error") ||
           doc_string(source, "fetch_error") ||
           json_is_object(json_object_get(source, "refused_commit")) ||
           doc_string(doc, "revert_branch");
}

static void rollout_lines(struct text *out, const json_t *doc)
{
    json_t *rollout = json_object_get(doc, "rollout");
    json_t *canary = json_object_get(doc, "canary"), *primary = json_object_get(doc, "primary");
    int share = traffic_percent(doc, "canary");
    text_puts(out, "- Rollout: ");
    version_text(out, canary);
    if (json_is_object(primary)) {
        text_puts(out, " replacing ");
        version_text(out, primary);
    }
    text_printf(out, "; the canary takes %d%% of traffic", share < 0 ? 0 : share);
    const char *started = doc_string(rollout, "started");
    if (started) {
        text_puts(out, "; started ");
        escape_text(out, started);
    }
    json_t *paused_at = json_object_get(rollout, "paused_at");
    json_t *pause = json_object_get(rollout, "canary_percent");
    if (json_is_integer(paused_at))
        text_printf(out, "; paused at %d%% (rollout.canary_percent)",
                    (int)json_integer_value(paused_at));
    else if (json_is_integer(pause) && json_integer_value(pause) < 100)
        text_printf(out, "; pauses at %d%% (rollout.canary_percent)",
                    (int)json_integer_value(pause));
    text_puts(out, ".\n");

    json_t *gate = json_object_get(rollout, "gate");
    if (json_is_object(gate)) {
        int percent = (int)json_integer_value(json_object_get(gate, "percent"));
        const char *release = doc_string(gate, "release");
        if (json_is_true(json_object_get(gate, "released")))
            text_printf(out, "- Approval gate %d%% released", percent);
        else if (share >= percent)
            text_printf(out, "- Held at the approval gate %d%%", percent);
        else
            text_printf(out, "- Approval gate at %d%%, not reached yet", percent);
        if (release) {
            text_puts(out, ": ");
            escape_text(out, release);
        }
        text_putc(out, '\n');
    }
    const char *reason = doc_string(rollout, "rollback_reason");
    if (reason) {
        text_puts(out, "- Rolling back: ");
        escape_text(out, reason);
        text_putc(out, '\n');
    }
}

static void source_lines(struct text *out, const json_t *source)
{
    if (!json_is_object(source))
        return;
    const char *branch = doc_string(source, "branch");
    const char *commit = doc_string(source, "commit");
    if (branch || commit) {
        text_puts(out, "- Spec source:");
        if (branch) {
            text_puts(out, " branch ");
            code_span(out, branch);
        }
        if (commit) {
            text_puts(out, branch ? " at commit " : " commit ");
            short_id(out, commit);
        }
        text_putc(out, '\n');
    }
    const char *fetch_error = doc_string(source, "fetch_error");
    if (fetch_error) {
        text_puts(out, "- Fetch failed, the last good commit still serves: ");
        escape_text(out, fetch_error);
        text_putc(out, '\n');
    }
    json_t *refused = json_object_get(source, "refused_commit");
    if (json_is_object(refused)) {
        const char *refused_commit = doc_string(refused, "commit");
        const char *reason = doc_string(refused, "reason");
        text_puts(out, "- Commit ");
        short_id(out, refused_commit ? refused_commit : "?");
        text_puts(out, " refused");
        if (reason) {
            text_puts(out, ": ");
            escape_text(out, reason);
        }
        text_putc(out, '\n');
    }
    const char *rewritten = doc_string(source, "history_rewritten");
    if (rewritten) {
        text_puts(out, "- Branch history rewritten (force push), followed: ");
        escape_text(out, rewritten);
        text_putc(out, '\n');
    }
}

static void service_section(struct text *out, const json_t *doc, const char *name)
{
    text_puts(out, "\n## ");
    escape_text(out, name);
    text_puts(out, "\n\n");
    const char *phase = doc_string(doc, "phase");
    const char *since = doc_string(doc, "phase_since");
    const char *description = doc_string(doc, "phase_description");
    text_puts(out, "Phase ");
    code_span(out, phase ? phase : "?");
    if (since) {
        text_puts(out, " since ");
        escape_text(out, since);
    }
    if (description) {
        text_puts(out, ": ");
        escape_text(out, description);
    }
    text_puts(out, "\n\n");

    size_t body = out->length;
    if (has_rollout(doc))
        rollout_lines(out, doc);
    source_lines(out, json_object_get(doc, "source"));
    const char *revert = doc_string(doc, "revert_branch");
    if (revert) {
        text_puts(out, "- Revert branch ");
        code_span(out, revert);
        text_puts(out, ": merge it to bring the spec branch in line with what runs.\n");
    }
    const char *override = doc_string(doc, "override");
    if (override) {
        text_puts(out, "- Override: ");
        escape_text(out, override);
        text_putc(out, '\n');
    }
    const char *spec_error = doc_string(doc, "spec_error");
    const char *last_error = doc_string(doc, "last_error");
    /* the whole texts, as code blocks, each after a blank line unless first */
    if (spec_error) {
        if (out->length != body)
            text_putc(out, '\n');
        text_puts(out, "Spec error (what runs is not disturbed):\n\n");
        fenced_block(out, spec_error);
    }
    if (last_error) {
        if (out->length != body)
            text_putc(out, '\n');
        text_puts(out, "Last error:\n\n");
        fenced_block(out, last_error);
    }
}

struct named_doc {
    const json_t *doc;
    const char *name;
    size_t index;
};

static int compare_named(const void *a, const void *b)
{
    const struct named_doc *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

char *status_markdown(const json_t *const *docs, size_t count, const char *agent,
                      const char *now_text)
{
    struct text out = {0};
    struct named_doc *sorted = calloc(count ? count : 1, sizeof(*sorted));
    if (!sorted)
        return NULL;
    bool agent_column = false;
    for (size_t i = 0; i < count; i++) {
        const char *name = json_string_value(json_object_get(docs[i], "service"));
        sorted[i] = (struct named_doc){docs[i], name ? name : "", i};
        agent_column = agent_column || doc_string(docs[i], "agent");
    }
    qsort(sorted, count, sizeof(*sorted), compare_named);

    text_puts(&out, "# Rollout status\n\n");
    if ((agent && *agent) || (now_text && *now_text)) {
        text_puts(&out, "Written");
        if (agent && *agent) {
            text_puts(&out, " by agent ");
            escape_text(&out, agent);
        }
        if (now_text && *now_text) {
            text_puts(&out, " at ");
            escape_text(&out, now_text);
        }
        text_puts(&out, ".\n\n");
    }
    if (count == 0) {
        text_puts(&out, "No services on this status branch.\n");
        free(sorted);
        return text_finish(&out);
    }

    text_puts(&out, agent_column ? "| Service | Agent | Phase | Traffic | Primary | Canary | "
                                   "Last error |\n| --- | --- | --- | --- | --- | --- | --- |\n"
                                 : "| Service | Phase | Traffic | Primary | Canary | Last error "
                                   "|\n| --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < count; i++) {
        const json_t *doc = sorted[i].doc;
        text_puts(&out, "| ");
        escape_text(&out, *sorted[i].name ? sorted[i].name : "?");
        if (agent_column) {
            const char *owner = doc_string(doc, "agent");
            text_puts(&out, " | ");
            escape_text(&out, owner ? owner : "-");
        }
        const char *phase = doc_string(doc, "phase");
        text_puts(&out, " | ");
        escape_text(&out, phase ? phase : "?");
        text_puts(&out, " | ");
        traffic_text(&out, doc);
        text_puts(&out, " | ");
        version_text(&out, json_object_get(doc, "primary"));
        text_puts(&out, " | ");
        version_text(&out, json_object_get(doc, "canary"));
        text_puts(&out, " | ");
        error_cell(&out, doc);
        text_puts(&out, " |\n");
    }
    for (size_t i = 0; i < count; i++)
        if (needs_section(sorted[i].doc))
            service_section(&out, sorted[i].doc, *sorted[i].name ? sorted[i].name : "?");
    free(sorted);
    return text_finish(&out);
}

/* The YAML escape of the code point whose UTF-8 starts at s, or NULL when it
 * may stand raw. status_write_yaml writes strings as JSON does, which leaves
 * raw a few code points YAML refuses (DEL, the C1 controls, U+FFFE, U+FFFF)
 * or reads as line breaks and folds (NEL, U+2028, U+2029). It writes them
 * only inside double-quoted scalars, where their escapes mean them. */
static const char *raw_code_point_escape(const unsigned char *s, size_t left, size_t *bytes,
                                         char buf[8])
{
    if (s[0] == 0x7F) {
        *bytes = 1;
        return "\\x7F";
    }
    if (s[0] == 0xC2 && left >= 2 && s[1] == 0x85) {
        *bytes = 2;
        return "\\N";
    }
    if (s[0] == 0xE2 && left >= 3 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9)) {
        *bytes = 3;
        return s[2] == 0xA8 ? "\\L" : "\\P";
    }
    if (s[0] == 0xC2 && left >= 2 && s[1] >= 0x80 && s[1] <= 0x9F) {
        *bytes = 2;
        snprintf(buf, 8, "\\x%02X", s[1]);
        return buf;
    }
    if (s[0] == 0xEF && left >= 3 && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF)) {
        *bytes = 3;
        return s[2] == 0xBE ? "\\uFFFE" : "\\uFFFF";
    }
    return NULL;
}

/* text with every such code point escaped in *out (caller frees): 1, or 0
 * with *out NULL when it has none, or -1 when out of memory. */
static int escape_raw_code_points(const char *text, size_t length, char **result,
                                  size_t *out_length)
{
    const unsigned char *s = (const unsigned char *)text;
    char buf[8];
    size_t bytes, i = 0;
    *result = NULL;
    while (i < length && !raw_code_point_escape(s + i, length - i, &bytes, buf))
        i++;
    if (i == length)
        return 0;
    /* an escape is at most 6 bytes for at least 1 */
    char *out = malloc(length * 6 + 1);
    if (!out)
        return -1;
    size_t n = 0;
    for (i = 0; i < length;) {
        const char *escape = raw_code_point_escape(s + i, length - i, &bytes, buf);
        if (escape) {
            memcpy(out + n, escape, strlen(escape));
            n += strlen(escape);
            i += bytes;
        } else {
            out[n++] = text[i++];
        }
    }
    out[n] = 0;
    *out_length = n;
    *result = out;
    return 1;
}

json_t *status_doc_parse_yaml(const char *text, size_t length)
{
    if (!text)
        return NULL;
    size_t escaped_length = 0;
    char *escaped;
    if (escape_raw_code_points(text, length, &escaped, &escaped_length) < 0)
        return NULL;
    struct diag diag = DIAG_INIT;
    struct ytree *tree = ytree_parse(escaped ? escaped : text, escaped ? escaped_length : length,
                                     "status.yaml", &diag);
    free(escaped);
    diag_clear(&diag);
    const struct ynode *root = ytree_root(tree);
    /* decode_any reads plain scalars by the YAML 1.2 core schema (integers,
     * booleans, null) and quoted ones as strings, which is how
     * status_write_yaml writes them */
    json_t *doc = root && root->kind == YNODE_MAPPING ? decode_any(root) : NULL;
    ytree_free(tree);
    return doc;
}
