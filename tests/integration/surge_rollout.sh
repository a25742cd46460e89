# surge_rollout.sh: the body of surge50.sh and surge25.sh (sourced by them
# after lib.sh, with REPLICAS, SURGE and EXPECTED set): a v1 -> v2 canary
# rollout under rollout.max_surge_percent SURGE, with continuous load, while
# invariants.pl samples HAProxy's servers (show servers state on the admin
# socket), the model-server processes of the state dir and state.json every
# 50 ms. At every sample: replicas alive (draining included) <= REPLICAS per
# version and, in all, <= the schedule's peak (ceil(REPLICAS * capacity / 100)
# per version: ceil(REPLICAS * (100 + SURGE) / 100) here); capacity(primary)
# + capacity(canary) <= 100 + SURGE and traffic(v) <= capacity(v) in state.json;
# every server that takes traffic has a live, healthy replica behind it (the
# replicas answer 503 on /healthz for their first second, --start-delay 1, so
# traffic to a replica that is not ready yet is caught); each version's share
# of the split backend's weights is at most its share of the replicas. The
# samples must pass through EXPECTED (canary share:v1 count,v2 count; the
# schedule of DESIGN.md rule 4) in order. A state marked ~ may fall between two
# samples: the canary grows in the very pass in which the primary's last drained
# replica is gone, so "primary down" and "canary up" often show in one sample;
# that the primary went down first is what the bound proves (no sample over it).
# No request fails.

BOUND=$(surge_peak_replicas "$REPLICAS" "$SURGE")
FIRST_CANARY=$(((REPLICAS * SURGE + 99) / 100))

it_setup
write_policy "[5, 10, 20, 30, 50, 75, 100]" 3s 30s
SPEC_DEFAULTS=(--args ', "--start-delay", "1"')
start_v1

before=$(frontend_requests)
load_start main 2
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the continuous load does not reach HAProxy"

milestones=$(IFS=';'; echo "${EXPECTED[*]}")
checker_start rollout --max-per-version "$REPLICAS" --max-total "$BOUND" --surge "$SURGE" \
    --replicas "$REPLICAS" --health --share --canary v2 --milestones "$milestones"
RELOADS_BEFORE=$(haproxy_reloads)
write_spec v2 --surge "$SURGE"
T0=$SAVED_MS
log "saved v2 with max_surge_percent $SURGE ($REPLICAS replicas: at most $BOUND at once, the canary starts with $FIRST_CANARY)"

if wait_status 20 '.canary.version_name == "v2"'; then
    check_eq "status rollout.max_surge_percent" "$SURGE" "$(st .rollout.max_surge_percent)"
else
    fail "no v2 canary 20 s after the save (phase $(st .phase))"
fi
if wait_status 90 '.phase == "running" and .primary.version_name == "v2" and .canary == null'; then
    T_DONE=$(($(now_ms) - T0))
    pass "rollout complete: v2 is primary ($T_DONE ms after the save)"
else
    fail "rollout did not complete within 90 s (phase $(st .phase), traffic $(st .traffic.canary))"
    diagnostics
fi
check "v1's replicas are stopped" wait_until 30 "v1 replicas to stop" no_replicas_of v1
checker_stop rollout
S=$CHECKER_SUMMARY

check_invariants rollout bound state empty dead health share
matched=$(jq -r .milestones_matched "$S")
check_eq "the schedule's states seen in order (of ${#EXPECTED[@]})" "${#EXPECTED[@]}" "$matched"
if [ "$matched" != "${#EXPECTED[@]}" ]; then
    log "expected next: ${EXPECTED[$matched]}; transitions seen:"
    jq -r '"\(.share.v2 // 0 | floor):v1=\(.alive.v1 // 0),v2=\(.alive.v2 // 0)"' "$WORK/rollout.samples" |
        uniq | head -n 40 | sed 's/^/    /'
fi
check_eq "most replicas alive at once (the surge is used, not exceeded)" "$BOUND" "$(jq -r .max_total "$S")"
check_eq "most v2 replicas alive while v1 still had all $REPLICAS" "$FIRST_CANARY" \
    "$(jq -s '[.[] | select((.alive.v1 // 0) == '"$REPLICAS"') | .alive.v2 // 0] | max' "$WORK/rollout.samples")"
shifts=$(st '[.history[] | select(.event == "traffic_shifted") | .detail | capture("(?<n>[0-9]+)%").n] | join(" ")')
want_shifts=$(for m in "${EXPECTED[@]}"; do m=${m#\~}; echo "${m%%:*}"; done | uniq | grep -vx 0 | tr '\n' ' ')
check_eq "traffic steps in the history" "${want_shifts% }" "$shifts"
check_eq "HAProxy reloads during the rollout (runtime API only)" 0 "$(($(haproxy_reloads) - ${RELOADS_BEFORE:-0}))"
check_eq "v2 replicas ready" "$REPLICAS" "$(st '[.primary.replicas[].ready] | add')"

load_stop main
M=$WORK/main.json
served=$(rf "$M" .answered)
non2xx=$(rf "$M" .non2xx)
errors=$(conn_errors "$M")
check "continuous load answered requests" test "$served" -gt 0
check_eq "continuous load: non-2xx answers" 0 "$non2xx"
check_eq "continuous load: connection errors" 0 "$errors"
check "continuous load saw both versions" test "$(jq -r '.versions | has("v1") and has("v2")' "$M")" = true

figure "max_surge_percent $SURGE, $REPLICAS replicas: bound $BOUND replicas alive, canary starts with $FIRST_CANARY"
figure "save -> rollout complete: ${T_DONE:-?} ms"
figure "checker: $(jq -r .samples "$S") samples (one per $(jq -r .interval_ms "$S") ms); violations $(jq -c .violations "$S"); most alive: $(jq -c .max_alive "$S"), $(jq -r .max_total "$S") in all"
figure "schedule seen (canary share:v1,v2 alive @ ms after the checker's start):"
figure "  $(jq -r '[.milestones[] | "\(.milestone)@\(.at_ms // (if .skipped then "between-samples" else "missed" end))"] | join("  ")' "$S")"
figure "continuous load: $served answered ($(jq -c .versions "$M")), failed: non-2xx $non2xx, connection errors $errors, p99 $(($(rf "$M" .p99_us) / 1000)) ms"
finish
