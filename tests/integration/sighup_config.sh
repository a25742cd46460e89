#!/usr/bin/env bash
# sighup_config: rolld.yaml is read again on SIGHUP. The host declares one
# GPU; svc's one replica takes it, so the v2 canary (another whole GPU) is
# blocked. An invalid config file sent with SIGHUP changes nothing (the agent
# keeps running, the log names file:line:col). A valid one declaring two GPUs
# unblocks the rollout, which completes, with no restart of the agent.
source "$(dirname "$0")/lib.sh"

REPLICAS=1
it_setup
write_policy "[50, 100]" 1s 20s
CONFIG=$WORK/rolld.yaml
inventory() { # GPU list
    printf 'source:\n  directory: %s\ninventory:\n  gpus: [%s]\n' "$SRC" "$1" >"$CONFIG"
}
inventory 0
AGENT_ARGS=(--config "$CONFIG")
SPEC_DEFAULTS=(--gpus 1)
start_v1
AGENT=$AGENT_PID

write_spec v2
check "v2 is blocked on one GPU" wait_status 15 '.phase == "blocked"'
log "blocked: $(st .last_error)"
check "the reason names the GPUs" grep -qi gpu <<<"$(st .last_error)"

# an invalid file: nothing changes, the agent says where
printf 'source:\n  directory: %s\ninventory:\n  gpus: [0, 1\n' "$SRC" >"$CONFIG"
kill -HUP "$AGENT"
invalid_logged() { grep -q "$CONFIG:.*" "$WORK/agent.log" && grep -q "is invalid; the config is unchanged" "$WORK/agent.log"; }
check "an invalid config is refused with its place in the log" wait_until 10 "the refusal" invalid_logged
check "the agent still runs" test -d "/proc/$AGENT"
check "still blocked after the invalid config" hold_for 2 "blocked" status_is '.phase == "blocked"'

# two GPUs: the rollout goes on
inventory "0, 1"
kill -HUP "$AGENT"
check "v2 completes after SIGHUP with two GPUs" \
    wait_status 40 '.phase == "running" and .primary.version_name == "v2"'
check_eq "the same agent process" "$AGENT" "$AGENT_PID"
check "the agent logged the reload" grep -q "SIGHUP: $CONFIG read again" "$WORK/agent.log"
finish
