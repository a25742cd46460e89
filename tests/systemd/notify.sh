#!/usr/bin/env bash
# notify: the real agent speaks systemd's notify protocol as rolld.service
# (Type=notify, WatchdogSec=) expects. The agent runs as the unit runs it
# (`rolld run --config FILE`) with NOTIFY_SOCKET on a datagram socket this
# test listens on (perl), WATCHDOG_USEC=2000000 and WATCHDOG_PID = its own pid
# (a bash wrapper that exports its $$ and execs the agent). Checked:
#   - READY=1 arrives once, only after the first pass: the service's status
#     file exists when it arrives, and it carries a STATUS= line;
#   - STATUS= lines make sense (they name the services and their phases) and
#     follow the service from creating to running;
#   - WATCHDOG=1 arrives from the loop at least every 3/4 of WATCHDOG_USEC
#     (sd-event pings between 1/2 and 3/4 of it), never late;
#   - SIGHUP: RELOADING=1, then READY=1 again;
#   - SIGTERM: STOPPING=1, exit 0, and the replicas keep running (what
#     KillMode=process relies on);
#   - started again with WATCHDOG_PID naming another process, the agent sends
#     READY=1 but no WATCHDOG=1 (sd_watchdog_enabled checks the pid).
# Uses tests/integration/lib.sh (temp dir, ports, cleanup by pid, deadlines).
source "$(dirname "$0")/../integration/lib.sh"

WATCHDOG_USEC=2000000

it_setup
write_policy "[50, 100]" 1s 30s
write_spec v1
cat >"$WORK/rolld.yaml" <<EOF
name: notify-test
state_dir: $STATE
policies_dir: $POL
source:
  directory: $SRC
router:
  ports: $PORT_LOW-$PORT_HIGH
EOF
"$ROLLD" run --config "$WORK/rolld.yaml" --check >/dev/null || fatal "the test's rolld.yaml is invalid"

# ---- the listener: one line per datagram, "MS STATUS_FILE_EXISTS A|B|C" ----

# listen_start NAME: a datagram socket $WORK/NAME.sock (notify_listener.pl);
# messages go to $WORK/NAME.log; listen_stop NAME ends it
declare -A LISTENER=()
listen_start() {
    local name=$1
    rm -f "$WORK/$name.stop" "$WORK/$name.log"
    perl "$(dirname "$0")/notify_listener.pl" "$WORK/$name.sock" "$WORK/$name.log" \
        "$WORK/$name.stop" "$STATE/status/svc.yaml" 2>>"$WORK/$name.listener.err" &
    LISTENER[$name]=$!
    CHECKER_PIDS+=("$!")
    wait_until 5 "the $name socket" test -S "$WORK/$name.sock" || fatal "the listener did not bind $WORK/$name.sock"
    : >>"$WORK/$name.log"
}

listen_stop() {
    local pid=${LISTENER[$1]}
    touch "$WORK/$1.stop"
    wait_until 5 "the $1 listener to stop" all_gone "$pid" || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# fields LOG: one line per field of each message, "MS STATUS_FILE_EXISTS FIELD"
fields() {
    awk '{ if (!match($0, /^[0-9]+ [01] /)) next
           head = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 1)
           n = split(rest, f, "|")
           for (i = 1; i <= n; i++) print head f[i] }' "$1"
}

# count LOG FIELD: how many fields equal FIELD (or start with it when it ends in =)
count() {
    fields "$1" | awk -v want="$2" '{ v = $0; sub(/^[0-9]+ [01] /, "", v) }
        (want ~ /=$/ ? index(v, want) == 1 : v == want) { n++ } END { print n + 0 }'
}

# value LOG FIELD: the values of fields FIELD=... in order
values() {
    fields "$1" | sed -n "s/^[0-9]* [01] $2=//p"
}

# message_with LOG FIELD: the fields of the first message holding FIELD, one a line
message_with() {
    awk -v want="$2" '{ if (!match($0, /^[0-9]+ [01] /)) next
        n = split(substr($0, RLENGTH + 1), f, "|")
        for (i = 1; i <= n; i++) if (f[i] == want) { for (j = 1; j <= n; j++) print f[j]; exit } }' "$1"
}

has_field() { [ "$(count "$1" "$2")" -gt 0 ]; }
count_at_least() { [ "$(count "$1" "$2")" -ge "$3" ]; }

# agent_start_notify SOCKET_NAME WATCHDOG_PID_MODE: the agent as systemd runs
# it; MODE "self" exports the agent's own pid, "other" this shell's
agent_start_notify() {
    local name=$1 mode=$2
    local wrapper='export WATCHDOG_PID=$$; exec "$@"'
    [ "$mode" = other ] && wrapper="export WATCHDOG_PID=$$; exec \"\$@\""
    NOTIFY_SOCKET=$WORK/$name.sock WATCHDOG_USEC=$WATCHDOG_USEC \
        bash -c "$wrapper" rolld-under-systemd "$ROLLD" run --config "$WORK/rolld.yaml" \
        >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    log "agent started, pid $AGENT_PID, NOTIFY_SOCKET=$WORK/$name.sock, WATCHDOG_PID $([ "$mode" = self ] && echo "= its pid" || echo "= $$ (another process)")"
}

# ---- the agent under "systemd" ----

listen_start main
L=$WORK/main.log
agent_start_notify main self

# READY=1: once, after the first pass
wait_until 30 "READY=1" has_field "$L" READY=1 || fatal "no READY=1 within 30 s"
pass "READY=1 after $WAITED_MS ms"
T_READY=$(fields "$L" | awk '$3 == "READY=1" { print $1; exit }')
check_eq "the service's status file existed when READY=1 arrived (the first pass was done)" 1 \
    "$(fields "$L" | awk '$3 == "READY=1" { print $2; exit }')"
check_eq "READY=1 messages so far" 1 "$(count "$L" READY=1)"
ready_status=$(message_with "$L" READY=1 | sed -n 's/^STATUS=//p')
check "READY=1 comes with a STATUS= line naming the services ('$ready_status')" \
    grep -Eq '^1 services?\b' <<<"$ready_status"

# STATUS= follows the service to running
wait_status 30 '.phase == "running"' || fatal "svc did not reach running"
status_says_running() { values "$L" STATUS | grep -Eq '\bservices?\b.*\b1 running\b'; }
if wait_until 10 "STATUS= saying 1 running" status_says_running; then
    pass "a STATUS= line says the service is running ('$(values "$L" STATUS | grep running | tail -n 1)')"
else
    fail "no STATUS= line says '1 running'; STATUS= lines: $(values "$L" STATUS | tr '\n' ';')"
fi
check "every STATUS= line is a summary of the services (or says it reloads or stops)" \
    test -z "$(values "$L" STATUS | grep -Ev 'services?|stopping|reading')"
check "consecutive STATUS= lines differ (sent on change only)" \
    test -z "$(values "$L" STATUS | uniq -d)"

# WATCHDOG=1 from the loop, from READY=1 on (when systemd's watchdog runs):
# wait until the pings after READY=1 cover 4 s, then look at the gaps
watchdog_times() {
    fields "$L" | awk -v t="$T_READY" '$3 == "WATCHDOG=1" && $1 >= t { print $1 }'
}
watchdog_span_ms() {
    watchdog_times | awk 'NR == 1 { first = $1 } { last = $1 } END { print last - first + 0 }'
}
watchdog_covers() { [ "$(watchdog_span_ms)" -ge "$1" ]; }
if wait_until 15 "WATCHDOG=1 over 4 s after READY=1" watchdog_covers 4000; then
    pass "WATCHDOG=1 over $(watchdog_span_ms) ms after READY=1: $(watchdog_times | wc -l) pings"
else
    fail "WATCHDOG=1 after READY=1: $(watchdog_times | wc -l) pings over $(watchdog_span_ms) ms"
fi
# the gaps, the first one measured from READY=1 (systemd's watchdog starts there)
gaps=$( (echo "$T_READY"; watchdog_times) | awk 'NR > 1 { print $1 - last } { last = $1 }')
max_gap=$(sort -n <<<"$gaps" | tail -n 1)
figure "watchdog: WATCHDOG_USEC $((WATCHDOG_USEC / 1000)) ms; gaps from READY=1 on: $(tr '\n' ' ' <<<"$gaps")ms"
bound=$((WATCHDOG_USEC * 3 / 4 / 1000 + 250))
check_le "the longest gap between WATCHDOG=1 (and from READY=1 to the first) is at most 3/4 of WATCHDOG_USEC (+250 ms)" \
    "${max_gap:-999999}" "$bound"
# systemd arms the watchdog at any WATCHDOG=1, also one sent before READY=1:
# then a first pass longer than WatchdogSec= (a slow initial clone) would be
# killed as a hang although TimeoutStartSec= allows it
before_ready=$(fields "$L" | awk -v t="$T_READY" '$3 == "WATCHDOG=1" && $1 < t' | wc -l)
known_bug "sd_event_set_watchdog pings at once, before the first pass" \
    "no WATCHDOG=1 before READY=1 ($before_ready sent)" test "$before_ready" -eq 0
check "no other process sent MAINPID= (HAProxy inherits NOTIFY_SOCKET)" test "$(count "$L" MAINPID=)" = 0

# SIGHUP: RELOADING=1, then READY=1 again
readies=$(count "$L" READY=1)
kill -HUP "$AGENT_PID"
reloaded() { has_field "$L" RELOADING=1 && count_at_least "$L" READY=1 $((readies + 1)); }
if wait_until 15 "RELOADING=1 and READY=1 after SIGHUP" reloaded; then
    order=$(fields "$L" | awk '$3 == "RELOADING=1" { r = NR } $3 == "READY=1" && r && NR > r { print "ok"; exit }')
    check_eq "SIGHUP: RELOADING=1 comes before the new READY=1" ok "$order"
else
    fail "SIGHUP: no RELOADING=1 followed by READY=1 ($(tr '\n' ';' <"$L" | tail -c 300))"
fi
check "SIGHUP: the agent says it read its config again" grep -q "SIGHUP: .*rolld.yaml read again" "$WORK/agent.log"

# SIGTERM: STOPPING=1, a clean exit, replicas keep running
kill -TERM "$AGENT_PID"
wait_until 15 "STOPPING=1" has_field "$L" STOPPING=1 && pass "SIGTERM: STOPPING=1 after $WAITED_MS ms" ||
    fail "SIGTERM: no STOPPING=1"
wait_until 15 "the agent to exit" all_gone "$AGENT_PID" || fail "the agent did not exit within 15 s of SIGTERM"
wait "$AGENT_PID"
check_eq "SIGTERM: the agent's exit status" 0 "$?"
stopping_status=$(message_with "$L" STOPPING=1 | sed -n 's/^STATUS=//p')
check "STOPPING=1 comes with a STATUS= line ('$stopping_status')" test -n "$stopping_status"
check_eq "replicas still running after the agent stopped (KillMode=process keeps them)" \
    "$REPLICAS" "$(replica_pids | wc -l)"
listen_stop main

# ---- WATCHDOG_PID naming another process: no watchdog pings ----

listen_start other
O=$WORK/other.log
agent_start_notify other other
wait_until 30 "READY=1 from the restarted agent" has_field "$O" READY=1 ||
    fatal "the restarted agent sent no READY=1 within 30 s"
pass "restarted: READY=1 after $WAITED_MS ms"
no_watchdog() { ! has_field "$O" WATCHDOG=1; }
# 1.5 times WATCHDOG_USEC: twice the longest gap sd-event leaves
if hold_for 3 "no WATCHDOG=1 while WATCHDOG_PID is another process" no_watchdog; then
    pass "no WATCHDOG=1 for 3 s while WATCHDOG_PID names another process"
else
    fail "WATCHDOG=1 sent although WATCHDOG_PID names another process"
fi
check_eq "replicas adopted by the restarted agent, none started again" "$REPLICAS" "$(replica_pids | wc -l)"
listen_stop other

finish
