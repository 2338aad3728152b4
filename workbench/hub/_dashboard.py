"""A dashboard server: Voila on one session's dashboard notebook, behind JupyterHub OAuth.

The hub starts it as the named server ``dash-<session id>`` of the session's owner, as the
owner's unix account and database role (row-level security decides what it can read), for
the owner only: a session shared with another tenant is shown to them by the workbench
service instead (``apihandlers.dashboards.SharedPageHandler``), so nothing the owner runs reaches a
viewer's browser. Why this server cannot be used to do more than look:

- it is Voila's standalone app, not a Jupyter server: no contents, terminals or sessions
  API, no JupyterLab; every path renders the one notebook;
- the kernel websocket forwards only widget (comm) and kernel-info messages: no
  ``execute_request``, no ``shutdown_request``, and a ``comm_open`` only of the widget
  targets; the notebook is the package's, not the owner's;
- no file of the notebook's folder is served (empty ``file_allowlist``);
- JupyterHub's identity provider and authorizer admit only tokens with access to this very
  server;
- IPython and Jupyter read their folders from the package (``dashboard_environment``), never
  from the owner's home.

    python -m workbench.hub._dashboard NOTEBOOK   # run by the spawner, with JUPYTERHUB_* set
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from jupyter_server.services.kernels.connection.base import deserialize_binary_message, deserialize_msg_from_ws_v1
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import url_path_join
from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubIdentityProvider
from voila.app import Voila


class _HubIdentityProvider(JupyterHubIdentityProvider):
    """JupyterHub's identity provider, with its OAuth callback under the server's prefix
    (a Jupyter server prefixes extension handlers itself; standalone Voila does not)."""

    def get_handlers(self):
        return [(url_path_join(self.hub_auth.base_url, path), *rest) for path, *rest in super().get_handlers()]


class DashboardChannels(ZMQChannelsWebsocketConnection):
    """The kernel websocket, opening comms only to the widget targets: a dashboard page talks
    to its widgets, never to another comm target a kernel (or a package it loaded) registered."""

    COMM_TARGETS = ("jupyter.widget", "jupyter.widget.control", "jupyter.widget.version")

    def handle_incoming_message(self, incoming_msg) -> None:
        if self._comm_target(incoming_msg) not in (None, *self.COMM_TARGETS):
            self.log.warning("dashboard websocket: a comm_open to another target was dropped")
            return
        super().handle_incoming_message(incoming_msg)

    def _comm_target(self, incoming_msg) -> str | None:
        """The target of a ``comm_open`` message (None for any other message)."""
        if self.subprotocol == "v1.kernel.websocket.jupyter.org":
            _, parts = deserialize_msg_from_ws_v1(incoming_msg)
            header, content = self.get_part("header", None, parts), lambda: self.get_part("content", None, parts)
        else:
            binary = isinstance(incoming_msg, bytes)
            msg = deserialize_binary_message(incoming_msg) if binary else json.loads(incoming_msg)
            header, content = msg.get("header") or {}, lambda: msg.get("content") or {}
        if header.get("msg_type") != "comm_open":
            return None
        return str(content().get("target_name", ""))


class DashboardVoila(Voila):  # a public name: traitlets takes no section named like "_X"
    """Voila whose kernel websocket passes widget (comm) and kernel-info messages only: Voila's
    own list also lets a page shut the kernel down, which no dashboard page needs (the server
    ends the kernel when the page goes)."""

    ALLOWED_MESSAGES = ["comm_open", "comm_close", "comm_msg", "comm_info_request", "kernel_info_request"]

    def init_settings(self):
        settings = super().init_settings()
        self.kernel_manager.allowed_message_types = self.ALLOWED_MESSAGES
        return settings


def main(argv: list[str] | None = None) -> None:
    notebook = Path((argv or sys.argv[1:])[0]).resolve()
    # JUPYTER_DATA_DIR is the package's read-only folder (the spawner pins it); kernel
    # connection files and the notebook-signing key go to the owner's private runtime folder,
    # and trust signatures are kept in memory
    runtime = Path(
        os.environ.setdefault("JUPYTER_RUNTIME_DIR", str(Path.home() / ".local" / "share" / "jupyter" / "runtime"))
    )
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    DashboardVoila.launch_instance(
        argv=[
            str(notebook),
            f"--Voila.ip={url.hostname}",
            f"--Voila.port={url.port}",
            f"--Voila.base_url={prefix}",
            "--no-browser",
            f"--Voila.root_dir={notebook.parent}",
            f"--Voila.identity_provider_class={__name__}._HubIdentityProvider",
            f"--Voila.authorizer_class={JupyterHubAuthorizer.__module__}.JupyterHubAuthorizer",
            f"--Voila.kernel_websocket_connection_class={__name__}.DashboardChannels",
            "--VoilaConfiguration.file_allowlist=[]",
            "--VoilaConfiguration.show_tracebacks=False",
            "--KernelManager.transport=ipc",  # kernels on unix sockets in the owner's runtime folder
            "--NotebookNotary.db_file=:memory:",
            f"--NotebookNotary.secret_file={runtime / 'notebook_secret'}",
        ]
    )


if __name__ == "__main__":
    main()
