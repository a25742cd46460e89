#!/usr/bin/env bash
# surge25: a v1 -> v2 rollout of 8 replicas under rollout.max_surge_percent 25,
# under continuous load, sampled every 50 ms by invariants.pl (see
# surge_rollout.sh): canary 2 replicas; traffic 25%; primary 6; canary 4;
# traffic 50%; primary 4; canary 6; traffic 75%; primary 2; canary 8; traffic
# 100%; primary retired. Never more than 10 replicas alive, never traffic to a
# replica that is not ready, no failed request.
source "$(dirname "$0")/lib.sh"

REPLICAS=8
SURGE=25
# canary share : replicas alive per version
EXPECTED=(
    "0:v1=8,v2=0"
    "0:v1=8,v2=2"
    "25:v1=8,v2=2"
    "~25:v1=6,v2=2"
    "25:v1=6,v2=4"
    "50:v1=6,v2=4"
    "~50:v1=4,v2=4"
    "50:v1=4,v2=6"
    "75:v1=4,v2=6"
    "~75:v1=2,v2=6"
    "75:v1=2,v2=8"
    "100:v1=2,v2=8"
    "100:v1=0,v2=8"
)
source "$(dirname "$0")/surge_rollout.sh"
