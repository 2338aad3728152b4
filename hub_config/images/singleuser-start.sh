#!/bin/sh
# The single-user image's start: a JupyterLab server first copies into the tenant's home the
# example notebooks it lacks (never overwriting the tenant's edits, never following a link:
# workbench/hub/_provision.py), then runs what the spawner asked for. A dashboard server
# (WORKBENCH_SESSION_ID set) runs the package's notebook and leaves the home alone.
set -eu
if [ -z "${WORKBENCH_SESSION_ID:-}" ]; then
    python -I -m workbench.hub._provision /home/jovyan /opt/workbench/notebooks \
        || echo "workbench-start: the example notebooks were not copied into /home/jovyan" >&2
fi
exec "$@"
