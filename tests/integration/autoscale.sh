#!/usr/bin/env bash
# autoscale: a deployment with autoscaling_config (min 1, max 6, target 2
# requests in flight per replica, upscale_delay_s 1, downscale_delay_s 3) on
# replicas that take 200 ms per request. Under 8 concurrent connections
# HAProxy counts about 8 requests in flight: the agent scales up to at least
# 4 replicas; when the load stops it scales back down to 1, draining the
# extra replicas first: no failed request at any time.
source "$(dirname "$0")/lib.sh"

it_setup
write_policy "[50, 100]" 2s 30s

write_autoscaled_spec() {
    local tmp=$WORK/svc.yaml.new
    cat >"$tmp" <<EOF
name: svc
version_name: v1
image_uri: registry.example.com/model:v1
http_options:
  host: 127.0.0.1
  port: $HTTP_PORT
applications:
  - name: app
    route_prefix: /
    import_path: app:deployment
    deployments:
      - name: Model
        autoscaling_config:
          min_replicas: 1
          initial_replicas: 1
          max_replicas: 6
          target_ongoing_requests: 2
          upscale_delay_s: 1
          downscale_delay_s: 3
        health_check_period_s: 1
        health_check_timeout_s: 2
        graceful_shutdown_timeout_s: 5
rollout:
  policy: production
backend:
  process:
    applications:
      - name: app
        command: ["$MODEL_SERVER", "--port", "{port}", "--latency-ms", "200"]
        health_path: /healthz
EOF
    mv "$tmp" "$SRC/svc.yaml"
}

replica_count() { replica_pids | wc -l; }
test_one_replica() { [ "$(replica_count)" -eq 1 ]; }
desired() { st '.primary.replicas | map(.desired) | add'; }
ready() { st '.primary.replicas | map(.ready) | add'; }

write_autoscaled_spec
agent_start
wait_status 30 '.phase == "running" and (.primary.replicas | map(.ready) | add) == 1' ||
    fatal "the autoscaled service did not come up with 1 replica"
check_eq "replicas at rest" 1 "$(replica_count)"
check_eq "the status shows the autoscaling bounds" "1-6" \
    "$(st '.primary.replicas[0].autoscaling | "\(.min_replicas)-\(.max_replicas)"')"
wait_until 10 "the frontend answers" frontend_answers || fatal "HAProxy does not answer"

before=$(frontend_requests)
T0=$(now_ms)
load_start main 0
wait_until 10 "the load to flow through HAProxy" load_flowing "${before:-0}" ||
    fatal "the load does not reach HAProxy"

if wait_status 30 '(.primary.replicas | map(.desired) | add) >= 4 and (.primary.replicas | map(.ready) | add) >= 4'; then
    T_UP=$(($(now_ms) - T0))
    pass "scaled up under load to $(ready) ready replicas ($T_UP ms after the load started)"
else
    fail "did not scale up to 4 replicas under load (desired $(desired), ready $(ready))"
    diagnostics
fi
check_le "never above max_replicas" "$(replica_count)" 6
UP_REPLICAS=$(ready)

load_stop main
T1=$(now_ms)
M=$WORK/main.json
answered=$(rf "$M" '.answered')
failed=$(($(rf "$M" '.non2xx') + $(conn_errors "$M")))
check "the load was answered ($answered requests)" test "$answered" -gt 100
check_eq "failed requests while scaling up" 0 "$failed"

# a trickle of requests goes on while the extra replicas drain and stop
load_start quiet 2000
if wait_status 30 '(.primary.replicas | map(.desired) | add) == 1'; then
    T_DOWN=$(($(now_ms) - T1))
    pass "scaled down to 1 after the load stopped ($T_DOWN ms)"
else
    fail "did not scale down to 1 (desired $(desired))"
    diagnostics
fi
check "the extra replicas stop" wait_until 30 "one replica left" test_one_replica
load_stop quiet
Q=$WORK/quiet.json
quiet_failed=$(($(rf "$Q" '.non2xx') + $(conn_errors "$Q")))
check_eq "failed requests while scaling down" 0 "$quiet_failed"

figure "autoscale: 8 connections on 200 ms replicas: up to $UP_REPLICAS replicas in ${T_UP:-?} ms, back to 1 in ${T_DOWN:-?} ms after the load stopped; $answered answered, $((failed + quiet_failed)) failed"
finish
