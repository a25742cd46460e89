#!/usr/bin/env bash
# git_source: rolld follows a real Git repository. A bare origin made by the
# test, a person's clone that pushes specs, the agent on a file:// remote.
#   - push v1 -> v1 runs; the status branch on the origin gets
#     status/svc.yaml and STATUS.md that a fresh clone reads, naming the commit
#   - push v2 -> the canary starts (time from push to the first rollout action,
#     inotify on the origin's refs) and completes; the spec branch is untouched
#     by rolld
#   - a person pushes to the status branch: rolld's next status commit keeps
#     the person's file and commit (no force)
#   - the origin becomes unreachable: the agent keeps serving, the status says
#     why; when it comes back the error clears
#   - a force-pushed branch is followed and the status says so
#   - a never-healthy v4 is rolled back and rolld pushes rolld/revert/svc with
#     the running version's spec; a commit with an invalid spec for another
#     service does not stop a valid change
#   - rolld rollback --to v2 works while the origin is unreachable
source "$(dirname "$0")/lib.sh"
command -v git >/dev/null || { echo "SKIP: git missing"; exit 77; }

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
GIT=(git -c user.name=Person -c user.email=person@example.com -c init.defaultBranch=main)

it_setup
write_policy "[50, 100]" 2s 20s
ORIGIN=$WORK/origin.git
CLONE=$WORK/clone
"${GIT[@]}" init -q --bare "$ORIGIN"
"${GIT[@]}" init -q "$CLONE"
"${GIT[@]}" -C "$CLONE" remote add origin "$ORIGIN"
SRC=$CLONE/services # write_spec writes here
mkdir -p "$SRC"

# push MESSAGE [git push options]: commit everything in the clone and push main
push() {
    local message=$1
    shift
    "${GIT[@]}" -C "$CLONE" add -A
    "${GIT[@]}" -C "$CLONE" commit -q -m "$message"
    PUSHED_MS=$(now_ms)
    "${GIT[@]}" -C "$CLONE" push -q "$@" origin HEAD:main 2>>"$WORK/git.log"
    PUSHED=$("${GIT[@]}" -C "$CLONE" rev-parse HEAD)
}

frontend_says() {
    curl -s --max-time 2 "$(URL)" 2>/dev/null | grep -q "\"version_name\":\"$1\""
}

git_agent_start() {
    "$ROLLD" run --git "file://$ORIGIN" --branch main --dir services --fetch-interval 60 \
        --name it-agent --state-dir "$STATE" --policies "$POL" \
        --port-range "$PORT_LOW-$PORT_HIGH" ${AGENT_ARGS+"${AGENT_ARGS[@]}"} >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    log "agent started on file://$ORIGIN, pid $AGENT_PID"
}

# status_branch_file PATH: a file of the status branch, read from a fresh clone
status_branch_file() {
    rm -rf "$WORK/fresh"
    git clone -q -b rolld/status "file://$ORIGIN" "$WORK/fresh" 2>/dev/null &&
        cat "$WORK/fresh/$1"
}
status_branch_has() { # FILE REGEX
    status_branch_file "$1" 2>/dev/null | grep -q -- "$2"
}

# ---- v1 ----
write_spec v1
push "svc v1"
V1_COMMIT=$PUSHED
git_agent_start
wait_status 30 '.phase == "running" and .primary.version_name == "v1" and (.primary.replicas | map(.ready) | add) == '"$REPLICAS" ||
    fatal "v1 did not come up from the Git source"
pass "v1 runs from commit ${V1_COMMIT:0:12}"
check_eq "the status names the spec commit of v1" "$V1_COMMIT" "$(st .primary.commit)"
check_eq "the status names the source's head" "$V1_COMMIT" "$(st .source.commit)"
check "the status branch on the origin has status/svc.yaml saying running" \
    wait_until 10 "status/svc.yaml on rolld/status" status_branch_has status/svc.yaml 'phase: "running"'
check "status/svc.yaml names the commit" status_branch_has status/svc.yaml "$V1_COMMIT"
check "STATUS.md names the service" status_branch_has STATUS.md 'svc'
check_eq "the status commits' author" "rolld" "$(git -C "$ORIGIN" log -1 --format=%an rolld/status)"
check_eq "main still ends at the person's commit" "$V1_COMMIT" "$(git -C "$ORIGIN" rev-parse main)"

# ---- v2: push -> rollout ----
write_spec v2
push "svc v2"
V2_COMMIT=$PUSHED
if wait_status 15 '.canary.version_name == "v2"'; then
    T_PUSH=$(($(now_ms) - PUSHED_MS))
    pass "git push -> v2 canary in $T_PUSH ms (inotify on the origin's refs)"
    figure "push_to_canary_ms_inotify" "$T_PUSH"
else
    fail "no v2 canary 15 s after the push"
    diagnostics
fi
wait_status 60 '.phase == "running" and .primary.version_name == "v2"' ||
    fail "v2 did not complete ($(st .phase))"
check_eq "v2's spec commit" "$V2_COMMIT" "$(st .primary.commit)"
check "the status branch follows: v2 primary" \
    wait_until 10 "v2 on the status branch" status_branch_has status/svc.yaml 'version_name: "v2"'
check_eq "main is untouched by rolld" "$V2_COMMIT" "$(git -C "$ORIGIN" rev-parse main)"
STATUS_COMMITS=$(git -C "$ORIGIN" rev-list --count rolld/status)
log "status branch: $STATUS_COMMITS commits so far"

# ---- a person pushes to the status branch: no force ----
git clone -q -b rolld/status "file://$ORIGIN" "$WORK/person"
echo "hello from a person" >"$WORK/person/NOTES.txt"
"${GIT[@]}" -C "$WORK/person" add NOTES.txt
"${GIT[@]}" -C "$WORK/person" commit -q -m "person's note"
"${GIT[@]}" -C "$WORK/person" push -q origin rolld/status
PERSON_COMMIT=$("${GIT[@]}" -C "$WORK/person" rev-parse HEAD)
write_spec v2 --canary-percent 100 # a change of rollout settings only: a new status
push "svc: rollout settings"
"$ROLLD" sync --state-dir "$STATE" >/dev/null
status_moved() { [ "$(git -C "$ORIGIN" rev-parse rolld/status)" != "$PERSON_COMMIT" ]; }
if wait_until 10 "a status commit after the person's" status_moved; then
    check "the person's commit is an ancestor of rolld's (no force push)" \
        git -C "$ORIGIN" merge-base --is-ancestor "$PERSON_COMMIT" rolld/status
    check "the person's file is kept" status_branch_has NOTES.txt "hello from a person"
else
    fail "rolld made no status commit after the person's push"
fi

# ---- the origin goes away ----
mv "$ORIGIN" "$ORIGIN.away"
"$ROLLD" sync --state-dir "$STATE" >/dev/null
check "the status says the fetch failed" wait_until 10 "fetch_error" status_is '.source.fetch_error != null'
log "fetch_error: $(st .source.fetch_error)"
check "v2 keeps serving while the origin is unreachable" frontend_says v2
check_eq "the phase while the origin is unreachable" running "$(st .phase)"
# rollback --to a kept version, with no remote
out=$("$ROLLD" rollback svc --to v1 --state-dir "$STATE" 2>&1)
check "rolld rollback --to v1 is accepted without the remote: $out" grep -q "goes back to" <<<"$out"
check "v1 runs again from the kept spec" \
    wait_status 60 '.phase == "running" and .primary.version_name == "v1"'
check "the status explains the override" status_is '.override != null'
mv "$ORIGIN.away" "$ORIGIN"
"$ROLLD" sync --state-dir "$STATE" >/dev/null
check "the fetch error clears when the origin is back" wait_until 10 "no fetch_error" status_is '.source.fetch_error == null'

# ---- force push: rewritten history with v3 ----
write_spec v3
"${GIT[@]}" -C "$CLONE" add -A
"${GIT[@]}" -C "$CLONE" commit -q --amend -m "svc v3 (rewritten)"
PUSHED_MS=$(now_ms)
"${GIT[@]}" -C "$CLONE" push -q --force origin HEAD:main 2>>"$WORK/git.log"
V3_COMMIT=$("${GIT[@]}" -C "$CLONE" rev-parse HEAD)
check "the agent follows the force-pushed branch to v3" \
    wait_status 60 '.phase == "running" and .primary.version_name == "v3"'
check "the status says the history was rewritten" status_is '.source.history_rewritten != null'
check "the override ended with the new version" status_is '.override == null'

# ---- a version that never gets healthy: rollback and a revert branch ----
V3_TEXT=$(cat "$SRC/svc.yaml")
write_spec v4 --args ', "--never-healthy"'
# the same commit breaks another service's spec: it does not stop svc's change
printf 'name: other\napplications: 42\n' >"$SRC/other.yaml"
push "svc v4, and a broken other"
check "the v4 canary starts despite the broken other.yaml" wait_status 15 '.canary.version_name == "v4"'
check "v4 is rolled back" wait_status 60 '.phase == "rolled_back" and .primary.version_name == "v3"'
revert_pushed() { git -C "$ORIGIN" rev-parse -q --verify refs/heads/rolld/revert/svc >/dev/null; }
if wait_until 10 "rolld/revert/svc on the origin" revert_pushed; then
    pass "rolld pushed rolld/revert/svc"
    check_eq "the revert branch puts v3's spec back (sha256 of the file)" \
        "$(sha256sum <<<"$V3_TEXT" | cut -c1-16)" \
        "$(git -C "$ORIGIN" show rolld/revert/svc:services/svc.yaml | sha256sum | cut -c1-16)"
    check_eq "the revert branch's parent is the spec branch" "$(git -C "$ORIGIN" rev-parse main)" \
        "$(git -C "$ORIGIN" rev-parse rolld/revert/svc^)"
    check_eq "the status names the revert branch" rolld/revert/svc "$(st .revert_branch)"
else
    fail "no rolld/revert/svc branch"
fi

finish
