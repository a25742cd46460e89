#!/usr/bin/env bash
# canary_rollout: v1 -> v2 under continuous load (wrk, 8 connections, for the
# whole rollout): no non-2xx answer and no connection error; at each traffic step
# a measuring burst of at least 2,000 requests sees the canary's share within 2
# percentage points of the step; pinned requests (X-Rolld-Version: primary,
# canary, v2) reach only their version during the rollout; and the time from
# saving the YAML to the first traffic change is measured.
source "$(dirname "$0")/lib.sh"

STEPS=(5 10 20 30 50 75 100)
TOLERANCE=2       # percentage points
MIN_REQUESTS=2000 # per measuring burst

it_setup
write_policy "[$(IFS=,; echo "${STEPS[*]}" | sed 's/,/, /g')]" 8s 30s
start_v1

# the load runs before the change so that it sees the first v2 answer
before=$(frontend_requests)
load_start main 2
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the continuous load does not reach HAProxy"

RELOADS_BEFORE=$(haproxy_reloads)
log "saving v2"
write_spec v2
T0=$SAVED_MS

if wait_traffic_change 30; then
    T_STATUS=$(($(now_ms) - T0))
    pass "traffic moved to the canary ($T_STATUS ms after the save, by status)"
else
    load_stop main
    fatal "no traffic reached the canary within 30 s of the save"
fi
V2_VERSION=$(st '.canary.version')

split_rows=()
for step in "${STEPS[@]}"; do
    if ! wait_status 20 ".traffic.canary >= $step or .phase == \"running\""; then
        fail "step $step: not reached within 20 s"
        diagnostics
        break
    fi
    at=$(($(now_ms) - T0))
    seen=$(st '.traffic.canary')
    if [ "$seen" != "$step" ]; then
        fail "step $step: the test saw traffic.canary=$seen (phase $(st .phase)) instead; the step went by unmeasured"
        split_rows+=("$(printf '%3d%%   (not measured: status showed %s)' "$step" "$seen")")
        continue
    fi
    # the measuring burst
    burst "step$step" 1s >/dev/null
    after=$(st '.traffic.canary')
    # then pinned requests to each version, together (they go to the pinned
    # backends and do not need the split to hold still)
    burst "pin-primary-$step" 1s primary 2 >/dev/null &
    p1=$!
    burst "pin-canary-$step" 1s canary 2 >/dev/null &
    p2=$!
    burst "pin-name-$step" 1s v2 2 >/dev/null &
    p3=$!
    wait $p1 $p2 $p3
    file=$WORK/step$step.json
    answered=$(rf "$file" '.answered')
    share=$(canary_share "$file" v2)
    primary_n=$(rf "$file" '.versions.v1 // 0')
    canary_n=$(rf "$file" '.versions.v2 // 0')
    bad=$(($(rf "$file" '.non2xx') + $(conn_errors "$file")))
    split_rows+=("$(printf '%3d%%   measured %5s%% canary  (v1 %5d, v2 %5d, failed %d, at +%d.%03d s)' \
        "$step" "$share" "$primary_n" "$canary_n" "$bad" $((at / 1000)) $((at % 1000)))")
    if [ "$after" != "$step" ]; then
        fail "step $step: traffic moved to $after during the burst; measurement void"
    else
        check "step $step: burst of $answered requests (>= $MIN_REQUESTS)" test "$answered" -ge "$MIN_REQUESTS"
        check "step $step: canary share $share% within $TOLERANCE points of $step%" within "$share" "$step" "$TOLERANCE"
        check_eq "step $step: burst failures (non-2xx + connection errors)" 0 "$bad"
    fi
    for pin in primary canary name; do
        f=$WORK/pin-$pin-$step.json
        case $pin in primary) want=v1 ;; *) want=v2 ;; esac
        # at 100% the old primary retires within the burst and "primary"
        # passes to v2, which is about to be promoted; never to nothing
        if [ "$pin" = primary ] && [ "$step" = 100 ]; then
            want_any='["v1"],["v2"],["v1","v2"]'
        else
            want_any="[\"$want\"]"
        fi
        header=$pin
        [ $pin = name ] && header=v2
        got=$(jq -c '.versions' "$f")
        n=$(rf "$f" '.answered')
        bad=$(($(rf "$f" '.non2xx') + $(conn_errors "$f")))
        if [ "$n" -gt 0 ] && [ "$(jq -r "[.versions | keys] | inside([$want_any])" "$f")" = true ] && [ "$bad" = 0 ]; then
            pass "step $step: X-Rolld-Version: $header -> only $want ($n requests)"
        else
            fail "step $step: X-Rolld-Version: $header should reach only $want: answers $got, $bad failed of $n"
        fi
    done
done

if wait_status 30 '.phase == "running" and .primary.version_name == "v2" and .canary == null'; then
    T_DONE=$(($(now_ms) - T0))
    pass "rollout complete: v2 is primary ($T_DONE ms after the save)"
else
    fail "rollout did not complete"
    diagnostics
fi
check "the canary's version id is the primary's now" test "$(st .primary.version)" = "$V2_VERSION"
check "v1's replicas are stopped" wait_until 30 "v1 replicas to stop" no_replicas_of v1
check_eq "HAProxy reloads during the rollout (traffic moved by the runtime API only)" 0 \
    "$(($(haproxy_reloads) - ${RELOADS_BEFORE:-0}))"
burst after 1s >/dev/null
check_eq "after the rollout, unpinned requests reach" '["v2"]' "$(jq -c '.versions | keys' "$WORK/after.json")"

load_stop main
M=$WORK/main.json
if [ "$(rf "$M" '.missing // false')" = true ]; then
    fail "the continuous load printed no result"
    tail -n 5 "$WORK/main.wrk"
fi
served=$(rf "$M" '.answered')
non2xx=$(rf "$M" '.non2xx')
errors=$(conn_errors "$M")
check "continuous load answered requests" test "$served" -gt 0
check_eq "continuous load: non-2xx answers" 0 "$non2xx"
check_eq "continuous load: connection errors (connect+read+write+timeout)" 0 "$errors"
check "continuous load saw both versions" test "$(jq -r '.versions | has("v1") and has("v2")' "$M")" = true
first_v2=$(rf "$M" '.first_ms.v2 // 0')
if [ "$first_v2" -gt 0 ]; then
    T_FIRST=$((first_v2 - T0))
    check "first unpinned v2 answer came after the save" test "$T_FIRST" -gt 0
else
    T_FIRST=unknown
    fail "the continuous load never saw v2"
fi

figure "continuous load (wrk -t2 -c8, 2 ms pause per request), whole rollout:"
figure "  requests answered: $served  (v1 $(rf "$M" '.versions.v1 // 0'), v2 $(rf "$M" '.versions.v2 // 0'))"
figure "  failed: non-2xx $non2xx, connection errors $errors ($(jq -c '.errors' "$M")), p99 latency $(($(rf "$M" '.p99_us') / 1000)) ms"
figure "policy steps [${STEPS[*]}], step_duration 8s; measured split per step (1 s unpinned wrk burst, -c8):"
for row in "${split_rows[@]}"; do
    figure "  $row"
done
figure "save -> first traffic change: first unpinned v2 answer +$T_FIRST ms; status traffic.canary > 0 seen +${T_STATUS:-?} ms"
figure "save -> rollout complete (v2 primary, v1 stopping): +${T_DONE:-?} ms"
finish
