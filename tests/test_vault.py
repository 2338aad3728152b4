"""The key vault: ciphertext format, master keyring, Secret, notebook helpers, rotation.

Real parts only: AES-GCM from ``cryptography``, the store's PostgreSQL, ``workbench vault``
as a subprocess (killed with SIGKILL mid-rotation), and the real ``ccxt.binance`` client
signing requests to a loopback HTTP server that verifies them like Binance does.
"""

from __future__ import annotations

import base64
import copy
import html
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from loopback_exchange import BinanceAccount, Gate, answer_binance_key_restrictions, answer_gate_key_permissions
from sqlalchemy import select

import workbench
from workbench import store, vault
from workbench.cli import main
from workbench.errors import VaultError
from workbench.notify._channels import Admin, open_secrets
from workbench.vault import LocalVault, _envelope, _keyring, _permissions, _rotate
from workbench.vault._exchange import ExchangeKeys, check, validate_exchange
from workbench.vault._secret import Secret, mask


def _random_key(n: int = 64) -> str:
    return base64.b32encode(os.urandom(n)).decode().rstrip("=")[:n]


@pytest.fixture
def binance() -> Iterator[BinanceAccount]:
    with BinanceAccount(_random_key(), _random_key(), {"BTC": "0.50000000", "USDT": "1200.00"}) as server:
        yield server


# --- Secret --------------------------------------------------------------------------------


def test_secret_never_shows_its_value():
    secret = Secret("canary-" + _random_key())
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}", repr([secret])]
    assert all(secret.reveal() not in text for text in shown)
    assert secret == Secret(secret.reveal()) and secret != Secret("other")
    assert copy.deepcopy(secret) is secret
    with pytest.raises(VaultError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        hash(secret)


def test_mask_shows_four_and_two_characters_of_long_keys_only():
    assert mask("ab12cdefgh9f") == "ab12…9f"
    assert mask("short") == "…"


# --- ciphertext format ---------------------------------------------------------------------


def test_blob_layout_and_fresh_nonces():
    key = os.urandom(32)
    context = _envelope.field_context(7, 42, "secret")
    a = _envelope.seal(key, 3, b"plaintext", context)
    b = _envelope.seal(key, 3, b"plaintext", context)
    assert a[0] == 1 and int.from_bytes(a[1:5], "big") == 3 and len(a) == 1 + 4 + 12 + 9 + 16
    assert a[5:17] != b[5:17] and a != b
    assert _envelope.key_version(a, "blob") == 3
    assert _envelope.unseal(key, 3, a, context, "blob") == b"plaintext"


@pytest.mark.parametrize(
    "other",
    [
        _envelope.field_context(8, 42, "secret"),  # another tenant
        _envelope.field_context(7, 43, "secret"),  # another row
        _envelope.field_context(7, 42, "api_key"),  # another field
        _envelope.data_key_context(7, 42),  # another kind of blob
    ],
)
def test_blob_moved_to_another_place_does_not_decrypt(other):
    key = os.urandom(32)
    blob = _envelope.seal(key, 1, b"plaintext", _envelope.field_context(7, 42, "secret"))
    with pytest.raises(VaultError, match="account 42 secret does not decrypt"):
        _envelope.unseal(key, 1, blob, other, "account 42 secret")


def test_edited_header_or_truncated_blob_is_refused():
    key = os.urandom(32)
    context = _envelope.data_key_context(1, 1)
    blob = _envelope.seal(key, 1, b"k" * 32, context)
    edited = blob[:1] + (2).to_bytes(4, "big") + blob[5:]
    with pytest.raises(VaultError, match="does not decrypt"):
        _envelope.unseal(key, 2, edited, context, "data key")
    with pytest.raises(VaultError, match="sealed under key version 2, its row says 1"):
        _envelope.unseal(key, 1, edited, context, "data key")
    with pytest.raises(VaultError, match="format 9"):
        _envelope.unseal(key, 1, b"\x09" + blob[1:], context, "data key")
    with pytest.raises(VaultError, match="too short"):
        _envelope.unseal(key, 1, blob[:20], context, "data key")


# --- master keyring ------------------------------------------------------------------------


def _key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def no_master_key_env(monkeypatch, tmp_path):
    monkeypatch.delenv(_keyring.ENV_KEY, raising=False)
    monkeypatch.delenv(_keyring.ENV_FILE, raising=False)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_local_master_key_is_generated_once_with_mode_0600(no_master_key_env):
    first = _keyring.load()
    path = no_master_key_env / "master.key"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert first.current == 1 and len(first.keys[1]) == 32
    assert _keyring.load().keys == first.keys
    assert base64.urlsafe_b64encode(first.keys[1]).decode() not in repr(first)


def test_master_key_from_environment_with_and_without_version(monkeypatch, no_master_key_env):
    key = _key_text()
    monkeypatch.setenv(_keyring.ENV_KEY, key)
    assert _keyring.load().keys == {1: base64.urlsafe_b64decode(key)}
    standard = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    monkeypatch.setenv(_keyring.ENV_KEY, f"2:{key}, 5:{standard}")
    keyring = _keyring.load()
    assert sorted(keyring.keys) == [2, 5] and keyring.current == 5
    assert not (no_master_key_env / "master.key").exists()


@pytest.mark.parametrize(
    "value, message, fix",
    [
        ("c2hvcnQ=", "is 5 bytes, a master key is 32", "os.urandom(32)"),
        ("2:@@not*base64@@", "is not base64", "os.urandom(32)"),
        (" , ", "is empty", "os.urandom(32)"),
        ("x:" + "A" * 43, "has version 'x'", "a whole number from 1 up"),
        (f"1:{'A' * 43} 1:{'B' * 43}", "repeats version 1", "its own version"),
    ],
)
def test_bad_master_key_stops_with_what_to_do(monkeypatch, no_master_key_env, value, message, fix):
    monkeypatch.setenv(_keyring.ENV_KEY, value)
    with pytest.raises(VaultError, match=message) as info:
        _keyring.load()
    assert fix in str(info.value) and _keyring.ENV_KEY in str(info.value)
    assert "A" * 20 not in str(info.value)


def test_master_key_file_must_be_private(monkeypatch, no_master_key_env, tmp_path):
    path = tmp_path / "keyring"
    path.write_text(f"# a comment\n1:{_key_text()}\n3:{_key_text()}\n")
    monkeypatch.setenv(_keyring.ENV_FILE, str(path))
    path.chmod(0o640)
    with pytest.raises(VaultError, match=rf"mode 0640\); run `chmod 600 {re.escape(str(path))}`"):
        _keyring.load()
    path.chmod(0o600)
    assert sorted(_keyring.load().keys) == [1, 3]
    monkeypatch.setenv(_keyring.ENV_FILE, str(tmp_path / "missing"))
    with pytest.raises(VaultError, match="does not exist; write a key into it"):
        _keyring.load()


def test_keyring_rewrite_is_atomic_and_private(no_master_key_env):
    keyring = _keyring.load().with_new_version()
    _keyring.write(keyring)
    path = no_master_key_env / "master.key"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert _keyring.load().keys == keyring.keys
    _keyring.write(keyring.without({1}))
    assert sorted(_keyring.load().keys) == [2]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".master")] == []


# --- exchange check against the loopback Binance ---------------------------------------------


def _keys(api_key: str, secret: str) -> ExchangeKeys:
    return ExchangeKeys(account_id=1, exchange="binance", api_key=Secret(api_key), secret=Secret(secret))


@pytest.mark.integration
def test_check_signs_with_the_real_binance_client(binance):
    assert check(_keys(binance.api_key, binance.secret), binance.config()) == {"BTC": 0.5, "USDT": 1200.0}
    account_calls = binance.requests_to("/api/v3/account")
    assert account_calls and account_calls[0].headers["X-MBX-APIKEY"] == binance.api_key
    assert "signature" in account_calls[0].query


@pytest.mark.integration
@pytest.mark.parametrize("wrong", ["secret", "api_key"])
def test_check_with_a_wrong_key_says_authentication_failed_without_the_key(binance, wrong):
    keys = {"api_key": binance.api_key, "secret": binance.secret, wrong: _random_key()}
    with pytest.raises(VaultError, match="binance account 1: authentication failed") as info:
        check(_keys(**keys), binance.config())
    message = str(info.value)
    assert binance.api_key not in message and binance.secret not in message and keys[wrong] not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.integration
def test_check_of_an_unreachable_exchange_says_so():
    config = {
        "urls": {"api": {k: "http://127.0.0.1:9/x" for k in ("public", "private", "sapi", "fapiPublic", "dapiPublic")}},
        "timeout": 2000,
    }
    with pytest.raises(VaultError, match="could not be reached"):
        check(_keys(_random_key(), _random_key()), config)


def test_check_refuses_verbose_clients(binance):
    with pytest.raises(VaultError, match="verbose=True would print"):
        check(_keys(binance.api_key, binance.secret), {**binance.config(), "verbose": True})


@pytest.mark.integration
def test_ccxt_debug_log_masks_the_keys(binance, caplog):
    caplog.set_level("DEBUG")
    check(_keys(binance.api_key, binance.secret), binance.config())
    assert "X-MBX-APIKEY" in caplog.text and mask(binance.api_key) in caplog.text
    assert binance.api_key not in caplog.text and binance.secret not in caplog.text


def test_exchange_names_are_checked_against_ccxt():
    assert validate_exchange("Gate", has_passphrase=False) == "gate"
    assert validate_exchange("binance", has_passphrase=False) == "binance"
    with pytest.raises(VaultError, match="'nosuchex' is not one ccxt supports"):
        validate_exchange("nosuchex", has_passphrase=False)
    with pytest.raises(VaultError, match="'okx' needs a passphrase"):
        validate_exchange("okx", has_passphrase=False)


# --- the vault on PostgreSQL -----------------------------------------------------------------


@pytest.fixture
def vault_db(empty_database, monkeypatch, tmp_path):
    """A fresh database at head and a fresh workbench home (so a fresh local master key)."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(_keyring.ENV_KEY, raising=False)
    monkeypatch.delenv(_keyring.ENV_FILE, raising=False)
    store.upgrade()
    vault.use(None)
    yield empty_database
    vault.use(None)


def _account(v: LocalVault, exchange: str = "binance", **kwargs) -> tuple[int, dict[str, str]]:
    keys = {"api_key": _random_key(), "secret": _random_key(), **kwargs}
    return v.add_account(
        exchange,
        Secret(keys["api_key"]),
        Secret(keys["secret"]),
        Secret(keys["passphrase"]) if "passphrase" in keys else None,
        "read",
        "",
    ), keys


def _plain(keys: ExchangeKeys) -> dict[str, str]:
    return {f: getattr(keys, f).reveal() for f in ("api_key", "secret", "passphrase") if getattr(keys, f)}


def test_notebook_helpers_round_trip(vault_db):
    api_key, secret = _random_key(), _random_key()
    account = workbench.vault.add_account("Binance", api_key, secret, permissions="trade", label="main")
    table = workbench.vault.accounts()
    assert list(table.index) == [account]
    assert table.loc[account, ["exchange", "label", "permissions", "is_active", "key_hint"]].tolist() == [
        "binance",
        "main",
        "trade",
        True,
        f"{api_key[:4]}…{api_key[-2:]}",
    ]
    assert api_key not in table.to_string() and secret not in table.to_string()
    keys = workbench.vault.keys_for(account)
    assert (keys.exchange, keys.api_key.reveal(), keys.secret.reveal(), keys.passphrase) == (
        "binance",
        api_key,
        secret,
        None,
    )
    assert api_key not in repr(keys) and secret not in repr(keys)

    workbench.vault.deactivate(account)
    assert not workbench.vault.accounts().loc[account, "is_active"]
    with pytest.raises(VaultError, match=f"exchange account {account} is deactivated"):
        workbench.vault.keys_for(account)
    workbench.vault.remove(account)
    assert workbench.vault.accounts().empty
    with pytest.raises(VaultError, match=f"tenant 'local' has no exchange account {account}"):
        workbench.vault.remove(account)


def test_ciphertexts_are_stored_not_plaintexts(vault_db):
    v = LocalVault()
    account, keys = _account(v, "okx", passphrase=_random_key(12))
    with store.owner_session() as s:
        row = s.get(store.ExchangeAccount, account)
        data_key = s.get(store.TenantDataKey, (row.tenant_id, 1))
    blobs = [row.api_key_ct, row.secret_ct, row.passphrase_ct]
    assert all(b[0] == 1 and int.from_bytes(b[1:5], "big") == row.data_key_version == 1 for b in blobs)
    assert data_key.master_key_version == 1 and len(data_key.wrapped_key) == 17 + 32 + 16
    assert not any(plain.encode() in b for plain in keys.values() for b in blobs)
    assert _plain(v.keys_for(account)) == keys


@pytest.mark.parametrize("move", ["other row", "other field", "other tenant"])
def test_ciphertext_moved_to_another_row_field_or_tenant_does_not_decrypt(vault_db, move):
    store.create_tenant("alice"), store.create_tenant("bob")
    alice, bob = LocalVault("alice"), LocalVault("bob")
    first, _ = _account(alice)
    target = {"other row": _account(alice)[0], "other field": first, "other tenant": _account(bob)[0]}[move]
    with store.owner_session() as s:
        source = s.get(store.ExchangeAccount, first)
        victim = s.get(store.ExchangeAccount, target)
        if move == "other field":
            victim.api_key_ct = source.secret_ct
        else:
            victim.secret_ct = source.secret_ct
    owner = bob if move == "other tenant" else alice
    with pytest.raises(VaultError, match=rf"of exchange account {target} does not decrypt: it was altered, copied"):
        owner.keys_for(target)


def test_tenants_do_not_see_each_others_accounts(vault_db):
    store.create_tenant("alice"), store.create_tenant("bob")
    alice, bob = LocalVault("alice"), LocalVault("bob")
    account, _ = _account(alice)
    assert [a.id for a in alice.accounts()] == [account] and bob.accounts() == []
    for attempt in (bob.keys_for, bob.deactivate, bob.remove, bob.check):
        with pytest.raises(VaultError, match=f"tenant 'bob' has no exchange account {account}"):
            attempt(account)
    assert alice.accounts()[0].is_active


def test_bad_input_is_refused_with_what_to_fix(vault_db):
    v = LocalVault()
    _account(v)
    cases = [
        (dict(exchange="nosuchex"), "'nosuchex' is not one ccxt supports"),
        (dict(permissions="withdraw"), "permissions='withdraw': choose one of read, trade"),
        (dict(secret=""), "secret is empty"),
        (dict(label=v.accounts()[0].label), "is already used by exchange account"),
    ]
    for change, message in cases:
        args = {
            "exchange": "gate",
            "api_key": _random_key(),
            "secret": _random_key(),
            "permissions": "read",
            "label": "",
            **change,
        }
        with pytest.raises(VaultError, match=message):
            v.add_account(
                args["exchange"],
                Secret(args["api_key"]),
                Secret(args["secret"]),
                None,
                args["permissions"],
                args["label"],
            )
    assert len(v.accounts()) == 1


def test_wrong_master_key_is_a_clear_error(vault_db, monkeypatch):
    account, _ = _account(LocalVault())
    monkeypatch.setenv(_keyring.ENV_KEY, f"1:{_key_text()}")
    with pytest.raises(VaultError, match="data key version 1 of tenant 'local' does not decrypt"):
        LocalVault().keys_for(account)
    monkeypatch.setenv(_keyring.ENV_KEY, f"7:{_key_text()}")
    with pytest.raises(
        VaultError, match="wrapped under master key version 1, which is not in the keyring from WORKBENCH_MASTER_KEY"
    ):
        LocalVault().keys_for(account)


def test_check_uses_the_stored_keys_with_the_real_binance_client(vault_db):
    with BinanceAccount(_random_key(), _random_key(), {"ETH": "2.5"}) as server:
        good = workbench.vault.add_account("binance", server.api_key, server.secret, label="good")
        bad = workbench.vault.add_account("binance", server.api_key, _random_key(), label="bad")
        assert workbench.vault.check(good, server.config()) == {"ETH": 2.5}
        with pytest.raises(VaultError, match=f"binance account {bad}: authentication failed") as info:
            workbench.vault.check(bad, server.config())
    assert "Signature for this request is not valid" in str(info.value)
    assert server.api_key not in str(info.value) and server.secret not in str(info.value)


def test_form_adds_clears_and_lists_masked(vault_db):
    form = workbench.vault.form()
    fields = {getattr(w, "description", ""): w for w in form.children[0].children}
    api_key, secret = _random_key(), _random_key()
    fields["Exchange"].value, fields["Permissions"].value, fields["Label"].value = "binance", "trade", "desk"
    fields["API key"].value, fields["Secret"].value = api_key, secret
    fields["Add"].click()
    assert [type(w).__name__ for w in (fields["API key"], fields["Secret"], fields["Passphrase"])] == ["Password"] * 3
    assert fields["API key"].value == fields["Secret"].value == fields["Label"].value == ""
    table = form.children[1].value
    assert "desk" in table and mask(api_key) in table and api_key not in table
    assert workbench.vault.accounts().loc[:, "label"].tolist() == ["desk"]

    fields["Exchange"].value = "okx"
    fields["API key"].value, fields["Secret"].value = _random_key(), _random_key()
    fields["Add"].click()
    message = html.unescape(form.children[0].children[-1].value)
    assert "exchange 'okx' needs a passphrase" in message and fields["API key"].value != ""
    assert len(workbench.vault.accounts()) == 1


# --- master key rotation -----------------------------------------------------------------------


def _tenants_with_accounts(names: list[str]) -> dict[int, tuple[str, dict[str, str]]]:
    """One account per new tenant: account id -> (tenant, plaintext keys)."""
    made = {}
    for name in names:
        store.create_tenant(name)
        account, keys = _account(LocalVault(name))
        made[account] = (name, keys)
    return made


def _assert_all_decrypt(accounts: dict[int, tuple[str, dict[str, str]]]) -> None:
    for account, (tenant, keys) in accounts.items():
        assert _plain(LocalVault(tenant).keys_for(account)) == keys  # a new vault reads the keyring anew


def _workbench(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_rotate_rewraps_every_data_key_and_retires_the_old_master_key(vault_db, capsys):
    accounts = _tenants_with_accounts(["alice", "bob", "carol"])
    stale = LocalVault("alice")  # loaded the keyring before the rotation
    old_wrapped = _wrapped_keys()

    assert main(["vault", "status"]) == 0
    assert "master key version 1: wraps 3 tenant data key(s)" in capsys.readouterr().out
    assert main(["vault", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "added master key version 2" in out and "retired master key version(s) [1]" in out
    assert "master key version 2: wraps 3 tenant data key(s)" in out and "rotation: none in progress" in out
    assert sorted(_keyring.load().keys) == [2]
    new_wrapped = _wrapped_keys()
    assert all(new_wrapped[t] != old_wrapped[t] and new_wrapped[t][1:5] == (2).to_bytes(4, "big") for t in old_wrapped)
    _assert_all_decrypt(accounts)
    alice_account = next(a for a, (t, _) in accounts.items() if t == "alice")
    assert _plain(stale.keys_for(alice_account)) == accounts[alice_account][1]

    assert main(["vault", "rotate"]) == 0  # nothing unfinished: a new rotation
    assert "added master key version 3" in capsys.readouterr().out and sorted(_keyring.load().keys) == [3]
    _assert_all_decrypt(accounts)


def _wrapped_keys() -> dict[int, bytes]:
    with store.owner_session() as s:
        return {row.tenant_id: row.wrapped_key for row in s.scalars(select(store.TenantDataKey))}


@pytest.mark.slow
def test_rotation_killed_midway_loses_nothing_and_a_second_run_finishes(vault_db):
    accounts = _tenants_with_accounts([f"t{i}" for i in range(5)])
    rotation = _workbench("vault", "rotate", **{_rotate.PAUSE_ENV: "2"})
    deadline = time.monotonic() + 60
    while "paused after 2 tenants" not in rotation.stderr.readline():
        assert rotation.poll() is None and time.monotonic() < deadline, rotation.stderr.read()

    # mid-rotation, without downtime: every key decrypts and new tenants can add keys
    _assert_all_decrypt(accounts)
    accounts.update(_tenants_with_accounts(["late"]))
    rotation.kill()
    rotation.wait()
    assert rotation.returncode == -signal.SIGKILL

    state = _rotate.status()
    assert state.unfinished and sorted(state.keyring_versions) == [1, 2]
    assert state.data_keys_by_master_version == {2: 3, 1: 3}  # two re-wrapped, "late" born under 2
    _assert_all_decrypt(accounts)

    second = _workbench("vault", "rotate")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "finishing an unfinished rotation to master key version 2" in out
    assert "retired master key version(s) [1]" in out
    state = _rotate.status()
    assert not state.unfinished and state.keyring_versions == [2] and state.data_keys_by_master_version == {2: 6}
    _assert_all_decrypt(accounts)


def test_rotation_with_the_keyring_in_the_environment(vault_db, monkeypatch, capsys):
    old = _key_text()
    monkeypatch.setenv(_keyring.ENV_KEY, f"1:{old}")
    accounts = _tenants_with_accounts(["alice"])
    assert main(["vault", "rotate"]) == 2
    err = capsys.readouterr().err
    assert "WORKBENCH_MASTER_KEY, which the workbench cannot rewrite; add an entry 2:NEWKEY there" in err
    assert old not in err

    monkeypatch.setenv(_keyring.ENV_KEY, f"1:{old},2:{_key_text()}")
    assert main(["vault", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "master key versions [1] are no longer used: remove them from WORKBENCH_MASTER_KEY" in out
    assert _rotate.status().data_keys_by_master_version == {2: 1}
    _assert_all_decrypt(accounts)


def test_vault_commands_stop_on_a_bad_master_key_with_what_to_do(vault_db, monkeypatch, tmp_path, capsys):
    path = tmp_path / "keyring"
    path.write_text(_key_text())
    path.chmod(0o644)
    monkeypatch.setenv(_keyring.ENV_FILE, str(path))
    assert main(["vault", "status"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == (
        f"workbench vault: error: the master key file {path} is accessible to group or "
        f"others (mode 0644); run `chmod 600 {path}`"
    )


# --- what a key may do: asked of the exchange when it is added or checked ------------------------


@pytest.fixture
def operator(monkeypatch):
    """The operator's settings: egress addresses set, withdrawal keys not allowed."""
    monkeypatch.setenv(_permissions.EGRESS_IPS_ENV, "203.0.113.7, 2001:db8::7")
    monkeypatch.delenv(_permissions.ALLOW_WITHDRAWALS_ENV, raising=False)


def _stored_accounts() -> int:
    with store.owner_session() as s:
        return len(s.scalars(select(store.ExchangeAccount)).all())


def test_binance_key_that_may_withdraw_is_refused_and_not_stored(vault_db, operator, binance, monkeypatch):
    answer_binance_key_restrictions(binance, withdrawals=True, ip_restrict=True)
    with pytest.raises(VaultError) as info:
        workbench.vault.add_account("binance", binance.api_key, binance.secret, ccxt_config=binance.config())
    assert str(info.value) == (
        f"binance key {mask(binance.api_key)} may withdraw funds, which the workbench refuses "
        "(turn withdrawals off for it on the exchange); it was not stored"
    )
    assert _stored_accounts() == 0 and workbench.vault.audit().empty
    calls = binance.requests_to("/sapi/v1/account/apiRestrictions")
    assert len(calls) == 1 and calls[0].headers["X-MBX-APIKEY"] == binance.api_key and "signature" in calls[0].query

    monkeypatch.setenv(_permissions.ALLOW_WITHDRAWALS_ENV, "1")  # the operator allows such keys explicitly
    account = workbench.vault.add_account("binance", binance.api_key, binance.secret, ccxt_config=binance.config())
    listed = workbench.vault.accounts().loc[account]
    assert bool(listed["can_withdraw"]) and bool(listed["ip_restricted"]) and listed["key_warning"] == ""


def test_binance_key_without_ip_restriction_is_stored_with_a_warning_naming_the_egress_ips(vault_db, operator, binance):
    answer_binance_key_restrictions(binance, ip_restrict=False, spot_trading=False)
    with pytest.warns(workbench.vault.KeyWarning) as warned:
        account = workbench.vault.add_account(
            "binance", binance.api_key, binance.secret, permissions="trade", ccxt_config=binance.config()
        )
    hint = mask(binance.api_key)
    assert [str(w.message) for w in warned] == [
        f"binance key {hint} is not restricted to IP addresses: whitelist 203.0.113.7, 2001:db8::7 for it on the "
        f"exchange; binance key {hint} may not trade, but the account is for trading: enable trading for it on "
        "the exchange"
    ]
    listed = workbench.vault.accounts().loc[account]
    assert listed["can_withdraw"] is False or not listed["can_withdraw"]
    assert not listed["ip_restricted"] and "203.0.113.7" in listed["key_warning"]
    with store.owner_session() as s:
        review = s.get(store.models.ExchangeKeyReview, account)
    assert review.abilities["read"] and not review.abilities["withdrawals"] and not review.abilities["futures"]


def test_check_asks_again_and_deactivates_a_key_that_may_now_withdraw(vault_db, operator, binance):
    answer_binance_key_restrictions(binance)
    account = workbench.vault.add_account("binance", binance.api_key, binance.secret, ccxt_config=binance.config())
    assert workbench.vault.check(account, binance.config()) == {"BTC": 0.5, "USDT": 1200.0}
    answer_binance_key_restrictions(binance, withdrawals=True)  # someone enabled withdrawals on the exchange
    with pytest.raises(VaultError, match=rf"may withdraw funds, .*; exchange account {account} is deactivated$"):
        workbench.vault.check(account, binance.config())
    assert not workbench.vault.accounts().loc[account, "is_active"]
    with pytest.raises(VaultError, match="is deactivated"):
        workbench.vault.keys_for(account)
    assert len(binance.requests_to("/api/v3/account")) == 1  # the refused check fetched no balance


@pytest.fixture
def gate():
    with Gate(_random_key(32), _random_key(64), {"USDT": "100"}) as server:
        yield server


def _add_gate(server) -> int:
    return workbench.vault.add_account(
        "gate", server.api_key, server.secret, ccxt_config={"urls": {"api": server.api_urls()}}
    )


def test_gate_key_with_a_writable_wallet_is_refused(vault_db, operator, gate):
    answer_gate_key_permissions(gate, {"spot": False, "wallet": False, "account": True}, ip_whitelist=("203.0.113.7",))
    with pytest.raises(VaultError, match=rf"^gate key {re.escape(mask(gate.api_key))} may withdraw funds"):
        _add_gate(gate)
    assert _stored_accounts() == 0 and len(gate.requests_to("/api/v4/account/main_keys")) == 1


def test_gate_key_whitelist_missing_an_egress_ip_is_named(vault_db, operator, gate):
    answer_gate_key_permissions(gate, {"spot": False, "wallet": True, "account": True}, ip_whitelist=("203.0.113.7",))
    with pytest.warns(workbench.vault.KeyWarning, match=r"restricted to IP addresses that lack 2001:db8::7: add them"):
        account = _add_gate(gate)
    listed = workbench.vault.accounts().loc[account]
    assert not listed["can_withdraw"] and listed["ip_restricted"]


@pytest.mark.parametrize("wallet, can_withdraw", [(None, False), (True, False), (False, True)])
def test_gate_key_without_the_account_permission_is_probed(vault_db, operator, gate, wallet, can_withdraw):
    perms = {"spot": False} | ({} if wallet is None else {"wallet": wallet})
    answer_gate_key_permissions(gate, perms, account_permission=False)
    if can_withdraw:
        with pytest.raises(VaultError, match="may withdraw funds"):
            _add_gate(gate)
    else:
        with pytest.warns(
            workbench.vault.KeyWarning,
            match="did not say whether it is restricted to IP addresses; whitelist 203.0.113.7, 2001:db8::7",
        ):
            _add_gate(gate)
    probes = gate.requests_to("/api/v4/withdrawals/0", method="DELETE")
    assert len(probes) == 1 and probes[0].headers["KEY"] == gate.api_key


def test_keys_the_exchange_cannot_be_asked_about_are_stored_with_a_warning(vault_db, operator):
    with pytest.warns(
        workbench.vault.KeyWarning,
        match=r"could not ask the exchange what it may do \(the workbench "
        r"does not know how to ask okx\)",
    ):
        account = workbench.vault.add_account("okx", _random_key(), _random_key(), _random_key(12))
    with BinanceAccount(_random_key(), _random_key(), {}) as server:  # a wrong key: the exchange refuses to say
        answer_binance_key_restrictions(server, withdrawals=True)
        with pytest.warns(workbench.vault.KeyWarning, match="could not ask the exchange .*AuthenticationError") as w:
            workbench.vault.add_account("binance", _random_key(), _random_key(), ccxt_config=server.config())
    assert "signature" not in str(w[0].message) and workbench.vault.accounts().loc[account, "can_withdraw"] is None


@pytest.mark.parametrize(
    "variable, value, message",
    [
        (
            _permissions.EGRESS_IPS_ENV,
            "203.0.113.7, gateway",
            "WORKBENCH_EGRESS_IPS lists 'gateway', which is not an IP",
        ),
        (_permissions.ALLOW_WITHDRAWALS_ENV, "yes", "WORKBENCH_ALLOW_WITHDRAWAL_KEYS='yes': set it to 1 (allow) or 0"),
    ],
)
def test_bad_operator_settings_are_one_line_errors(vault_db, binance, monkeypatch, variable, value, message):
    answer_binance_key_restrictions(binance, withdrawals=True, ip_restrict=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(VaultError, match=re.escape(message)):
        workbench.vault.add_account("binance", binance.api_key, binance.secret, ccxt_config=binance.config())
    assert _stored_accounts() == 0


# --- the audit log of key uses ----------------------------------------------------------------------


def test_every_use_of_a_decrypted_key_is_in_the_tenants_audit_log(vault_db, operator, binance):
    answer_binance_key_restrictions(binance)
    account = workbench.vault.add_account(
        "binance", binance.api_key, binance.secret, label="audited", ccxt_config=binance.config()
    )
    workbench.vault.check(account, binance.config())
    LocalVault().keys_for(account, vault.KeyUse("live run", session_id=7, run_id=42))
    workbench.vault.keys_for(account)
    log = workbench.vault.audit()
    assert list(log.columns) == [
        "used_at",
        "account_id",
        "exchange",
        "key_hint",
        "purpose",
        "session_id",
        "run_id",
        "actor",
    ]
    assert log["purpose"].tolist() == ["keys_for", "live run", "check", "add: asked the exchange what it may do"]
    assert set(log["account_id"]) == {account} and set(log["key_hint"]) == {mask(binance.api_key)}
    run = log.iloc[1]
    assert (run["session_id"], run["run_id"]) == (7, 42) and f"pid {os.getpid()}" in run["actor"]
    assert log["used_at"].is_monotonic_decreasing
    text = log.to_string() + log.to_json(date_format="iso")
    assert binance.api_key not in text and binance.secret not in text
    workbench.vault.remove(account)
    assert len(workbench.vault.audit(account)) == 4  # the log outlives the account


def test_tenant_data_key_rotation_reencrypts_its_keys_and_secrets_and_deletes_the_old_key(vault_db, capsys):
    accounts = _tenants_with_accounts(["alice", "bob"])
    alice_accounts = {a: k for a, (t, k) in accounts.items() if t == "alice"}
    more, keys = _account(LocalVault("alice"), "okx", passphrase=_random_key(12))
    alice_accounts[more] = keys
    channel = Admin("alice").add("webhook", "ops", {"url": "https://example.com/hook/" + "s" * 20}, None, None, None)
    bob_wrapped = _wrapped_keys()
    before = _ciphertexts()

    assert main(["vault", "rotate", "--tenant", "alice"]) == 0
    assert (
        "tenant 'alice': data key version 2 now encrypts 2 exchange account(s) and 1 notification channel(s); "
        "old version(s) [1] deleted"
    ) in capsys.readouterr().out
    with store.owner_session() as s:
        versions = {(row.tenant_id, row.version) for row in s.scalars(select(store.TenantDataKey))}
    alice_id = next(t.id for t in store.list_tenants() if t.name == "alice")
    assert {v for t, v in versions if t == alice_id} == {2}
    after = _ciphertexts()
    assert all(after[a] != before[a] and after[a][0][1:5] == (2).to_bytes(4, "big") for a in alice_accounts)
    assert all(after[a] == before[a] for a in accounts if a not in alice_accounts)
    assert {t: w for t, w in _wrapped_keys().items() if t != alice_id} == {
        t: w for t, w in bob_wrapped.items() if t != alice_id
    }
    for account, keys in alice_accounts.items():
        assert _plain(LocalVault("alice").keys_for(account)) == keys
    _assert_all_decrypt(accounts)
    with store.owner_session() as s:
        row = s.get(store.models.NotificationChannel, channel)
        assert open_secrets(LocalVault("alice"), s, row)["url"].reveal().endswith("s" * 20)
    with store.tenant_session("alice") as s:
        purposes = s.scalars(select(store.models.KeyUseRecord.purpose)).all()
    assert purposes.count("re-encrypted under data key version 2") == 2


def _ciphertexts() -> dict[int, tuple[bytes, bytes]]:
    with store.owner_session() as s:
        return {row.id: (row.api_key_ct, row.secret_ct) for row in s.scalars(select(store.ExchangeAccount))}


@pytest.mark.slow
def test_tenant_data_key_rotation_killed_midway_changes_nothing(vault_db):
    store.create_tenant("alice")
    alice = LocalVault("alice")
    accounts = {a: k for a, k in (_account(alice) for _ in range(3))}
    before = _ciphertexts()
    rotation = _workbench("vault", "rotate", "--tenant", "alice", **{_rotate.PAUSE_ENV: "2"})
    deadline = time.monotonic() + 60
    while "paused after 2 accounts" not in rotation.stderr.readline():
        assert rotation.poll() is None and time.monotonic() < deadline, rotation.stderr.read()
    assert all(_plain(LocalVault("alice").keys_for(a)) == k for a, k in accounts.items())  # readable meanwhile
    rotation.kill()
    rotation.wait()
    assert _ciphertexts() == before and _rotate.status().accounts_by_data_key_version == {1: 3}

    again = _workbench("vault", "rotate", "--tenant", "alice")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "data key version 2 now encrypts 3 exchange account(s)" in out
    assert all(_plain(LocalVault("alice").keys_for(a)) == k for a, k in accounts.items())


def test_tenant_data_key_rotation_of_an_unknown_tenant_says_so(vault_db, capsys):
    assert main(["vault", "rotate", "--tenant", "nobody"]) == 2
    assert "no active tenant named 'nobody'" in capsys.readouterr().err
