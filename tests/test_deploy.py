"""The Kubernetes deployment (``hub_config/``): images, Helm values, tenant pods.

Nothing here needs a cluster, a registry or Docker:

- the Dockerfiles are read statically: each installs the workbench from this repository as
  ``pip install`` does (no requirements list beside pyproject.toml), runs as a non-root user,
  copies nothing of a running workbench (``var/``, a home) and names the paths
  ``workbench/hub/_kube.py`` relies on; every image the values name is built by one of them,
  under the name and tag the README's build instructions give;
- ``z2jh-values.yaml``, merged over the chart's defaults as helm merges them, is valid under
  the JupyterHub chart's own schema (both vendored in ``hub_config/schema/``);
- the chart's own hub configuration (vendored) runs on those values, with their
  ``hub.extraConfig``, and ``KubeTenantSpawner`` builds the pods of a tenant's JupyterLab and
  dashboard servers from the result: what they carry (the tenant's database URL, never a
  trusted secret), how they run (not root, no privilege escalation, read-only image,
  resources bounded) and what they run;
- the network policies keep tenant pods away from the hub's internals.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shlex
import sys
import tomllib
import types
from pathlib import Path

import jsonschema
import pytest
import yaml

kubespawner = pytest.importorskip("kubespawner", reason="jupyterhub-kubespawner is in the dev extra")

from kubernetes_asyncio.client import ApiClient  # noqa: E402  (kubespawner's dependency)
from tornado import web  # noqa: E402
from tornado.httpclient import AsyncHTTPClient  # noqa: E402
from traitlets.config import Config  # noqa: E402

from workbench import store  # noqa: E402
from workbench.hub import _kube, _spawner  # noqa: E402
from workbench.hub._settings import SERVICE_NAME, dashboard_environment  # noqa: E402
from workbench.hub._spawner import TRUSTED_ONLY_ENV  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HUB_CONFIG = ROOT / "hub_config"
SCHEMA_DIR = HUB_CONFIG / "schema"
IMAGES = HUB_CONFIG / "images"
DOCKERFILES = {"hub": IMAGES / "hub.Dockerfile", "singleuser": IMAGES / "singleuser.Dockerfile"}
CHART_VERSION = "4.4.0"

# what the hub pod's secret holds in these tests: none of it may reach a tenant's pod
SECRETS = {
    "WORKBENCH_DATABASE_URL": "postgresql://workbench:owner-canary-pw@db.internal:5432/workbench",
    "WORKBENCH_MASTER_KEY": "master-key-canary-3f9a",
    "WORKBENCH_DB_ROLE_SECRET": "role-secret-canary-77c1",
    "DATABASE_URL": "postgresql://workbench:owner-canary-pw@db.internal:5432/workbench",
}
TENANT_URL = "postgresql+psycopg://workbench_alice:derived-pw@db.internal:5432/workbench"
POD_IP = "10.42.0.7"


# --- helpers ----------------------------------------------------------------------------------


def values() -> dict:
    return yaml.safe_load((HUB_CONFIG / "z2jh-values.yaml").read_text())


def helm_merge(defaults, override):
    """Helm's merge of user values over a chart's: maps merge key by key, anything else
    (lists included) replaces, and null removes the key."""
    if not isinstance(defaults, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = copy.deepcopy(defaults)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(defaults.get(key), value)
    return merged


def chart_values() -> dict:
    """The values helm renders the chart with: the chart's defaults, ours over them."""
    return helm_merge(yaml.safe_load((SCHEMA_DIR / "z2jh-values.defaults.yaml").read_text()), values())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def exec_form_or_words(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The arguments of every ``pip install`` the Dockerfile runs."""
    commands = []
    for keyword, arguments in instructions(dockerfile):
        if keyword == "RUN":
            for command in re.split(r"&&|;", arguments):
                words = shlex.split(command)
                for start in range(len(words)):
                    if words[start : start + 2] == ["pip", "install"] or words[start : start + 4] == [
                        "python",
                        "-m",
                        "pip",
                        "install",
                    ]:
                        commands.append(words[start + (2 if words[start] == "pip" else 4) :])
    return commands


def copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY and ADD."""
    found = []
    for keyword, arguments in instructions(dockerfile):
        if keyword in ("COPY", "ADD"):
            words = [w for w in exec_form_or_words(arguments) if not w.startswith("--")]
            found.append((words[:-1], words[-1]))
    return found


def package_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def images_named(tree, path="") -> list[tuple[str, str]]:
    """(where, "name:tag") of every image the values name: image mappings and image strings."""
    found = []
    if isinstance(tree, dict):
        image = tree.get("image")
        if isinstance(image, dict) and "name" in image:
            found.append((f"{path}.image", f"{image['name']}:{image.get('tag', 'latest')}"))
        elif isinstance(image, str):
            found.append((f"{path}.image", image))
        for key, value in tree.items():
            if key != "image":
                found += images_named(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += images_named(value, f"{path}[{index}]")
    return found


# --- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize("image", DOCKERFILES)
def test_each_image_installs_the_workbench_from_the_repository_as_pip_does(image):
    dockerfile = DOCKERFILES[image]
    context = {
        (dest + Path(src).name if dest.endswith("/") else dest): src
        for srcs, dest in copies(dockerfile)
        for src in srcs
    }
    installs = pip_installs(dockerfile)
    assert len(installs) == 1, f"{image}: one pip install, the project's: {installs}"
    arguments = installs[0]
    project = [a for a in arguments if a in ("/src", "/src/", ".")]
    assert project == ["/src"], f"{image}: the project itself is installed: {arguments}"
    # /src holds the package definition and the package, from the repository
    assert context.get("/src/pyproject.toml") == "pyproject.toml"
    assert context.get("/src/workbench") == "workbench"
    # no separate list of requirements or constraints that could drift from pyproject.toml
    assert not [a for a in arguments if a.startswith(("-r", "--requirement", "-c", "--constraint"))], arguments
    assert not [src for srcs, _ in copies(dockerfile) for src in srcs if "requirements" in src or "constraints" in src]
    # anything else installed is not one of the workbench's dependencies (whose versions
    # pyproject.toml alone decides)
    ours = {package_name(r) for r in pyproject()["project"]["dependencies"]} | {"workbench"}
    extras = [a for a in arguments if a not in project and not a.startswith("-")]
    assert not {package_name(a) for a in extras} & ours, f"{image}: pins a dependency of the workbench: {extras}"
    if extras:  # the hub's additions are the dev extra's, so the tests run what the hub runs
        dev = {package_name(r) for r in pyproject()["project"]["optional-dependencies"]["dev"]}
        assert {package_name(a) for a in extras} - {"pycurl"} <= dev, extras


@pytest.mark.parametrize("image", DOCKERFILES)
def test_each_image_runs_as_a_non_root_user_and_holds_nothing_of_a_tenant(image):
    dockerfile = DOCKERFILES[image]
    steps = instructions(dockerfile)
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users, f"{image}: no USER: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    assert users[-1].split(":")[0].isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    for sources, destination in copies(dockerfile):
        for source in sources:
            assert not source.startswith(("/", "~", "..", "http:", "https:")), source
            assert source not in (".", "./", "*"), f"{image}: copies the whole repository"
            top = Path(source).parts[0]
            assert top not in ("var", ".venv", "home", "root", ".git", "hub"), f"{image}: copies {source}"
        assert not destination.startswith(("/home", "/root", "/srv")), f"{image}: writes into a home: {destination}"
    baked = " ".join(arguments for keyword, arguments in steps if keyword in ("ENV", "ARG"))
    for secret in ("WORKBENCH_HOME", "MASTER_KEY", "DATABASE_URL", "ROLE_SECRET"):
        assert secret not in baked, f"{image}: bakes {secret}"
    # the build context itself excludes var/ and the virtualenv (.dockerignore: deny, then allow)
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    assert not [line for line in ignore if line.startswith("!") and line[1:].split("/")[0] in ("var", ".venv", ".git")]


def test_both_images_share_one_python_and_the_layout_the_spawner_names():
    bases = {image: [a for k, a in instructions(path) if k == "FROM"] for image, path in DOCKERFILES.items()}
    assert bases["hub"] == bases["singleuser"] == ["python:3.11-slim-bookworm"], bases
    required = pyproject()["project"]["requires-python"]
    assert required == ">=3.11", required
    for image, path in DOCKERFILES.items():
        text = re.sub(r"\\\n", " ", path.read_text())
        assert f"python -m venv {_kube.IMAGE_VENV}" in text, image
        env = " ".join(a for k, a in instructions(path) if k == "ENV")
        assert f"PATH={_kube.IMAGE_VENV}/bin:$PATH" in env, image
    single = copies(DOCKERFILES["singleuser"])
    assert (["notebooks"], _kube.IMAGE_NOTEBOOKS) in single
    assert (ROOT / "notebooks" / "dashboards" / "session.ipynb").is_file()
    assert (["templates"], "/opt/workbench/templates") in single
    assert (["hub_config/jupyterhub_config.py"], _kube.IMAGE_HUB_CONFIG) in copies(DOCKERFILES["hub"])
    # the single-user image fills a new home from its notebooks, then runs the spawner's command
    entry = [a for k, a in instructions(DOCKERFILES["singleuser"]) if k == "ENTRYPOINT"]
    assert entry == ['["/usr/local/bin/workbench-start"]']
    start = (IMAGES / "singleuser-start.sh").read_text()
    assert f"-m workbench.hub._provision /home/jovyan {_kube.IMAGE_NOTEBOOKS}" in start
    assert start.rstrip().endswith('exec "$@"')


def test_every_image_the_values_name_is_built_here_as_the_readme_says():
    readme = (HUB_CONFIG / "README.md").read_text()
    built = dict(
        re.findall(r"docker build -f hub_config/images/(\w+)\.Dockerfile -t REGISTRY/([\w-]+):VERSION \.", readme)
    )
    assert set(built) == set(DOCKERFILES), built
    version = pyproject()["project"]["version"]
    named = images_named(values())
    assert named
    for where, image in named:
        reference, _, tag = image.rpartition(":")
        repository = reference.rsplit("/", 1)[-1]
        assert repository in built.values(), f"{where}: {image} is built by no Dockerfile here"
        assert tag == version, f"{where}: {image}: images are tagged with the workbench's version {version}"
    assert {image for _, image in named} == {f"registry.example.com/{name}:{version}" for name in built.values()}
    assert (
        f"--version {CHART_VERSION}" in readme
        and f"--version {CHART_VERSION}" in (HUB_CONFIG / "z2jh-values.yaml").read_text()
    )


# --- the chart's schema -----------------------------------------------------------------------


def test_the_vendored_chart_files_name_their_version_and_licence():
    for name in ("z2jh-values.schema.yaml", "z2jh-values.defaults.yaml", "z2jh_jupyterhub_config.py"):
        header = (SCHEMA_DIR / name).read_text()[:600]
        assert f"tag {CHART_VERSION}" in header and "BSD-3-Clause" in header, name
    assert "BSD 3-Clause License" in (SCHEMA_DIR / "LICENSE").read_text()


def test_the_values_are_valid_under_the_charts_schema():
    schema = yaml.safe_load((SCHEMA_DIR / "z2jh-values.schema.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(chart_values()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_misspelt_value():
    schema = yaml.safe_load((SCHEMA_DIR / "z2jh-values.schema.yaml").read_text())
    wrong = chart_values()
    wrong["singleuser"]["networkPolicy"]["egressAllowRule"] = {"privateIPs": False}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(wrong))


# --- the chart's hub configuration and the tenant pods ----------------------------------------


def fake_z2jh(chart: dict) -> types.ModuleType:
    """The chart's z2jh helper module, reading the values from memory instead of the hub
    pod's mounted secret (its get_config and set_config_if_not_none, as in the chart)."""
    module = types.ModuleType("z2jh")

    def get_config(key, default=None):
        value = chart
        for level in key.split("."):
            if not isinstance(value, dict) or level not in value:
                return default
            value = value[level]
        return value

    def set_config_if_not_none(cparent, name, key):
        data = get_config(key)
        if data is not None:
            setattr(cparent, name, data)

    module.get_config, module.set_config_if_not_none = get_config, set_config_if_not_none
    module.get_name = lambda name: name  # the chart's resource names (no fullnameOverride)
    module.get_name_env = lambda name, suffix="": {"hub": "8081", "proxy-api": "8001"}[name]
    # the secrets the chart generates itself (cookie secret, CryptKeeper keys); no others are set
    generated = {"hub.config.JupyterHub.cookie_secret": "b" * 64, "hub.config.CryptKeeper.keys": "a" * 64}
    module.get_secret_value = lambda key, default=None: generated.get(key, default)
    return module


@pytest.fixture
def hub_config(monkeypatch, tmp_path) -> Config:
    """The hub's configuration as the chart's hub pod builds it from these values."""
    chart = chart_values()
    # the hub pod's environment: hub.extraEnv, secrets and the downward API filled in
    for name, value in chart["hub"]["extraEnv"].items():
        monkeypatch.setenv(name, value if isinstance(value, str) else SECRETS.get(name, POD_IP))
    monkeypatch.setenv("DATABASE_URL", SECRETS["DATABASE_URL"])
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))  # (the pod's volume)
    monkeypatch.setitem(sys.modules, "z2jh", fake_z2jh(chart))
    monkeypatch.setattr(sys, "path", list(sys.path))
    # the chart's hub image has pycurl for tornado's curl client; this machine need not
    monkeypatch.setattr(AsyncHTTPClient, "configure", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(_kube, "IMAGE_HUB_CONFIG", str(HUB_CONFIG / "jupyterhub_config.py"))
    c = Config()
    source = SCHEMA_DIR / "z2jh_jupyterhub_config.py"
    exec(compile(source.read_text(), str(source), "exec"), {"get_config": lambda: c, "__file__": str(source)})
    return c


def test_the_charts_hub_runs_the_workbench_configuration_and_keeps_its_cluster_wiring(hub_config):
    c = hub_config
    assert c.JupyterHub.spawner_class == "workbench.hub._kube.KubeTenantSpawner"
    assert c.JupyterHub.authenticator_class == "workbench.hub._auth.WorkbenchAuthenticator"
    assert c.JupyterHub.admin_access is False, "admins do not get into tenants' servers (the chart's default)"
    # where the chart binds the hub and reaches it and the proxy, not the one-machine loopback
    assert c.JupyterHub.hub_bind_url == "http://:8081"
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api:8001"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.db_url == "sqlite:///jupyterhub.sqlite"
    assert "bind_url" not in c.JupyterHub and "command" not in c.ConfigurableHTTPProxy
    services = {service["name"]: service for service in c.JupyterHub.services}
    # the service binds the host of its URL: the pod's own address, which the proxy reaches
    assert services[SERVICE_NAME]["url"] == f"http://{POD_IP}:8011"
    assert {"idle-culler-lab", "idle-culler-dashboards"} <= set(services)
    assert {role["name"] for role in c.JupyterHub.load_roles} >= {"user", "workbench-service", "idle-culler"}
    assert "JUPYTERHUB_ACTIVITY_INTERVAL" in c.KubeSpawner.environment


class MockUser:
    """The hub's user object, as far as a spawner reads it (kubespawner's tests do the same)."""

    def __init__(self, name: str):
        self.name, self.id, self.escaped_name = name, 7, name
        self.url = f"/user/{name}/"
        self.server = None
        self.orm_user = None


def tenant_pod(hub_config, monkeypatch, server_name: str = "") -> dict:
    """The pod manifest KubeTenantSpawner's start() asks Kubernetes for (as a plain dict)."""
    monkeypatch.setattr(_spawner, "provision", lambda name, settings: None)
    monkeypatch.setattr(store, "tenant_url", lambda name: TENANT_URL)

    async def create_pod(self):  # instead of talking to the cluster
        return await self.get_pod_manifest()

    monkeypatch.setattr(kubespawner.KubeSpawner, "start", create_pod)
    # no Kubernetes API: the client is never used to build a manifest
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kwargs: None)
    monkeypatch.setattr(kubespawner.spawner, "shared_client", lambda name: None)
    server = types.SimpleNamespace(name=server_name, server=None, state=None, last_activity=None)
    spawner = _kube.KubeTenantSpawner(config=hub_config, user=MockUser("alice"), orm_spawner=server, _mock=True)
    spawner.api_token = "server-token"

    async def start() -> dict:
        pod = await spawner.start()
        async with ApiClient() as client:  # (its serializer only: no request is made)
            return client.sanitize_for_serialization(pod)

    return asyncio.run(start())


def check_tenant_container(pod: dict) -> dict:
    """What every tenant pod must be; the server's container is returned."""
    text = json.dumps(pod)
    for secret in SECRETS.values():
        assert secret not in text, "a trusted secret reached the tenant's pod"
    (container,) = pod["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["WORKBENCH_TENANT_DATABASE_URL"] == TENANT_URL
    assert env["WORKBENCH_SERVICE_URL"] == f"http://hub:8011/services/{SERVICE_NAME}/"
    assert not set(TRUSTED_ONLY_ENV) & set(env), set(TRUSTED_ONLY_ENV) & set(env)
    context = container["securityContext"]
    assert context["runAsUser"] == 1000 and context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True, "the image (Python, the package) is read-only"
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert not context.get("privileged")
    assert pod["spec"]["securityContext"]["fsGroup"] == 100
    for other in pod["spec"].get("initContainers", []):
        assert not other.get("securityContext", {}).get("privileged"), other["name"]
    resources = container["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"} and set(resources["limits"]) >= {"cpu", "memory"}
    # writable: the tenant's home volume and a /tmp of the pod's own; nothing else is mounted
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert set(mounts) == {"/home/jovyan", "/tmp"}, set(mounts)
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert set(volumes) == {mount["name"] for mount in mounts.values()}
    assert not pod["spec"].get("automountServiceAccountToken", False), "no Kubernetes API token in the pod"
    return container


def test_a_tenants_lab_pod_has_its_own_database_url_no_secret_and_runs_unprivileged(hub_config, monkeypatch):
    pod = tenant_pod(hub_config, monkeypatch)
    container = check_tenant_container(pod)
    home = {volume["name"]: volume for volume in pod["spec"]["volumes"]}[
        {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}["/home/jovyan"]
    ]
    assert home["persistentVolumeClaim"] == {"claimName": "claim-alice"}, "the tenant's own home volume"
    assert container["image"] == "registry.example.com/workbench-singleuser:0.1.0"
    assert container["args"][:2] == ["jupyterhub-singleuser", "--ServerApp.root_dir=/home/jovyan"]
    assert "--KernelManager.transport=ipc" in container["args"]


def test_a_dashboard_pod_runs_voila_only_on_the_packages_notebook(hub_config, monkeypatch):
    pod = tenant_pod(hub_config, monkeypatch, "dash-12")
    container = check_tenant_container(pod)
    # not the tenant's home volume (nor a volume per session): an empty home of the pod's own
    assert not [volume for volume in pod["spec"]["volumes"] if "persistentVolumeClaim" in volume]
    assert {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}[
        "/home/jovyan"
    ] == "dashboard-home"
    assert container["args"] == [
        "python",
        "-m",
        "workbench.hub._dashboard",
        f"{_kube.IMAGE_NOTEBOOKS}/dashboards/session.ipynb",
    ]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["WORKBENCH_SESSION_ID"] == "12"
    # IPython and Jupyter read the package's read-only profile, never the owner's home
    for name, value in dashboard_environment().items():
        assert env[name] == value, name
    assert "PYTHONPATH" not in env


def test_a_named_server_other_than_a_dashboard_is_refused(hub_config, monkeypatch):
    with pytest.raises(web.HTTPError) as refused:
        tenant_pod(hub_config, monkeypatch, "shell")
    assert refused.value.status_code == 400


# --- network policies -------------------------------------------------------------------------


def test_tenant_pods_reach_the_service_database_and_internet_but_not_the_hubs_internals():
    chart = chart_values()
    policy = chart["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    rules = policy["egressAllowRules"]
    # no private address but those listed (the chart adds only its hub API rule, port 8081);
    # not the cloud's metadata server; public addresses (the exchanges) and DNS
    assert rules["privateIPs"] is False and rules["cloudMetadataServer"] is False
    assert rules["nonPrivateIPs"] is True
    for rule in policy["egress"]:
        assert rule.get("ports"), f"an egress rule for every port: {rule}"
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert peer["ipBlock"]["cidr"].endswith("/32"), "one address: the managed PostgreSQL"
                assert [p["port"] for p in rule["ports"]] == [5432]
            else:
                assert peer == {"podSelector": {"matchLabels": {"component": "hub"}}}, peer
                assert [p["port"] for p in rule["ports"]] == [8011], "the workbench service only"
    assert chart["singleuser"]["cloudMetadata"]["blockWithIptables"] is False  # (no privileged init container)
    # the hub's port 8011 admits the proxy and tenants' servers; its API stays the chart's rule
    hub = chart["hub"]["networkPolicy"]
    assert hub["enabled"] is True and not hub.get("allowedIngressPorts")
    (ingress,) = hub["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [8011]
    assert {peer["podSelector"]["matchLabels"]["component"] for peer in ingress["from"]} == {
        "proxy",
        "singleuser-server",
    }
    assert chart["proxy"]["chp"]["networkPolicy"]["enabled"] is True
    assert [p["port"] for rule in chart["proxy"]["chp"]["networkPolicy"]["egress"] for p in rule["ports"]] == [8011]


def test_the_spawners_settings_are_traitlets_a_hub_configuration_sets(tmp_path):
    from traitlets.config import Config

    from workbench.hub._settings import Settings
    from workbench.hub._spawner import LocalTenantSpawner

    assert LocalTenantSpawner(_mock=True).workbench_service_url == Settings.from_env().service_url
    config = Config()
    config.LocalTenantSpawner.notebooks_dir = str(tmp_path)
    config.Spawner.workbench_service_url = "http://10.1.0.5:8011/services/workbench/"
    spawner = LocalTenantSpawner(config=config, _mock=True)
    assert spawner.workbench_settings().notebooks == tmp_path
    assert spawner.workbench_service_url == "http://10.1.0.5:8011/services/workbench/"
