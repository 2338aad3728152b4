# The hub image of hub_config/z2jh-values.yaml (JupyterHub Helm chart 4.4.0): JupyterHub, the
# workbench service and the idle cullers, with the workbench installed from this repository.
#
#   docker build -f hub_config/images/hub.Dockerfile -t REGISTRY/workbench-hub:VERSION .
#
# Base: the official python:3.11-slim-bookworm, the same as the single-user image, rather than
# quay.io/jupyterhub/k8s-hub:4.4.0, whose frozen requirements (JupyterHub, the idle culler,
# NativeAuthenticator) would be a second dependency list beside pyproject.toml's, on another
# Python. One base for both images puts the workbench at the same path in both, which the hub
# relies on when it names package folders to a tenant's pod (workbench/hub/_kube.py).
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/workbench/venv/bin:$PATH

# the workbench exactly as `pip install .` installs it (pyproject.toml: its dependencies and
# their pinned minimums; the repository has no lock file). Besides it, the hub needs what the
# chart's own hub configuration imports and the workbench does not: KubeSpawner, and pycurl
# for tornado's curl client (its wheels bundle libcurl).
COPY pyproject.toml README.md /src/
COPY workbench /src/workbench
COPY templates /src/templates
COPY notebooks /src/notebooks
RUN python -m venv /opt/workbench/venv \
 && pip install /src "jupyterhub-kubespawner==7.0.0" "pycurl==7.46.0" \
 && rm -rf /src

# the one-machine configuration that hub.extraConfig runs (workbench/hub/_kube.py)
COPY hub_config/jupyterhub_config.py /opt/workbench/hub_config/jupyterhub_config.py

# the chart runs the hub as uid 1000 in /srv/jupyterhub (its volume: the hub's sqlite, WORKBENCH_HOME)
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /srv/jupyterhub --shell /usr/sbin/nologin jupyterhub \
 && mkdir -p /srv/jupyterhub \
 && chown 1000:1000 /srv/jupyterhub
USER 1000
WORKDIR /srv/jupyterhub
EXPOSE 8081 8011
CMD ["jupyterhub", "--config", "/usr/local/etc/jupyterhub/jupyterhub_config.py"]
