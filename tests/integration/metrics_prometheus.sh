#!/usr/bin/env bash
# metrics_prometheus: the agent's /metrics endpoint (--metrics-listen) as a
# real Prometheus server (Debian's package, started here on loopback with its
# own config and data dir, never the system service) scrapes it every second,
# read back through Prometheus' HTTP API (/api/v1/query):
#   - /healthz answers 200 once the first pass is done, the target is up;
#   - v1 -> v2 canary: Prometheus saw the canary phase and canary traffic
#     during the rollout; after it, phase running, v2 primary at 100% traffic
#     with ready == desired replicas, no canary series left, started and
#     completed counters at 1, reconcile passes counted in the histogram;
#   - v3 never healthy: rolled back at the start deadline, counted under
#     reason="start_deadline", phase rolled_back, v2 still at 100%.
# Exits 77 (skipped) when prometheus is not installed (apt-get install prometheus).
source "$(dirname "$0")/lib.sh"

START_TIMEOUT_S=5
PROMETHEUS=${PROMETHEUS:-$(command -v prometheus)}
if [ -z "$PROMETHEUS" ] || [ ! -x "$PROMETHEUS" ]; then
    echo "SKIP: prometheus is not installed (apt-get install prometheus)"
    exit 77
fi

it_setup
# two ports of the block pick_ports found free (replicas use HTTP_PORT+10 and up)
METRICS_PORT=$((HTTP_PORT + 1))
PROM_PORT=$((HTTP_PORT + 2))
PROM=http://127.0.0.1:$PROM_PORT
METRICS=http://127.0.0.1:$METRICS_PORT
write_policy "[25, 50, 100]" 2s "${START_TIMEOUT_S}s"

# ---- Prometheus, ours alone ----
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: rolld
    static_configs:
      - targets: ['127.0.0.1:$METRICS_PORT']
EOF
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
# it_cleanup kills WRK_PIDS (by pid, SIGKILL) on any exit: Prometheus with them
WRK_PIDS+=("$PROM_PID")
log "prometheus started, pid $PROM_PID, on 127.0.0.1:$PROM_PORT, scraping 127.0.0.1:$METRICS_PORT"

prom_ready() {
    curl -sf --max-time 2 "$PROM/-/ready" >/dev/null
}
if ! wait_until 60 "prometheus to be ready" prom_ready; then
    tail -n 20 "$WORK/prometheus.log" | sed 's/^/  prometheus: /'
    fatal "prometheus did not start"
fi
pass "prometheus ready after $WAITED_MS ms"

# prom_query PROMQL: the value of the query's first result, "" when it has none
prom_query() {
    curl -s --max-time 3 --data-urlencode "query=$1" "$PROM/api/v1/query" 2>/dev/null |
        jq -r 'if .status == "success" then (.data.result[0].value[1] // "") else "error: \(.error)" end' 2>/dev/null
}

# prom_has PROMQL: the query has a result (a comparison that holds)
prom_has() {
    local value
    value=$(prom_query "$1")
    [ -n "$value" ] && [ "${value#error}" = "$value" ]
}

# prom_empty PROMQL: the query has no result
prom_empty() {
    [ -z "$(prom_query "$1")" ]
}

# wait_prom TIMEOUT_S PROMQL: polls Prometheus until the query has a result
wait_prom() {
    wait_until "$1" "prometheus: $2" prom_has "$2"
}

# check_prom DESCRIPTION EXPECTED PROMQL: the value Prometheus has now
check_prom() {
    check_eq "$1 [$3]" "$2" "$(prom_query "$3")"
}

S='service="svc"'

# ---- the agent, v1 ----
AGENT_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")
start_v1

healthz() {
    curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$METRICS/healthz" 2>/dev/null
}
check_eq "/healthz after the first pass" 200 "$(healthz)"
headers=$(curl -s --max-time 2 -D - -o "$WORK/metrics.txt" "$METRICS/metrics" | tr -d '\r')
check "/metrics is the text format 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' <<<"$headers"
check "/metrics has the phase of svc" grep -q "^rolld_service_phase{$S,phase=\"running\"} 1\$" "$WORK/metrics.txt"
check_eq "/nope" 404 "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$METRICS/nope")"

if wait_prom 30 'up{job="rolld"} == 1'; then
    pass "prometheus scrapes the agent (target up after $WAITED_MS ms)"
else
    curl -s --max-time 3 "$PROM/api/v1/targets" | jq -c '.data.activeTargets[]? | [.health, .lastError]' | sed 's/^/  target: /'
    fatal "the agent's target is not up in prometheus"
fi
check "prometheus has svc running v1 at 100%" wait_prom 15 \
    "rolld_traffic_percent{$S,version=\"v1\",role=\"primary\"} == 100 and on() rolld_service_phase{$S,phase=\"running\"} == 1"
check_prom "build info" 1 'rolld_build_info'
check_prom "rollouts started before any canary" 0 "rolld_rollouts_started_total{$S}"

# ---- v1 -> v2 ----
write_spec v2
T0=$SAVED_MS
if wait_status 60 '.phase == "running" and .primary.version_name == "v2" and .canary == null'; then
    pass "v2 rolled out ($(($(now_ms) - T0)) ms after the save)"
else
    diagnostics
    fatal "the v2 rollout did not complete"
fi
if wait_prom 15 "rolld_traffic_percent{$S,version=\"v2\",role=\"primary\"} == 100"; then
    pass "prometheus: v2 is the primary at 100% ($WAITED_MS ms after the status said so)"
else
    fail "prometheus never saw v2 as the primary at 100%"
fi
# one more scrape after the status changed, so that every series has moved
wait_prom 15 "rolld_rollouts_completed_total{$S} == 1" || fail "completed_total never reached 1"
check_prom "phase running" 1 "rolld_service_phase{$S,phase=\"running\"}"
check_prom "phase canary_progressing now" 0 "rolld_service_phase{$S,phase=\"canary_progressing\"}"
check_prom "phases that are 1 at once" 1 "sum(rolld_service_phase{$S})"
check_prom "rollouts started" 1 "rolld_rollouts_started_total{$S}"
check_prom "rollouts completed" 1 "rolld_rollouts_completed_total{$S}"
check_prom "rollbacks" 0 "sum(rolld_rollouts_rolled_back_total{$S})"
check_prom "v2's traffic" 100 "rolld_traffic_percent{$S,version=\"v2\",role=\"primary\"}"
check_prom "v2's desired replicas" "$REPLICAS" "rolld_replicas_desired{$S,version=\"v2\",role=\"primary\"}"
check "v2's ready replicas reach the desired ones" wait_prom 15 \
    "rolld_replicas_ready{$S,version=\"v2\",role=\"primary\"} == $REPLICAS"
check "no series of v1 or of a canary after the rollout" wait_until 10 "v1's series to go stale" \
    prom_empty "count(rolld_traffic_percent{$S,version=\"v1\"} or rolld_traffic_percent{$S,role=\"canary\"} or rolld_replicas_desired{$S,role=\"canary\"})"
check_prom "versions of svc with a traffic series" 1 "count(rolld_traffic_percent{$S})"
# what Prometheus saw during the rollout (steps of 2 s, scrapes every 1 s)
check_prom "the canary phase was seen during the rollout" 1 \
    "max_over_time(rolld_service_phase{$S,phase=\"canary_progressing\"}[10m])"
check "canary traffic was seen during the rollout" prom_has \
    "max_over_time(rolld_traffic_percent{$S,version=\"v2\",role=\"canary\"}[10m]) >= 25"
PASSES=$(prom_query 'rolld_reconcile_duration_seconds_count')
check "reconcile passes counted (${PASSES:-none})" test "${PASSES:-0}" -gt 0
check_prom "the histogram's +Inf bucket is its count" 1 \
    'rolld_reconcile_duration_seconds_bucket{le="+Inf"} == bool on() rolld_reconcile_duration_seconds_count'
P99=$(prom_query 'histogram_quantile(0.99, rolld_reconcile_duration_seconds_bucket)')
check "histogram_quantile works on the histogram (p99 $P99 s)" test -n "$P99"

# ---- v3 never becomes healthy: a rollback at the start deadline ----
write_spec v3 --args ', "--never-healthy"'
if wait_status $((START_TIMEOUT_S + 30)) '.phase == "rolled_back"'; then
    pass "v3 rolled back on its own"
else
    diagnostics
    fail "v3 was not rolled back"
fi
if wait_prom 15 "rolld_rollouts_rolled_back_total{$S,reason=\"start_deadline\"} == 1"; then
    pass "prometheus: one rollback for start_deadline"
else
    fail "prometheus never counted the start_deadline rollback"
fi
wait_prom 15 "rolld_service_phase{$S,phase=\"rolled_back\"} == 1" || fail "phase rolled_back never seen"
check_prom "rollouts started" 2 "rolld_rollouts_started_total{$S}"
check_prom "rollouts completed" 1 "rolld_rollouts_completed_total{$S}"
check_prom "rollbacks of every other reason" 0 \
    "sum(rolld_rollouts_rolled_back_total{$S,reason!=\"start_deadline\"})"
check_prom "v2 keeps 100% of the traffic" 100 "rolld_traffic_percent{$S,version=\"v2\",role=\"primary\"}"
check "no series of v3 left" wait_until 15 "v3's series to go stale" \
    prom_empty "count(rolld_traffic_percent{$S,version=\"v3\"} or rolld_replicas_desired{$S,version=\"v3\"})"
check "prometheus saw v3 as a canary" prom_has \
    "max_over_time(rolld_replicas_desired{$S,version=\"v3\",role=\"canary\"}[10m]) > 0"

SAMPLES=$(prom_query 'scrape_samples_scraped{job="rolld"}')
SCRAPE=$(prom_query 'max_over_time(scrape_duration_seconds{job="rolld"}[10m])')
figure "prometheus $("$PROMETHEUS" --version 2>&1 | head -n 1 | awk '{print $3}'), scrape every 1 s: $SAMPLES samples per scrape, slowest scrape ${SCRAPE:-?} s"
figure "reconcile passes: ${PASSES:-?}; p99 duration ${P99:-?} s (histogram_quantile)"

stop_pids "$PROM_PID"
check "prometheus stopped" all_gone "$PROM_PID"
finish
