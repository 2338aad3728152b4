"""A dashboard server: Voila on one session's dashboard notebook, behind JupyterHub OAuth.

The hub starts it as the named server ``dash-<session id>`` of the session's owner, as the
owner's unix account and database role (row-level security decides what it can read). A
tenant shares it read-only through JupyterHub's sharing API (``access:servers`` on this one
server only). Why this cannot be used to do more than look:

- it is Voila's standalone app, not a Jupyter server: no contents, terminals or sessions
  API, no JupyterLab; every path renders the one notebook;
- Voila's kernel websocket forwards only widget (comm) and kernel-info messages, so a
  viewer cannot send ``execute_request``; the notebook is the package's, not the owner's;
- no file of the notebook's folder is served (empty ``file_allowlist``);
- JupyterHub's identity provider and authorizer admit only tokens with access to this very
  server, so other dashboards and the owner's JupyterLab stay closed to a viewer.

    python -m workbench.hub._dashboard NOTEBOOK   # run by the spawner, with JUPYTERHUB_* set
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from jupyter_server.utils import url_path_join
from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubIdentityProvider
from voila.app import Voila


class _HubIdentityProvider(JupyterHubIdentityProvider):
    """JupyterHub's identity provider, with its OAuth callback under the server's prefix
    (a Jupyter server prefixes extension handlers itself; standalone Voila does not)."""

    def get_handlers(self):
        return [(url_path_join(self.hub_auth.base_url, path), *rest) for path, *rest in super().get_handlers()]


def main(argv: list[str] | None = None) -> None:
    notebook = Path((argv or sys.argv[1:])[0]).resolve()
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    Voila.launch_instance(argv=[
        str(notebook),
        f"--Voila.ip={url.hostname}", f"--Voila.port={url.port}", f"--Voila.base_url={prefix}",
        "--no-browser", f"--Voila.root_dir={notebook.parent}",
        f"--Voila.identity_provider_class={__name__}._HubIdentityProvider",
        f"--Voila.authorizer_class={JupyterHubAuthorizer.__module__}.JupyterHubAuthorizer",
        "--VoilaConfiguration.file_allowlist=[]", "--VoilaConfiguration.show_tracebacks=False",
        "--KernelManager.transport=ipc",  # kernels on unix sockets in the owner's runtime folder
    ])


if __name__ == "__main__":
    main()
