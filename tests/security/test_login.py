"""Wrong passwords slow down the address that types them, never the account they aim at.

Against a real hub (proxy, hub, NativeAuthenticator): clients connect from different
loopback addresses (127.0.0.x), as different machines would. An attacker hammering the
admin's account from one address, while claiming other addresses in ``X-Forwarded-For`` and
``X-Real-Ip``, is made to wait with growing delays (even its correct guesses go unchecked),
while the admin logs in from their own address at once and is told about the failed logins.
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
from hub_harness import PASSWORD, Client, Hub, running_hub
from requests.adapters import HTTPAdapter

from workbench.hub._auth import LoginThrottle

WRONG = "not the password 123"


class _FromAddress(HTTPAdapter):
    """Connects from ``address``, so the proxy sees that client address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _client(hub: Hub, address: str) -> Client:
    client = hub.client()
    client.mount("http://", _FromAddress(address))
    return client


def _attempt(client: Client, name: str, password: str, spoof: bool = True):
    """One login form post; with ``spoof``, headers claiming a fresh random address."""
    forged = f"198.51.100.{secrets.randbelow(250) + 1}"
    headers = {"X-Forwarded-For": forged, "X-Real-Ip": forged} if spoof else {}
    # the hub ties an anonymous form's XSRF token to the address it believes in, so the
    # forged headers go with the page that gives the token too
    page = client.get(client.url("/hub/login"), headers=headers).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
    return client.post(
        client.url("/hub/login"),
        data={"username": name, "password": password, "_xsrf": xsrf},
        headers=headers,
        allow_redirects=False,
    )


@pytest.fixture(scope="module")
def hub():
    with running_hub() as running:
        yield running


@pytest.fixture
def admin(hub: Hub) -> tuple[str, str]:
    name = sorted(hub.settings.admins)[0]
    return name, hub.passwords[name]


def test_five_wrong_passwords_lock_nobody_out(hub: Hub, admin):
    name, password = admin
    stranger = _client(hub, "127.0.0.21")
    for _ in range(5):
        assert _attempt(stranger, name, WRONG).status_code == 200  # the login page again
    # not even the address that typed them waits; the admin, from anywhere, gets in at once
    started = time.monotonic()
    _client(hub, "127.0.0.22").login(name, password)
    assert time.monotonic() - started < 5
    assert _attempt(stranger, name, password).status_code == 302


def test_a_hammering_address_waits_longer_and_longer_while_the_user_gets_in(hub: Hub, admin):
    name, password = admin
    attacker = _client(hub, "127.0.0.31")
    answers = [_attempt(attacker, name, WRONG) for _ in range(12)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:6] == [200] * 6 and 429 in statuses[6:], statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert "Too many failed logins from your address" in refused.text
    # the correct password from the attacker's address is not even checked now
    guessed = _attempt(attacker, name, password)
    assert guessed.status_code == 429 and not any(c.name == "jupyterhub-session-id" for c in attacker.cookies)
    first_wait = int(guessed.headers["Retry-After"])
    time.sleep(first_wait + 0.2)
    assert _attempt(attacker, name, WRONG).status_code == 200
    second_wait = int(_attempt(attacker, name, WRONG).headers["Retry-After"])
    # Retry-After is the rest of the wait in whole seconds: on a loaded machine a slow answer
    # can round two doubled delays alike (the doubling itself: the throttle test below)
    assert second_wait >= first_wait
    # meanwhile the admin logs in from their own address, and is told
    owner = _client(hub, "127.0.0.32")
    response = owner.login(name, password)
    assert "/hub/failed-logins" in response.url
    report = re.search(r'id="failed-logins">(.*?)</p>', response.text, re.S).group(1)
    count = int(re.search(r"saw (\d+) failed login", report).group(1))
    assert count >= 15 and "127.0.0.31" in report and "198.51.100" not in report
    assert owner.get(owner.url("/hub/failed-logins"), allow_redirects=False).status_code == 302  # told once


def test_logging_in_before_approval_is_no_failed_login_but_a_wrong_password_is(hub: Hub):
    """The right password for a pending sign-up is refused, and not reported after approval;
    a wrong one is."""
    patient, careless = hub.new_name("patient"), hub.new_name("careless")
    for name in (patient, careless):
        hub.client().signup(name)
        assert _attempt(_client(hub, "127.0.0.41"), name, PASSWORD, spoof=False).status_code == 200  # refused
    assert _attempt(_client(hub, "127.0.0.41"), careless, WRONG, spoof=False).status_code == 200
    admin = hub.admin()
    for name in (patient, careless):
        assert admin.get(admin.url(f"/hub/authorize/{name}")).status_code == 200
    assert "/hub/failed-logins" not in _client(hub, "127.0.0.42").login(patient, PASSWORD).url
    told = _client(hub, "127.0.0.42").login(careless, PASSWORD)
    assert "/hub/failed-logins" in told.url and re.search(r"saw 1 failed login\s", told.text)


def test_the_throttle_grows_and_caps_its_delays():
    now = [0.0]
    throttle = LoginThrottle(free=2, longest=8.0, clock=lambda: now[0])
    waits = []
    for _ in range(12):  # an attacker that retries the moment it may
        waits.append(throttle.begin("203.0.113.9"))
        now[0] += waits[-1]
    assert [wait for wait in waits if wait] == [1, 2, 4, 8, 8]
    assert throttle.begin("203.0.113.10") == 0  # another address is not affected
    throttle.failed("ada", "203.0.113.9")
    report = throttle.succeeded("ada", "203.0.113.9")
    assert report.count == 1 and throttle.succeeded("ada", "203.0.113.9") is None
    assert throttle.begin("203.0.113.9") == 0
