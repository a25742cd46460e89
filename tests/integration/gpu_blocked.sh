#!/usr/bin/env bash
# gpu_blocked: the agent's config file (rolld.yaml, inventory: gpus:
# [0, 1, 2, 3, 4]) declares 5 GPUs; svc has 7 replicas of
# num_gpus 0.5 (v1 takes 4 devices). v2 under max_surge_percent 50 would need
# 6 devices at its peak (7 + 4 replicas, then 4 + 7), so it is blocked: phase
# blocked, last_error names the GPUs and the largest max_surge_percent that fits
# (28: 7 + 2 replicas, 6 + 4, 4 + 6, 2 + 7, never over 10 halves), no v2
# replica starts, and v1 serves on. Lowering max_surge_percent to that number
# in the spec lets the rollout run to completion. All along, invariants.pl
# checks every 50 ms that each replica's CUDA_VISIBLE_DEVICES is one device of
# the list and that no device holds more than 2 replicas (0.5 each), as well
# as the surge bound and traffic only to live, healthy replicas; state.json's
# replicas[].gpus agree with the processes' environment. No request fails.
source "$(dirname "$0")/lib.sh"

REPLICAS=7
GPUS=0,1,2,3,4
EXPECTED_FIT=28

it_setup
write_policy "[5, 10, 20, 30, 50, 75, 100]" 2s 30s
# the inventory comes from the agent's config file; the command line adds the rest
printf 'source:\n  directory: %s\ninventory:\n  gpus: [%s]\n' "$SRC" "${GPUS//,/, }" >"$WORK/rolld.yaml"
AGENT_ARGS=(--config "$WORK/rolld.yaml")
SPEC_DEFAULTS=(--gpus 0.5 --args ', "--start-delay", "1"')

checker_start all --max-per-version "$REPLICAS" --replicas "$REPLICAS" --health --share \
    --gpus "$GPUS" --gpu-fraction 0.5 --canary v2
start_v1

# state.json's record of the devices against the processes' environment
gpus_agree() {
    local pid recorded actual bad=0
    while read -r pid recorded; do
        actual=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^CUDA_VISIBLE_DEVICES=//p')
        if [ "$actual" != "$recorded" ]; then
            log "replica pid $pid: state.json says gpus '$recorded', its environment '$actual'"
            bad=1
        fi
    done < <(jq -r '.replicas[] | select(.pid > 0 and (.state == "ready" or .state == "starting")) | "\(.pid) \(.gpus)"' "$STATE/state.json")
    [ $bad = 0 ]
}
check "v1: state.json replicas[].gpus = each process's CUDA_VISIBLE_DEVICES" gpus_agree
check_eq "v1: devices in use" "0 1 2 3" \
    "$(jq -r '[.replicas[].gpus] | unique | join(" ")' "$STATE/state.json")"

before=$(frontend_requests)
load_start main 2
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the continuous load does not reach HAProxy"

# ---- v2 under surge 50: blocked ----
write_spec v2 --surge 50
if wait_status 15 '.phase == "blocked"'; then
    pass "v2 under max_surge_percent 50 is blocked ($WAITED_MS ms after the save)"
else
    fatal "v2 is not blocked 15 s after the save (phase $(st .phase), canary $(st .canary.version_name))"
fi
error=$(st .last_error)
log "last_error: $error"
check "last_error names the GPUs: '$error'" grep -q "GPU" <<<"$error"
fit=$(sed -n 's/.*largest max_surge_percent that fits is \([0-9]*\).*/\1/p' <<<"$error")
check_eq "last_error: the largest max_surge_percent that fits" "$EXPECTED_FIT" "$fit"
check "history has a 'blocked' event" test "$(st '[.history[].event] | index("blocked") != null')" = true
still_blocked() {
    status_is '.phase == "blocked" and .canary == null and .primary.version_name == "v1" and .traffic.canary == 0' &&
        no_replicas_of v2
}
if hold_for 4 "blocked, nothing started" still_blocked; then
    pass "stays blocked for 4 s: no canary, no v2 replica ($HELD_POLLS polls)"
else
    fail "the blocked v2 moved: phase $(st .phase), canary $(st .canary.version_name), v2 pids $(replica_pids_of_version v2 | tr '\n' ' ')"
fi
check_eq "v1 replicas while blocked" "$REPLICAS" "$(replica_pids_of_version v1 | wc -l)"
blocked_samples=$(jq -s '[.[] | select(.phase == "blocked")] | length' "$WORK/all.samples")
check "the checker saw the blocked phase ($blocked_samples samples)" test "$blocked_samples" -gt 20
check_eq "samples in phase blocked with a v2 replica alive" 0 \
    "$(jq -s '[.[] | select(.phase == "blocked" and (.alive.v2 // 0) > 0)] | length' "$WORK/all.samples")"

# ---- the surge that fits ----
fit=${fit:-$EXPECTED_FIT}
# the schedule's peak in replicas: 6 + 4 (72% and 56% of 7, each rounded up)
BOUND=$(surge_peak_replicas "$REPLICAS" "$fit")
checker_start rollout --max-per-version "$REPLICAS" --max-total "$BOUND" --surge "$fit" \
    --replicas "$REPLICAS" --health --share --gpus "$GPUS" --gpu-fraction 0.5 --canary v2
write_spec v2 --surge "$fit"
T0=$SAVED_MS
if wait_status 15 '.canary.version_name == "v2"'; then
    pass "max_surge_percent $fit: the v2 canary started ($WAITED_MS ms after the save)"
else
    fail "max_surge_percent $fit: no v2 canary (phase $(st .phase), last_error $(st .last_error))"
    diagnostics
fi
check "v2 starts with $(((REPLICAS * fit + 99) / 100)) replicas" wait_until 10 "v2 replicas" \
    test "$(replica_pids_of_version v2 | wc -l)" -eq $(((REPLICAS * fit + 99) / 100))
if wait_status 80 '.phase == "running" and .primary.version_name == "v2" and .canary == null'; then
    T_DONE=$(($(now_ms) - T0))
    pass "rollout under max_surge_percent $fit complete ($T_DONE ms after the save)"
else
    fail "rollout under max_surge_percent $fit did not complete (phase $(st .phase), traffic $(st .traffic.canary), last_error $(st .last_error))"
    diagnostics
fi
check "v1's replicas are stopped" wait_until 30 "v1 replicas to stop" no_replicas_of v1
check "v2: state.json replicas[].gpus = each process's CUDA_VISIBLE_DEVICES" gpus_agree
check_eq "v2 replicas ready" "$REPLICAS" "$(st '[.primary.replicas[].ready] | add')"
checker_stop rollout
check_invariants rollout bound state empty dead health share gpu
check_eq "most replicas alive at once under max_surge_percent $fit" "$BOUND" "$(jq -r .max_total "$WORK/rollout.summary.json")"
checker_stop all
check_invariants all empty dead health share gpu
check_eq "most replicas on one device (all samples)" 2 "$(jq -r '[.max_gpu[]] | max' "$WORK/all.summary.json")"
check_eq "devices ever used" "0 1 2 3 4" "$(jq -r '.max_gpu | keys | join(" ")' "$WORK/all.summary.json")"

load_stop main
M=$WORK/main.json
served=$(rf "$M" .answered)
non2xx=$(rf "$M" .non2xx)
errors=$(conn_errors "$M")
check "continuous load answered requests" test "$served" -gt 0
check_eq "continuous load: non-2xx answers" 0 "$non2xx"
check_eq "continuous load: connection errors" 0 "$errors"

figure "--gpus $GPUS, $REPLICAS replicas x num_gpus 0.5; max_surge_percent 50 -> blocked: $error"
figure "max_surge_percent $fit: save -> rollout complete ${T_DONE:-?} ms; most replicas alive $(jq -r .max_total "$WORK/rollout.summary.json") (bound $BOUND)"
figure "replicas per device, most at any sample: $(jq -c .max_gpu "$WORK/all.summary.json"); checker: $(jq -r .samples "$WORK/all.summary.json") samples, violations $(jq -c .violations "$WORK/all.summary.json")"
figure "continuous load: $served answered ($(jq -c .versions "$M")), failed: non-2xx $non2xx, connection errors $errors"
finish
