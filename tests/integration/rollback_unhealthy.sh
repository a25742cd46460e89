#!/usr/bin/env bash
# rollback_unhealthy: a canary that turns unhealthy while it takes traffic,
# under rollout.max_surge_percent 50 and no canary_percent, under continuous
# load, checked every 50 ms by invariants.pl. svc has 4 replicas; each canary
# sits at 50% traffic (the policy's step_duration is 30 s) with 4 replicas
# while the primary is down to 2, and its replicas start failing their health
# checks UNHEALTHY_AFTER_S seconds after they start (model-server
# --unhealthy-after):
#   v2: replicas that do not recover (a wrapper makes every restart fail);
#       rolled back at once: all traffic to the primary's ready
#       replicas without waiting for it to regrow (DESIGN.md rule 4's
#       exception), then the canary stopped; rolled_back, the reason in
#       last_error and the history, v2 rejected. The time from the canary
#       turning unhealthy to 100% of the traffic on the primary is measured
#       (by the router's weights, and by state.json).
#   v3: the same failure under a policy with on_failure: hold: canary_held,
#       traffic frozen at 50%, capacities unchanged, the canary keeps its
#       replicas and the primary is not regrown, until `rolld rollback svc`:
#       rolled_back, v3 rejected.
#   v4: replicas that recover when restarted (plain --unhealthy-after: each
#       restart is healthy again for UNHEALTHY_AFTER_S): the canary turned
#       unhealthy and must be rolled back at once all the same.
# Servers that take traffic must have a live replica behind them at every
# sample. (Traffic shares against ready replicas are printed, not asserted: a
# replica that fails its checks leaves the router and its version's share is
# spread over fewer replicas until the rollback; capacity counts the replicas
# the agent runs.) No request fails.
source "$(dirname "$0")/lib.sh"

REPLICAS=4
SURGE=50
UNHEALTHY_AFTER_S=5
# (This test found a canary whose replicas recover on restart never rolled
# back, only crash loops counting, and unhealthy replicas killed before they
# left the router; both fixed in process.c, plain checks now.)

it_setup
write_policy "[50, 100]" 30s 30s
write_policy "[50, 100]" 30s 30s hold --name hold
SPEC_DEFAULTS=(--args ', "--start-delay", "1"')
start_v1
BOUND=$(surge_peak_replicas "$REPLICAS" "$SURGE")

# a replica that runs once: every restart of the same version and index fails
FAILS_AFTER_RESTART=$WORK/fails-after-restart
cat >"$FAILS_AFTER_RESTART" <<EOF
#!/bin/sh
marker="$WORK/started.\$ROLLD_VERSION_NAME.\$ROLLD_REPLICA"
if [ -e "\$marker" ]; then
    echo "fails-after-restart: \$ROLLD_VERSION_NAME replica \$ROLLD_REPLICA ran once already; failing" >&2
    exit 1
fi
: >"\$marker"
exec "$MODEL_SERVER" "\$@"
EOF
chmod +x "$FAILS_AFTER_RESTART"
UNHEALTHY_ARGS=', "--unhealthy-after", "'$UNHEALTHY_AFTER_S'"'

before=$(frontend_requests)
load_start main 2
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the continuous load does not reach HAProxy"

CLK_TCK=$(getconf CLK_TCK)
BOOT_S=$(awk '/^btime/ {print $2}' /proc/stat)
# proc_start_ms PID: when the process started, in ms since the epoch
proc_start_ms() {
    local ticks
    ticks=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}')
    [ -n "$ticks" ] && echo $((BOOT_S * 1000 + ticks * 1000 / CLK_TCK))
}
# FIRST_START: the earliest start of a replica of version $1 (polled while it runs)
first_start() {
    local pid t
    for pid in $(replica_pids_of_version "$1"); do
        t=$(proc_start_ms "$pid") || continue
        if [ -z "${FIRST_START:-}" ] || [ "$t" -lt "$FIRST_START" ]; then FIRST_START=$t; fi
    done
    [ -n "${FIRST_START:-}" ]
}

# the canary at 50% traffic with all its replicas, the primary down to 50%
at_fifty() {
    status_is ".canary.version_name == \"$1\" and .traffic.canary == 50 and .canary.capacity == 100 and
        .primary.capacity == 50 and ([.canary.replicas[].ready] | add) == $REPLICAS"
}

phases=()
watch_phases() {
    local phase
    phase=$(st .phase)
    if [ -n "$phase" ] && { [ ${#phases[@]} -eq 0 ] || [ "${phases[-1]}" != "$phase" ]; }; then
        phases+=("$phase")
    fi
    [ "$phase" = "$1" ]
}

# first sample at or after $3 (epoch ms) where version $2 has no share of the split
primary_only_at() {
    jq -s -r --arg v "$2" --argjson after "$3" \
        '[.[] | select(.at >= $after and (.share[$v] // 0) == 0)][0].at // 0' "$1"
}
# first sample at or after $2 where state.json has traffic.canary 0
state_traffic_zero_at() {
    jq -s -r --argjson after "$2" '[.[] | select(.at >= $after and .traffic == 0)][0].at // 0' "$1"
}

rejected() {
    test "$(st ".rejected_versions | index(\"$1\") != null")" = true
}

# ---- v2: unhealthy, does not recover: crash loop, rolled back at once ----
checker_start crash --max-per-version "$REPLICAS" --max-total "$BOUND" --surge "$SURGE" \
    --replicas "$REPLICAS" --share --canary v2
write_spec v2 --surge "$SURGE" --command "$FAILS_AFTER_RESTART" --args "$UNHEALTHY_ARGS"
FIRST_START=
wait_until 15 "v2 replicas" first_start v2 || fatal "no v2 replica 15 s after the save"
wait_until 20 "v2 at 50% with $REPLICAS replicas" at_fifty v2 ||
    fatal "v2 did not reach 50% with $REPLICAS ready replicas (phase $(st .phase), traffic $(st .traffic.canary))"
first_start v2
T_UNHEALTHY=$((FIRST_START + UNHEALTHY_AFTER_S * 1000))
V2_ID=$(st .canary.version)
log "v2 at 50%; its first replica started at $FIRST_START, unhealthy from $T_UNHEALTHY (+$((T_UNHEALTHY - $(now_ms))) ms from now)"
phases=()
if wait_until 30 "v2 rolled back" watch_phases rolled_back; then
    T_CRASH_DONE=$(($(now_ms) - T_UNHEALTHY))
    pass "v2: rolled_back $T_CRASH_DONE ms after its first replica turned unhealthy (phases polled: ${phases[*]})"
else
    fail "v2: not rolled back 30 s after it reached 50% (phase $(st .phase), last_error $(st .last_error))"
    diagnostics
fi
error=$(st .last_error)
check "v2: last_error gives the reason: '$error'" test "${error#v2: canary unhealthy: }" != "$error"
check "v2: history: rollback_started and rolled_back with that reason" test "$(st '
    .last_error as $e | [.history[] | select(.event == "rollback_started" or .event == "rolled_back")] |
    .[-2:] | map(.event + " " + .detail) == ["rollback_started " + $e, "rolled_back " + $e]')" = true
check "v2 ($V2_ID) in rejected_versions" rejected "$V2_ID"
check_eq "v2: primary and traffic after the rollback" "v1 100/0" "$(st '"\(.primary.version_name) \(.traffic.primary)/\(.traffic.canary)"')"
check "v2's replicas are stopped" wait_until 15 "v2 replicas to stop" no_replicas_of v2
checker_stop crash
check_invariants crash bound state empty
check_invariants crash dead
C=$WORK/crash.samples
T_ROUTER=$(primary_only_at "$C" v2 "$T_UNHEALTHY")
T_STATE=$(state_traffic_zero_at "$C" "$T_UNHEALTHY")
T_RB=$(jq -s -r '[.[] | select(.phase == "rolling_back")][0].at // 0' "$C")
# at once: traffic was given back before the primary regrew (its new replicas
# take 1 s to get ready); an at-once rollback may finish within one agent
# pass, so rolling_back need not show in state.json
at_once=$(jq -s -r --argjson after "$T_UNHEALTHY" \
    '[.[] | select(.at >= $after and .traffic == 0)][0] // {} | "\(.phase) \(.routed.v1 // 0)"' "$C")
log "first sample with traffic.canary 0 after unhealthy: phase and v1 servers taking traffic: $at_once"
check "v2: all traffic to the primary at once, before it regrew (v1 servers taking traffic then: ${at_once#* }, of $REPLICAS)" \
    test "${at_once#* }" -gt 0 -a "${at_once#* }" -lt "$REPLICAS"
check "v2: the router gave the primary all traffic (+$((T_ROUTER - T_UNHEALTHY)) ms after unhealthy)" test "$T_ROUTER" -gt 0
check "v2: state.json traffic.canary 0 (+$((T_STATE - T_UNHEALTHY)) ms after unhealthy)" test "$T_STATE" -gt 0
# failure_threshold 3 failed checks 1 s apart, then one agent pass
check_le "v2: unhealthy -> 100% on the primary by the state, ms (3 checks at 1 s + 2 s)" \
    $((T_STATE - T_UNHEALTHY)) 5000
if [ "$T_RB" -gt 0 ]; then RB_SEEN="+$((T_RB - T_UNHEALTHY)) ms"; else RB_SEEN="not in state.json (within one agent pass)"; fi
CRASH_FIGURE="unhealthy -> router 100% on the primary +$((T_ROUTER - T_UNHEALTHY)) ms, -> rolling_back $RB_SEEN, -> state traffic 0 +$((T_STATE - T_UNHEALTHY)) ms, -> rolled_back +${T_CRASH_DONE:-?} ms"

# ---- v3: the same under on_failure: hold ----
checker_start hold --max-per-version "$REPLICAS" --max-total "$BOUND" --surge "$SURGE" \
    --replicas "$REPLICAS" --share --canary v3
write_spec v3 --surge "$SURGE" --command "$FAILS_AFTER_RESTART" --args "$UNHEALTHY_ARGS" --policy hold
FIRST_START=
wait_until 15 "v3 replicas" first_start v3 || fatal "no v3 replica 15 s after the save"
wait_until 20 "v3 at 50% with $REPLICAS replicas" at_fifty v3 ||
    fatal "v3 did not reach 50% with $REPLICAS ready replicas (phase $(st .phase), traffic $(st .traffic.canary))"
first_start v3
T_UNHEALTHY=$((FIRST_START + UNHEALTHY_AFTER_S * 1000))
V3_ID=$(st .canary.version)
phases=()
if wait_until 30 "v3 held" watch_phases canary_held; then
    T_HELD=$(($(now_ms) - T_UNHEALTHY))
    pass "v3: canary_held $T_HELD ms after its first replica turned unhealthy (phases ${phases[*]})"
else
    fail "v3: not canary_held 30 s after it reached 50% (phase $(st .phase), last_error $(st .last_error))"
    diagnostics
fi
HELD_ERROR=$(st .last_error)
check "v3: last_error while held gives the reason: '$HELD_ERROR'" test "${HELD_ERROR#canary unhealthy: }" != "$HELD_ERROR"
check_eq "v3: history's canary_held" "$HELD_ERROR" "$(st '[.history[] | select(.event == "canary_held")][-1].detail')"
# held: traffic and capacities frozen, the primary not regrown, and the agent
# keeps the canary's 4 replicas (a replica that failed its checks is replaced,
# as everywhere; none is taken away)
frozen() {
    status_is '.phase == "canary_held" and .traffic.canary == 50 and .canary.capacity == 100 and
        .primary.capacity == 50 and .canary.version_name == "v3" and
        ([.canary.replicas[].desired] | add) == '"$REPLICAS" &&
        [ "$(jq --arg v "$V3_ID" '[.replicas[] | select(.version == $v)] | length' "$STATE/state.json")" = "$REPLICAS" ] &&
        [ "$(replica_pids_of_version v1 | wc -l)" = $((REPLICAS / 2)) ]
}
if hold_for 4 "v3 held: traffic frozen, nothing stopped" frozen; then
    pass "v3: held for 4 s: traffic 50%, capacities 50/100, $REPLICAS canary replicas kept, v1 still at $((REPLICAS / 2)) ($HELD_POLLS polls)"
else
    fail "v3: the held canary moved: phase $(st .phase), traffic $(st .traffic.canary), capacities $(st '"\(.primary.capacity)/\(.canary.capacity)"'), v3 replica records $(jq -c --arg v "$V3_ID" '[.replicas[] | select(.version == $v) | .state]' "$STATE/state.json"), v1 replicas $(replica_pids_of_version v1 | wc -l)"
fi
out=$("$ROLLD" rollback svc --state-dir "$STATE" 2>&1)
rc=$?
T_CMD=$(now_ms)
log "rolld rollback svc -> exit $rc: $out"
check_eq "v3: rolld rollback svc of the held canary exits" 0 "$rc"
phases=()
if wait_until 30 "v3 rolled back" watch_phases rolled_back; then
    T_HOLD_DONE=$(($(now_ms) - T_CMD))
    pass "v3: rolled_back $T_HOLD_DONE ms after rolld rollback (phases ${phases[*]})"
else
    fail "v3: not rolled back 30 s after rolld rollback (phase $(st .phase))"
    diagnostics
fi
check_eq "v3: last_error" "v3: manual rollback" "$(st .last_error)"
check "v3: history: canary_held, rollback_started, rolled_back" test "$(st '
    [.history[] | select(.event == "canary_held" or .event == "rollback_started" or .event == "rolled_back")] |
    .[-3:] | map(.event) == ["canary_held", "rollback_started", "rolled_back"]')" = true
check "v3 ($V3_ID) in rejected_versions" rejected "$V3_ID"
check_eq "v3: primary and traffic after the rollback" "v1 100/0" "$(st '"\(.primary.version_name) \(.traffic.primary)/\(.traffic.canary)"')"
check "v3's replicas are stopped" wait_until 15 "v3 replicas to stop" no_replicas_of v3
checker_stop hold
check_invariants hold state empty
check_invariants hold dead
check_invariants hold bound

# ---- v4: unhealthy, recovers on restart ----
checker_start flapping --max-per-version "$REPLICAS" --max-total "$BOUND" --surge "$SURGE" \
    --replicas "$REPLICAS" --share --canary v4
write_spec v4 --surge "$SURGE" --args "$UNHEALTHY_ARGS"
FIRST_START=
wait_until 15 "v4 replicas" first_start v4 || fatal "no v4 replica 15 s after the save"
wait_until 20 "v4 at 50% with $REPLICAS replicas" at_fifty v4 ||
    fatal "v4 did not reach 50% with $REPLICAS ready replicas (phase $(st .phase), traffic $(st .traffic.canary))"
first_start v4
T_UNHEALTHY=$((FIRST_START + UNHEALTHY_AFTER_S * 1000))
V4_ID=$(st .canary.version)
phases=()
rolling_back_or_done() {
    watch_phases rolling_back || [ "${phases[-1]:-}" = rolled_back ]
}
# failure_threshold 3 checks at 1 s, then as long again for slack
wait_until $((UNHEALTHY_AFTER_S + 10)) "v4 rolling back" rolling_back_or_done
T_FLAP=$(($(now_ms) - T_UNHEALTHY))
check "v4: rolled back after its replicas turned unhealthy (phases ${phases[*]}, $T_FLAP ms after unhealthy, last_error '$(st .last_error)')" \
    test "${phases[-1]:-}" = rolling_back -o "${phases[-1]:-}" = rolled_back
if [ "${phases[-1]:-}" != rolling_back ] && [ "${phases[-1]:-}" != rolled_back ]; then
    # not rolled back: by hand, so that the test ends with v1 serving
    out=$("$ROLLD" rollback svc --state-dir "$STATE" 2>&1)
    log "v4 not rolled back ($(st .phase), traffic $(st .traffic.canary)): rolld rollback svc -> $out"
fi
wait_status 30 '.phase == "rolled_back" and .canary == null' ||
    fail "v4: not rolled back (phase $(st .phase))"
check_le "v4: unhealthy -> rolling back seen, ms (3 checks at 1 s + 2 s)" "$T_FLAP" 5000
FLAP_ERROR=$(st .last_error)
check "v4: last_error gives the reason: '$FLAP_ERROR'" test "${FLAP_ERROR#v4: canary unhealthy: }" != "$FLAP_ERROR"
check "v4 ($V4_ID) in rejected_versions" rejected "$V4_ID"
check "v4's replicas are stopped" wait_until 15 "v4 replicas to stop" no_replicas_of v4
checker_stop flapping
check_invariants flapping bound state empty
check_invariants flapping dead

burst after 1s >/dev/null
check_eq "after the rollbacks, unpinned requests reach" '["v1"]' "$(jq -c '.versions | keys' "$WORK/after.json")"
load_stop main
M=$WORK/main.json
served=$(rf "$M" .answered)
non2xx=$(rf "$M" .non2xx)
errors=$(conn_errors "$M")
check "continuous load answered requests" test "$served" -gt 0
check_eq "continuous load: non-2xx answers" 0 "$non2xx"
check_eq "continuous load: connection errors" 0 "$errors"

figure "$REPLICAS replicas, max_surge_percent $SURGE, canaries at 50% turning unhealthy ${UNHEALTHY_AFTER_S} s after their start (health period 1 s, failure_threshold 3)"
figure "v2 (does not recover): $CRASH_FIGURE"
figure "v2: $(jq -r '"checker \(.samples) samples, violations \(.violations | tojson)"' "$WORK/crash.summary.json")"
figure "v3 (on_failure: hold): canary_held +${T_HELD:-?} ms after unhealthy; rolld rollback -> rolled_back +${T_HOLD_DONE:-?} ms; violations $(jq -c .violations "$WORK/hold.summary.json")"
figure "v4 (recovers on restart): phases ${phases[*]}; rolling back +${T_FLAP:-?} ms after unhealthy; violations $(jq -c .violations "$WORK/flapping.summary.json")"
figure "continuous load through the three canaries: $served answered ($(jq -c .versions "$M")), failed: non-2xx $non2xx, connection errors $errors"
finish
