#!/usr/bin/env bash
# git_gate_signed: a policy with an approval gate at 50% that deploys only
# signed commits, on a real Git origin, with a real SSH key in an
# allowed-signers file.
#   - a signed v1 runs
#   - an unsigned v2 is not deployed: v1 keeps running and the status names
#     the commit and why
#   - a signed v2 starts a canary that stops at the gate (50%), not at 100%
#   - an unsigned commit that raises canary_percent does not release the gate
#   - a signed commit that raises it (the merged pull request) does: v2 completes
source "$(dirname "$0")/lib.sh"
for tool in git ssh-keygen; do
    command -v $tool >/dev/null || { echo "SKIP: $tool missing"; exit 77; }
done

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
it_setup
ssh-keygen -q -t ed25519 -N '' -C person@example.com -f "$WORK/key"
echo "person@example.com namespaces=\"git\" $(cat "$WORK/key.pub")" >"$WORK/allowed_signers"
GIT=(git -c user.name=Person -c user.email=person@example.com -c init.defaultBranch=main
     -c gpg.format=ssh -c "user.signingkey=$WORK/key.pub")

write_policy "[25, 50, 100]" 2s 20s
write_policy "[25, 50, 100]" 2s 20s --name gated
printf 'approval:\n  canary_percent: 50\nrequire_signed_commits: true\n' >>"$POL/gated.yaml"
SPEC_DEFAULTS=(--policy gated)

ORIGIN=$WORK/origin.git
CLONE=$WORK/clone
"${GIT[@]}" init -q --bare "$ORIGIN"
"${GIT[@]}" init -q "$CLONE"
"${GIT[@]}" -C "$CLONE" remote add origin "$ORIGIN"
SRC=$CLONE/services
mkdir -p "$SRC"

# push MESSAGE [-S]: commit everything (signed with -S) and push main
push() {
    "${GIT[@]}" -C "$CLONE" add -A
    "${GIT[@]}" -C "$CLONE" commit -q ${2:-} -m "$1"
    "${GIT[@]}" -C "$CLONE" push -q origin HEAD:main 2>>"$WORK/git.log"
    PUSHED=$("${GIT[@]}" -C "$CLONE" rev-parse HEAD)
}

cat >"$WORK/rolld.yaml" <<EOF
name: signed-agent
source:
  git:
    url: file://$ORIGIN
    directory: services
    fetch_interval: 60s
signing:
  allowed_signers: $WORK/allowed_signers
EOF

write_spec v1
push "svc v1" -S
"$ROLLD" run --config "$WORK/rolld.yaml" --state-dir "$STATE" --policies "$POL" \
    --port-range "$PORT_LOW-$PORT_HIGH" >>"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
AGENT_PIDS+=("$AGENT_PID")
wait_status 30 '.phase == "running" and .primary.version_name == "v1"' ||
    fatal "the signed v1 did not come up"
pass "the signed v1 runs"
check "a signed head is not refused" status_is '.source.refused_commit == null'

# ---- unsigned v2: refused ----
write_spec v2
push "svc v2, unsigned"
UNSIGNED=$PUSHED
check "the unsigned commit is named in the status" \
    wait_until 10 "refused_commit" status_is ".source.refused_commit.commit == \"$UNSIGNED\""
reason=$(st .source.refused_commit.reason)
log "refused: $reason"
check "the reason says it is not signed: '$reason'" grep -q "not signed" <<<"$reason"
check "no canary from an unsigned commit" hold_for 3 "no canary" status_is '.canary == null and .primary.version_name == "v1"'

# ---- signed v2: the canary stops at the gate ----
"${GIT[@]}" -C "$CLONE" commit -q --allow-empty -S -m "sign off v2"
"${GIT[@]}" -C "$CLONE" push -q origin HEAD:main 2>>"$WORK/git.log"
check "the signed v2 starts a canary" wait_status 15 '.canary.version_name == "v2"'
check "the canary stops at the approval gate, 50%" \
    wait_status 40 '.phase == "canary_paused" and .traffic.canary == 50'
check "the status names the gate and what releases it" \
    status_is '.rollout.gate.percent == 50 and .rollout.gate.released == false and (.rollout.gate.release | test("raises"))'
check "it stays at the gate" hold_for 5 "at the gate" status_is '.phase == "canary_paused" and .traffic.canary == 50'

# ---- an unsigned approval does not count ----
write_spec v2 --canary-percent 100
push "approve v2, unsigned"
check "an unsigned raise is refused" \
    wait_until 10 "refused raise" status_is ".source.refused_commit.commit == \"$PUSHED\""
check "the gate holds after an unsigned raise" hold_for 4 "still at the gate" status_is '.phase == "canary_paused" and .traffic.canary == 50'

# ---- the signed approval releases it ----
"${GIT[@]}" -C "$CLONE" commit -q --allow-empty -S -m "approve v2 (merged)"
"${GIT[@]}" -C "$CLONE" push -q origin HEAD:main 2>>"$WORK/git.log"
check "the signed raise releases the gate and v2 completes" \
    wait_status 60 '.phase == "running" and .primary.version_name == "v2"'
finish
