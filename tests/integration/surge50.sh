#!/usr/bin/env bash
# surge50: a v1 -> v2 rollout of 7 replicas under rollout.max_surge_percent 50,
# under continuous load, sampled every 50 ms by invariants.pl (see
# surge_rollout.sh). The canary starts with 4 replicas (ceil(7 * 50 / 100));
# then traffic 50%, the primary down to 4, the canary up to 7, traffic 100%,
# the primary retired; never more than 11 replicas alive, never traffic to a
# replica that is not ready, no failed request.
source "$(dirname "$0")/lib.sh"

REPLICAS=7
SURGE=50
# canary share : replicas alive per version
EXPECTED=(
    "0:v1=7,v2=0"
    "0:v1=7,v2=4"
    "50:v1=7,v2=4"
    "~50:v1=4,v2=4"
    "50:v1=4,v2=7"
    "100:v1=4,v2=7"
    "100:v1=0,v2=7"
)
source "$(dirname "$0")/surge_rollout.sh"
