/*
 * capacity.h - the surge arithmetic of a canary rollout (DESIGN.md rule 4).
 *
 * A schedule is a list of steps; each step gives the canary's share of
 * traffic and each version's capacity, in percent of steady state. Between
 * two consecutive steps exactly one of traffic, primary capacity or canary
 * capacity changes, so an agent that applies a step's change and waits
 * before the next keeps the invariants at every instant:
 *   traffic(canary) <= capacity(canary), traffic(primary) <= capacity(primary),
 *   and with max surge S, capacity(primary) + capacity(canary) <= 100 + S.
 * Replica counts round up: ceil(n * capacity / 100). Pure.
 */
#ifndef ROLLD_CAPACITY_H
#define ROLLD_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>

struct capacity_step {
    int traffic;  /* percent of requests to the canary; the primary gets the rest */
    int primary;  /* capacity of the primary, percent */
    int canary;   /* capacity of the canary, percent */
};

/* Room enough for any schedule: start, 100 policy steps, a pause, retire. */
#define CAPACITY_MAX_STEPS 310

/* Replicas for a capacity: ceil(n * percent / 100); 7 at 50% -> 4. */
int capacity_replicas(int n, int percent);

/*
 * Fills out[] with the schedule and returns the step count.
 * max_surge: 1..100, or 0 for none (the canary starts at full capacity and
 * traffic follows policy_steps). canary_percent: -1 for none, else the
 * traffic percent at which the progression pauses (the schedule ends there).
 * A schedule that reaches 100% traffic ends with the primary retired
 * (capacity 0).
 */
size_t capacity_schedule(int max_surge, int canary_percent, const int *policy_steps,
                         size_t policy_step_count, struct capacity_step *out);

/* True when a step keeps the invariants for max_surge (0: unbounded). */
bool capacity_step_valid(const struct capacity_step *step, int max_surge);

#endif
