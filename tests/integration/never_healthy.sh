#!/usr/bin/env bash
# never_healthy: v2's replicas never pass their health check (model-server
# --never-healthy); with start_timeout 5s the canary is rolled back on its own
# (phase rolled_back, last_error about the start deadline, v2 rejected, its
# replicas stopped), it never gets traffic, and under continuous load the
# primary never stops serving: no non-2xx answer, no connection error.
source "$(dirname "$0")/lib.sh"

START_TIMEOUT_S=5

it_setup
write_policy "[5, 10, 20, 30, 50, 75, 100]" 3s "${START_TIMEOUT_S}s"
start_v1

before=$(frontend_requests)
load_start main 2
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the continuous load does not reach HAProxy"

write_spec v2 --args ', "--never-healthy"'
T0=$SAVED_MS
if wait_status 15 '.canary.version_name == "v2"'; then
    pass "the v2 canary started ($(st .phase))"
else
    fatal "no v2 canary after 15 s"
fi
V2_ID=$(st .canary.version)
check "v2's replicas run (and stay unhealthy)" wait_until 10 "v2 replicas" has_replicas_of v2

# until the rollback, the canary never gets traffic
max_canary_traffic=0
phases=()
watch() {
    local doc phase traffic
    doc=$(svc_json)
    [ -n "$doc" ] || return 1
    phase=$(jq -r .phase <<<"$doc")
    traffic=$(jq -r .traffic.canary <<<"$doc")
    [ "$traffic" -gt "$max_canary_traffic" ] && max_canary_traffic=$traffic
    if [ ${#phases[@]} -eq 0 ] || [ "${phases[-1]}" != "$phase" ]; then
        phases+=("$phase")
    fi
    [ "$phase" = rolled_back ]
}
if wait_until $((START_TIMEOUT_S + 25)) "phase rolled_back" watch; then
    T_ROLLED_BACK=$(($(now_ms) - T0))
    pass "rolled back on its own, $T_ROLLED_BACK ms after the save (start_timeout ${START_TIMEOUT_S}s)"
else
    fail "not rolled back $((START_TIMEOUT_S + 25)) s after the save (phase $(st .phase))"
    diagnostics
fi
log "phases seen: ${phases[*]}"
check_eq "the unhealthy canary's highest traffic share" 0 "$max_canary_traffic"
check "not rolled back before the start deadline (${T_ROLLED_BACK:-0} ms >= $((START_TIMEOUT_S * 1000)) ms)" \
    test "${T_ROLLED_BACK:-0}" -ge $((START_TIMEOUT_S * 1000))
error=$(st .last_error)
log "last_error: $error"
check "last_error mentions the start deadline: '$error'" grep -qi "start deadline" <<<"$error"
check "last_error names v2" grep -q "v2" <<<"$error"
check_eq "primary after the rollback" v1 "$(st .primary.version_name)"
check_eq "canary after the rollback" null "$(st .canary)"
check "v2 ($V2_ID) is in rejected_versions [$(st '.rejected_versions | join(",")')]" \
    test "$(st ".rejected_versions | index(\"$V2_ID\") != null")" = true
check "v2's replicas are stopped" wait_until 15 "v2 replicas to stop" no_replicas_of v2
check_eq "v1 replicas running" "$REPLICAS" "$(replica_pids_of_version v1 | wc -l)"

load_stop main
M=$WORK/main.json
served=$(rf "$M" .answered)
non2xx=$(rf "$M" .non2xx)
errors=$(conn_errors "$M")
check "continuous load answered requests" test "$served" -gt 0
check_eq "continuous load: non-2xx answers" 0 "$non2xx"
check_eq "continuous load: connection errors" 0 "$errors"
check_eq "continuous load: versions that answered" '["v1"]' "$(jq -c '.versions | keys' "$M")"

figure "never-healthy v2, start_timeout ${START_TIMEOUT_S}s: save -> rolled_back ${T_ROLLED_BACK:-?} ms; phases ${phases[*]}"
figure "last_error: $error"
figure "continuous load (wrk -t2 -c8) during the failed canary: $served answered ($(jq -c .versions "$M")), non-2xx $non2xx, connection errors $errors"
finish
