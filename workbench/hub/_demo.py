"""The first run's accounts: an admin and two demo tenants with sample strategies, the first
with a running paper session whose live notebook is promoted (the worker ticks it every
minute); passwords generated once and kept 0600 in ``<home>/hub/credentials``.

Users go straight into NativeAuthenticator's table in the hub's sqlite database (the table
it creates itself; JupyterHub stamps a database without its own tables as new), approved,
with bcrypt password hashes, so the hub starts with them.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import bcrypt
from nativeauthenticator.orm import Base, UserInfo
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from workbench import store
from workbench.hub._provision import provision
from workbench.hub._settings import Settings

_SAMPLES: tuple[
    list[tuple[str, str, dict[str, Any]]], ...
] = (  # (strategy name, template, parameters) of the first and of every other demo tenant
    [
        ("dip ladder", "ema_reversal", {"dip_levels": [0.5, 1.0, 2.0], "take_profit": [1.0, 2.0, 3.0]}),
        ("channel breakout", "channel", {"entry_window": 48, "exit_window": 24}),
    ],
    [("channel reversion", "channel", {"entry_window": 96, "exit_window": 48, "mode": "reversion"})],
)
DEMO_SCHEDULE = "* * * * *"  # cron: one tick a minute


def credentials_file(settings: Settings) -> Path:
    return settings.hub_dir / "credentials"


def set_password(settings: Settings, username: str, password: str) -> None:
    """Create or reset an approved NativeAuthenticator user."""
    engine = create_engine(f"sqlite:///{settings.hub_dir / 'jupyterhub.sqlite'}")
    Base.metadata.create_all(engine)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    with Session(engine) as session, session.begin():
        user = session.scalar(select(UserInfo).where(UserInfo.username == username))
        if user is None:
            session.add(UserInfo(username=username, password=hashed, is_authorized=True))
        else:
            user.password, user.is_authorized = hashed, True
    engine.dispose()


def seed(settings: Settings) -> dict[str, str] | None:
    """On the first run: the users, their tenants and samples; their passwords (else None)."""
    path = credentials_file(settings)
    if path.exists():
        return None
    passwords = {name: secrets.token_urlsafe(12) for name in (*sorted(settings.admins), *settings.demo_tenants)}
    for name, password in passwords.items():
        set_password(settings, name, password)
        provision(name, settings)
    for number, name in enumerate(settings.demo_tenants):
        _samples(name, number == 0, settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(passwords, file, indent=1)
    return passwords


def _samples(tenant: str, first: bool, settings: Settings) -> None:
    """The tenant's sample strategies; for the first demo tenant also a running paper session
    with the live paper notebook promoted (the worker ticks it every minute)."""
    from workbench import live, scheduler
    from workbench.strategies import save_strategy

    with store.acting_as(tenant):
        saved = [save_strategy(name, template, params) for name, template, params in _SAMPLES[0 if first else 1]]
        if first:
            session = live.create_session(saved[-1].id, exchange="paper")
            live.start(session)
            scheduler.promote(settings.notebooks / "live" / "paper_channel.ipynb", session, schedule=DEMO_SCHEDULE)
