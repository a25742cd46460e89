/*
 * classify.h - what a changed field means for running replicas.
 *
 * DESIGN.md rule 5: lightweight fields are applied to running replicas,
 * heavyweight fields replace replicas (an application-level field replaces
 * every deployment of that application, a deployment-level field only that
 * deployment, as in Ray Serve), and some fields can never change in place.
 * Pure.
 */
#ifndef ROLLD_CLASSIFY_H
#define ROLLD_CLASSIFY_H

#include <stddef.h>

#include "diff.h"
#include "spec.h"

enum change_class {
    CLASS_LIGHTWEIGHT,  /* applied to running replicas */
    CLASS_HEAVYWEIGHT,  /* replaces the affected replicas */
    CLASS_CANARY_ONLY,  /* a new version must start beside the old one */
};

struct change_scope {
    enum change_class class;
    /* replicas affected by a heavyweight change: application and deployment
     * names, deployment NULL meaning every deployment of the application,
     * application NULL meaning every application */
    const char *application;
    const char *deployment;
};

/* Classifies one change between old and new (new may be consulted for the
 * process backend's reconfigure path). Scope strings point into buffers of
 * the caller: app_buf and deployment_buf, 128 bytes each. */
struct change_scope classify_change(const struct change *change, const struct service_spec *new_spec,
                                    char *app_buf, char *deployment_buf);

const char *change_class_name(enum change_class class);

#endif
