#!/usr/bin/env bash
# pause_resume: rollout.canary_percent: 30 holds the canary at 30% (phase
# canary_paused) for longer than two step durations; canary_percent: 100
# completes the rollout. Then v3 starts, `rolld rollback svc` during its
# progression rolls it back (rolling_back -> rolled_back, v2 still primary and
# serving, v3 in rejected_versions, all traffic on v2); a second rollback is
# refused; the agent does not retry v3 on its own; `rolld retry svc` starts the
# v3 rollout again (and it completes). A continuous load checks that v2 serves
# without a failure from the start of v3 to the end.
source "$(dirname "$0")/lib.sh"

it_setup
write_policy "[5, 10, 20, 30, 50, 75, 100]" 3s 30s
start_v1

# ---- pause at 30% ----
write_spec v2 --canary-percent 30
if ! wait_status 40 '.phase == "canary_paused"'; then
    fatal "v2 did not pause (phase $(st .phase), traffic $(st .traffic.canary))"
fi
T_PAUSED=$(now_ms)
pass "canary_paused reached"
check_eq "traffic.canary while paused" 30 "$(st .traffic.canary)"
check_eq "rollout.paused_at" 30 "$(st .rollout.paused_at)"
check_eq "rollout.canary_percent" 30 "$(st .rollout.canary_percent)"
hold=$((2 * STEP_DURATION_S + 1))
if hold_for "$hold" "paused at 30%" status_is '.phase == "canary_paused" and .traffic.canary == 30 and .canary.version_name == "v2"'; then
    pass "still canary_paused at 30% after $hold s (> 2 step durations; $HELD_POLLS polls)"
else
    fail "the paused canary moved: phase $(st .phase), traffic $(st .traffic.canary)"
fi
burst paused 1s >/dev/null
share=$(canary_share "$WORK/paused.json" v2)
check "measured canary share while paused: $share% (30% +- 2)" within "$share" 30 2
figure "paused at canary_percent 30: measured canary share $share% over $(rf "$WORK/paused.json" .answered) requests, held $hold s"

# ---- resume with 100 ----
write_spec v2 --canary-percent 100
if wait_status 40 '.phase == "running" and .primary.version_name == "v2" and .canary == null'; then
    pass "canary_percent 100 completed the rollout in $WAITED_MS ms: v2 primary"
    figure "canary_percent 30 -> 100: rollout complete after $WAITED_MS ms"
else
    fatal "canary_percent 100 did not complete the rollout (phase $(st .phase), traffic $(st .traffic.canary))"
fi
check "history says the rollout settings changed" test "$(st '[.history[].event] | index("rollout_settings_changed") != null')" = true

# ---- v3, rolled back by hand ----
before=$(frontend_requests)
load_start main 2
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the continuous load does not reach HAProxy"
write_spec v3
if ! wait_status 30 '.canary.version_name == "v3" and .phase == "canary_progressing" and .traffic.canary >= 10'; then
    fatal "v3 did not start progressing (phase $(st .phase), traffic $(st .traffic.canary))"
fi
V3_ID=$(st .canary.version)
log "v3 ($V3_ID) progressing at $(st .traffic.canary)%"
out=$("$ROLLD" rollback svc --state-dir "$STATE" 2>&1)
rc=$?
T_ROLLBACK=$(now_ms)
log "rolld rollback svc -> exit $rc: $out"
check_eq "rolld rollback svc exits" 0 "$rc"

phases=()
seen_phase() {
    local phase
    phase=$(st .phase)
    if [ -n "$phase" ] && { [ ${#phases[@]} -eq 0 ] || [ "${phases[-1]}" != "$phase" ]; }; then
        phases+=("$phase")
    fi
    [ "$phase" = rolled_back ]
}
if wait_until 30 "phase rolled_back" seen_phase; then
    pass "rolled_back $(($(now_ms) - T_ROLLBACK)) ms after the rollback command"
else
    fail "not rolled_back after 30 s (phase $(st .phase))"
    diagnostics
fi
log "phases seen after the command: ${phases[*]}"
# a rollback without surge takes a few hundred ms: polling may see only its
# end; the history below says it went through rolling_back
check "phase ended rolled_back (seen: ${phases[*]})" test "${phases[-1]}" = rolled_back
check "history: rollback_started then rolled_back, for v3" test "$(st '
    [.history[] | select(.event == "rollback_started" or .event == "rolled_back")] | .[-2:] |
    map(.event) == ["rollback_started", "rolled_back"] and all(.detail | startswith("v3"))')" = true
check_eq "primary after the rollback" v2 "$(st .primary.version_name)"
check_eq "canary after the rollback" null "$(st .canary)"
check_eq "traffic after the rollback (primary/canary)" "100/0" "$(st '"\(.traffic.primary)/\(.traffic.canary)"')"
check "v3 ($V3_ID) is in rejected_versions [$(st '.rejected_versions | join(",")')]" \
    test "$(st ".rejected_versions | index(\"$V3_ID\") != null")" = true
check "v3's replicas are stopped" wait_until 15 "v3 replicas to stop" no_replicas_of v3
burst after-rollback 1s >/dev/null
check_eq "after the rollback, unpinned requests reach" '["v2"]' "$(jq -c '.versions | keys' "$WORK/after-rollback.json")"
check_eq "after the rollback, failed requests" 0 "$(($(rf "$WORK/after-rollback.json" .non2xx) + $(conn_errors "$WORK/after-rollback.json")))"

out=$("$ROLLD" rollback svc --state-dir "$STATE" 2>&1)
rc=$?
log "second rolld rollback svc -> exit $rc: $out"
check "a second rollback exits non-zero (exit $rc)" test "$rc" -ne 0
check "a second rollback says why: '$out'" test -n "$out"

# ---- not retried by the agent ----
hold=$((2 * STEP_DURATION_S + 1))
no_v3() {
    status_is '.phase == "rolled_back" and .canary == null and .primary.version_name == "v2"' &&
        [ -z "$(replica_pids_of_version v3)" ]
}
if hold_for "$hold" "v3 stays rolled back" no_v3; then
    pass "the agent does not retry v3: still rolled_back, no v3 replica, after $hold s ($HELD_POLLS polls)"
else
    fail "the agent retried v3 on its own: phase $(st .phase), canary $(st .canary.version_name)"
fi

# ---- rolld retry ----
out=$("$ROLLD" retry svc --state-dir "$STATE" 2>&1)
rc=$?
log "rolld retry svc -> exit $rc: $out"
check_eq "rolld retry svc exits" 0 "$rc"
if wait_status 15 '.canary.version_name == "v3" and (.phase == "canary_starting" or .phase == "canary_progressing")'; then
    pass "the v3 rollout started again $WAITED_MS ms after rolld retry"
else
    fail "rolld retry did not start v3 again (phase $(st .phase))"
fi
check "v3 is no longer in rejected_versions" test "$(st ".rejected_versions | index(\"$V3_ID\") == null")" = true
if wait_status 60 '.phase == "running" and .primary.version_name == "v3"'; then
    pass "the retried v3 rollout completed"
else
    fail "the retried v3 rollout did not complete (phase $(st .phase), traffic $(st .traffic.canary))"
fi

load_stop main
M=$WORK/main.json
served=$(rf "$M" .answered)
non2xx=$(rf "$M" .non2xx)
errors=$(conn_errors "$M")
check "continuous load answered requests" test "$served" -gt 0
check_eq "continuous load (v3 start, rollback, retry): non-2xx" 0 "$non2xx"
check_eq "continuous load (v3 start, rollback, retry): connection errors" 0 "$errors"
figure "continuous load from v3's start through rollback, retry and completion: $served answered ($(jq -c .versions "$M")), non-2xx $non2xx, connection errors $errors"
figure "phases seen after rolld rollback: ${phases[*]}"
finish
