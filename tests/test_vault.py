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
from loopback_exchange import BinanceAccount

import workbench
from sqlalchemy import select

from workbench import store, vault
from workbench.cli import main
from workbench.errors import VaultError
from workbench.vault import LocalVault, _envelope, _keyring, _rotate
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


@pytest.mark.parametrize("other", [
    _envelope.field_context(8, 42, "secret"),    # another tenant
    _envelope.field_context(7, 43, "secret"),    # another row
    _envelope.field_context(7, 42, "api_key"),   # another field
    _envelope.data_key_context(7, 42),           # another kind of blob
])
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


@pytest.mark.parametrize("value, message, fix", [
    ("c2hvcnQ=", "is 5 bytes, a master key is 32", "os.urandom(32)"),
    ("2:@@not*base64@@", "is not base64", "os.urandom(32)"),
    (" , ", "is empty", "os.urandom(32)"),
    ("x:" + "A" * 43, "has version 'x'", "a whole number from 1 up"),
    (f"1:{'A' * 43} 1:{'B' * 43}", "repeats version 1", "its own version"),
])
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


def test_check_signs_with_the_real_binance_client(binance):
    assert check(_keys(binance.api_key, binance.secret), binance.config()) == {"BTC": 0.5, "USDT": 1200.0}
    account_calls = binance.requests_to("/api/v3/account")
    assert account_calls and account_calls[0].headers["X-MBX-APIKEY"] == binance.api_key
    assert "signature" in account_calls[0].query


@pytest.mark.parametrize("wrong", ["secret", "api_key"])
def test_check_with_a_wrong_key_says_authentication_failed_without_the_key(binance, wrong):
    keys = {"api_key": binance.api_key, "secret": binance.secret, wrong: _random_key()}
    with pytest.raises(VaultError, match="binance account 1: authentication failed") as info:
        check(_keys(**keys), binance.config())
    message = str(info.value)
    assert binance.api_key not in message and binance.secret not in message and keys[wrong] not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_check_of_an_unreachable_exchange_says_so():
    config = {"urls": {"api": {k: "http://127.0.0.1:9/x" for k in ("public", "private", "sapi", "fapiPublic", "dapiPublic")}},
              "timeout": 2000}
    with pytest.raises(VaultError, match="could not be reached"):
        check(_keys(_random_key(), _random_key()), config)


def test_check_refuses_verbose_clients(binance):
    with pytest.raises(VaultError, match="verbose=True would print"):
        check(_keys(binance.api_key, binance.secret), {**binance.config(), "verbose": True})


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
    return v.add_account(exchange, Secret(keys["api_key"]), Secret(keys["secret"]),
                         Secret(keys["passphrase"]) if "passphrase" in keys else None, "read", ""), keys


def _plain(keys: ExchangeKeys) -> dict[str, str]:
    return {f: getattr(keys, f).reveal() for f in ("api_key", "secret", "passphrase") if getattr(keys, f)}


def test_notebook_helpers_round_trip(vault_db):
    api_key, secret = _random_key(), _random_key()
    account = workbench.vault.add_account("Binance", api_key, secret, permissions="trade", label="main")
    table = workbench.vault.accounts()
    assert list(table.index) == [account]
    assert table.loc[account, ["exchange", "label", "permissions", "is_active", "key_hint"]].tolist() == [
        "binance", "main", "trade", True, f"{api_key[:4]}…{api_key[-2:]}"]
    assert api_key not in table.to_string() and secret not in table.to_string()
    keys = workbench.vault.keys_for(account)
    assert (keys.exchange, keys.api_key.reveal(), keys.secret.reveal(), keys.passphrase) == ("binance", api_key, secret, None)
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
        args = {"exchange": "gate", "api_key": _random_key(), "secret": _random_key(), "permissions": "read",
                "label": "", **change}
        with pytest.raises(VaultError, match=message):
            v.add_account(args["exchange"], Secret(args["api_key"]), Secret(args["secret"]), None,
                          args["permissions"], args["label"])
    assert len(v.accounts()) == 1


def test_wrong_master_key_is_a_clear_error(vault_db, monkeypatch):
    account, _ = _account(LocalVault())
    monkeypatch.setenv(_keyring.ENV_KEY, f"1:{_key_text()}")
    with pytest.raises(VaultError, match="data key version 1 of tenant 'local' does not decrypt"):
        LocalVault().keys_for(account)
    monkeypatch.setenv(_keyring.ENV_KEY, f"7:{_key_text()}")
    with pytest.raises(VaultError, match="wrapped under master key version 1, which is not in the keyring "
                                         "from WORKBENCH_MASTER_KEY"):
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
    return subprocess.Popen([sys.executable, "-m", "workbench.cli", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    assert out == "" and err.strip() == (f"workbench vault: error: the master key file {path} is accessible to group or "
                           f"others (mode 0644); run `chmod 600 {path}`")
