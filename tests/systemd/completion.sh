#!/usr/bin/env bash
# completions/rolld.bash, called as bash calls it: COMP_WORDS and COMP_CWORD
# set, _rolld run, COMPREPLY checked. Service names come from the real
# `rolld status --format json` ($ROLLD, the first word of the line) over a
# state dir with status files, and from the status files when that fails.
set -uo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROLLD=${ROLLD:-$TOP/build/rolld}
[ -x "$ROLLD" ] || { echo "FAIL: $ROLLD is not built"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolld-completion.XXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
failed=0

# shellcheck source=../../completions/rolld.bash
source "$TOP/completions/rolld.bash"

# complete WORD...: completes the last word of `WORD...` (give "" for an empty
# last word); the candidates are in COMPREPLY, sorted in $got
complete_line() {
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _rolld rolld "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]:-}"
    got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')
    got=${got% }
}

# expect "EXPECTED CANDIDATES" WORD...: exactly these candidates
expect() {
    local want=$1
    shift
    complete_line "$@"
    want=$(tr ' ' '\n' <<<"$want" | sed '/^$/d' | sort | tr '\n' ' ')
    want=${want% }
    if [ "$got" = "$want" ]; then
        echo "ok   - '$*' -> [$got]"
    else
        echo "FAIL - '$*': expected [$want], got [$got]"
        failed=$((failed + 1))
    fi
}

# expect_has "CANDIDATE..." WORD...: at least these candidates
expect_has() {
    local want=$1 w missing=
    shift
    complete_line "$@"
    for w in $want; do
        [[ " $got " == *" $w "* ]] || missing+=" $w"
    done
    if [ -z "$missing" ]; then
        echo "ok   - '$*' offers $want"
    else
        echo "FAIL - '$*': missing$missing in [$got]"
        failed=$((failed + 1))
    fi
}

# a state dir with two services, as the agent writes them
STATE=$WORK/state
mkdir -p "$STATE/status" "$WORK/files/sub"
for s in chat embed; do
    printf 'service: %s\nphase: running\ntraffic: {primary: 100, canary: 0}\n' "$s" >"$STATE/status/$s.yaml"
done
touch "$WORK/files/a.yaml"

complete -p rolld >/dev/null 2>&1 && echo "ok   - 'complete -F _rolld rolld' is registered" ||
    { echo "FAIL - no completion registered for rolld"; failed=$((failed + 1)); }

expect "validate plan run status rollback retry sync version help --help --version" "$ROLLD" ""
expect "rollback retry run" "$ROLLD" r
expect "status sync" "$ROLLD" s
expect "--state-dir --format --watch" "$ROLLD" status --
expect "text json" "$ROLLD" status --format ""
expect "text json markdown" "$ROLLD" plan --format ""
expect "json" "$ROLLD" plan --format j
expect "text json" "$ROLLD" run --log-format ""
expect "--state-dir --max-surge-percent --to" "$ROLLD" rollback --
expect "--state-dir" "$ROLLD" retry --
expect "--state-dir" "$ROLLD" sync --
expect_has "--config --source --git --state-dir --policies --port-range --cpus --memory --gpus --metrics-listen --log-format --check --no-watch --no-status-git" \
    "$ROLLD" run --
expect_has "--against --format --policies --repo --base --head --dir" "$ROLLD" plan --
expect "--state-dir --source --status-branch" "$ROLLD" run --s

# service names, from `rolld status --format json` on the --state-dir given
expect "chat embed" "$ROLLD" status --state-dir "$STATE" ""
expect "chat" "$ROLLD" rollback --state-dir "$STATE" c
expect "embed" "$ROLLD" retry --state-dir="$STATE" e
expect "chat embed" "$ROLLD" rollback --state-dir = "$STATE" "" # COMP_WORDBREAKS split "="
ROLLD_STATE_DIR=$STATE expect "chat embed" "$ROLLD" status ""
# one service only: nothing after it
expect "" "$ROLLD" rollback --state-dir "$STATE" chat ""
# without a working rolld: the status files
expect "chat embed" /nonexistent/rolld status --state-dir "$STATE" ""
# no state dir: no candidates, no error
expect "" "$ROLLD" status --state-dir "$WORK/none" ""

# files and directories
expect "$WORK/files/sub" "$ROLLD" run --state-dir "$WORK/files/s"
expect "$WORK/files/a.yaml" "$ROLLD" validate "$WORK/files/a"
expect "$WORK/files/a.yaml" "$ROLLD" run --config "$WORK/files/a"
# free text: nothing offered
expect "" "$ROLLD" run --cpus ""
expect "" "$ROLLD" rollback chat --to ""

# git revisions for plan --repo
if command -v git >/dev/null; then
    git init -q -b main "$WORK/repo" && git -C "$WORK/repo" -c user.name=t -c user.email=t@t \
        commit -q --allow-empty -m one && git -C "$WORK/repo" branch feature
    expect "feature" "$ROLLD" plan --repo "$WORK/repo" --base f
    expect_has "HEAD main feature" "$ROLLD" plan --repo "$WORK/repo" --head ""
fi

echo "$failed failed"
[ "$failed" -eq 0 ]
