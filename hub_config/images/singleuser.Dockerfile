# The single-user image of hub_config/z2jh-values.yaml: a tenant's JupyterLab server and its
# owner-only dashboard servers (Voila), with the workbench installed from this repository.
#
#   docker build -f hub_config/images/singleuser.Dockerfile -t REGISTRY/workbench-singleuser:VERSION .
#
# Base: the official python:3.11-slim-bookworm, the same as the hub image (why: hub.Dockerfile).
# Nothing of a tenant is in it: no WORKBENCH_HOME, no keys; a tenant's files live on the home
# volume the chart mounts at /home/jovyan, and its database role comes from the hub at start.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/workbench/venv/bin:$PATH

# the workbench exactly as `pip install .` installs it (pyproject.toml; no lock file)
COPY pyproject.toml README.md /src/
COPY workbench /src/workbench
COPY templates /src/templates
COPY notebooks /src/notebooks
RUN python -m venv /opt/workbench/venv \
 && pip install /src \
 && rm -rf /src

# the example notebooks (copied into a new home at start) and the dashboard notebooks (run
# from here), and the strategy templates, root-owned: read-only to the tenant
COPY notebooks /opt/workbench/notebooks
COPY templates /opt/workbench/templates
COPY hub_config/images/singleuser-start.sh /usr/local/bin/workbench-start
RUN chmod 0755 /usr/local/bin/workbench-start

# the tenant's account: uid 1000, group users (100), as the chart's singleuser.uid and .fsGid
RUN useradd --uid 1000 --gid 100 --no-create-home --home-dir /home/jovyan --shell /bin/bash jovyan \
 && mkdir -p /home/jovyan \
 && chown 1000:100 /home/jovyan
USER 1000
WORKDIR /home/jovyan
ENV HOME=/home/jovyan
EXPOSE 8888
ENTRYPOINT ["/usr/local/bin/workbench-start"]
CMD ["jupyterhub-singleuser"]
