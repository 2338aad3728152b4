"""The strategy marketplace on real PostgreSQL (both backends of the ``database`` fixture):
publish, browse and filter, the chart, clone, entitlements, update, withdraw, the CLI, and
isolation attacked with raw SQL as another tenant's own role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, sql

import workbench as wb
from workbench import store
from workbench.cli import main
from workbench.errors import MarketError, ParameterError, TemplateError, TenantError
from workbench.market._snapshot import fingerprint, json_metrics

ALICE, BOB, CAROL = "mkt_alice", "mkt_bob", "mkt_carol"
BREAKOUT = {"entry_window": 48, "exit_window": 24}
DIPS = {"dip_levels": [0.5, 1.0, 2.0], "leverage": 2, "stop_loss": 2.0, "take_profit": [1.0, 2.0, 3.0]}
MARKET_TABLES = ["market_listings", "market_listing_params", "market_entitlements", "strategies"]


@contextmanager
def as_tenant(name: str) -> Iterator[None]:
    """Run the notebook API as tenant ``name``, as the hub's spawner arranges it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(store.TENANT_URL_ENV, store.tenant_url(name))
        yield


@pytest.fixture(scope="module")
def market(database) -> dict[str, int]:
    """Alice's private strategies, key, session and results; her listings (free, paid, paid and
    granted to carol, withdrawn) and one of bob's. Their ids by name."""
    tenants = {name: store.create_tenant(name) for name in (ALICE, BOB, CAROL)}
    with as_tenant(ALICE):
        wb.save_strategy("breakout", "channel", BREAKOUT)
        wb.save_strategy("dips", "ema_reversal", DIPS, {"max_daily_loss": 500})
        secret = wb.save_strategy("secret sauce", "market_making", {"spread": 0.7})
        ids = {
            "free": wb.market.publish("breakout", description="Donchian breakout, long only").id,
            "paid": wb.market.publish("dips", name="Dip ladder", description="EMA dips, 2x", price="49.90").id,
            "granted": wb.market.publish("dips", name="Dip ladder (carol)", price=10).id,
            "withdrawn": wb.market.publish("breakout", name="old breakout").id,
        }
        wb.market.grant(ids["granted"], CAROL)
        wb.market.withdraw(ids["withdrawn"])
    with as_tenant(BOB):
        wb.save_strategy("bobs", "channel", {"entry_window": 30})
        ids["bobs"] = wb.market.publish("bobs", price=1).id
    with store.owner_session() as s:  # alice's private trading records
        owner = {"tenant_id": tenants[ALICE].id}
        s.add(store.TenantDataKey(**owner, version=1, wrapped_key=b"wrapped", master_key_version=1))
        s.flush()
        account = store.ExchangeAccount(
            **owner,
            exchange="binance",
            label="main",
            api_key_ct=b"ct",
            secret_ct=b"ct",
            key_hint="ab12…9f",
            data_key_version=1,
        )
        s.add(account)
        s.flush()
        s.add(
            store.TradingSession(
                **owner,
                strategy_id=secret.id,
                exchange_account_id=account.id,
                exchange="binance",
                symbol="BTC/USDT",
                status="paused",
            )
        )
        s.add(
            store.BacktestResult(
                **owner,
                strategy_id=secret.id,
                template="market_making",
                params={"spread": 0.7},
                metrics={"sharpe": 3.1},
            )
        )
    ids.update({name: tenant.id for name, tenant in tenants.items()})
    return ids


# --- publish, browse, show ---------------------------------------------------------------------


def test_a_listing_publishes_real_metrics_on_its_named_data_set(market):
    candles = wb.load_candles()
    with as_tenant(BOB):
        free = wb.market.listing(market["free"])
    expected = wb.backtest("channel", candles, BREAKOUT)
    assert free.metrics == json_metrics(expected.metrics)
    assert (free.author, free.template, free.dataset, free.version, free.status) == (
        ALICE,
        "channel",
        "btcusd_1h",
        1,
        "listed",
    )
    assert free.dataset_info == {
        "bundled": True,
        "symbol": "BTC/USD",
        "timeframe": "1h",
        "source": candles.attrs["source"],
        "start": "2017-07-01T11:00:00+00:00",
        "end": "2019-07-04T01:00:00+00:00",
        "bars": 17583,
        "sha256": fingerprint(candles),
    }
    assert free.strategy == expected.strategy and free.free and free.cloneable
    assert free.settings["init_cash"] == 10_000 and free.settings["fee_taker"] == 0.001
    # the chart is drawn from the stored curve: it ends on the final equity, draws every block's extremes
    source = free.figure.children[0].renderers[0].data_source
    assert source.data["equity"][-1] == pytest.approx(expected.metrics["final_equity"], abs=1e-6)
    assert max(source.data["equity"]) == pytest.approx(expected.equity.max(), abs=1e-6)
    assert min(source.data["drawdown"]) == pytest.approx(-expected.metrics["max_drawdown"], abs=1e-9)
    assert "Sharpe ratio" in free.stats().index
    assert free.verify()["match"].all()


def test_the_listing_is_a_snapshot_the_authors_later_edits_do_not_reach(market):
    with as_tenant(ALICE):
        wb.save_strategy("breakout", "channel", {"entry_window": 200})  # version 2 of her strategy
        assert wb.market.listing(market["free"]).params == wb.get_template("channel").validate(BREAKOUT)


def test_browse_filters_by_template_price_text_and_metrics(market):
    with as_tenant(BOB):
        table = wb.market.browse()
        free, paid = table.loc[market["free"]], table.loc[market["paid"]]
        assert set(table.index) == {market[k] for k in ("free", "paid", "granted", "bobs")}  # not withdrawn
        assert (free["author"], free["template"], free["price"], paid["price"]) == (
            ALICE,
            "channel",
            Decimal(0),
            Decimal("49.90"),
        )
        assert table["cloneable"].to_dict() == {
            market["free"]: True,
            market["paid"]: False,
            market["granted"]: False,
            market["bobs"]: True,
        }
        assert list(wb.market.browse("channel").index) == [market["free"], market["bobs"]]
        assert list(wb.market.browse(free=True).index) == [market["free"]]
        assert list(wb.market.browse(free=False).index) == [market["paid"], market["granted"], market["bobs"]]
        assert list(wb.market.browse(search="LADDER").index) == [market["paid"], market["granted"]]
        assert list(wb.market.browse(search="long ONLY").index) == [market["free"]]
        assert wb.market.browse(search="%").empty  # a literal percent sign, not a wildcard
        middle = (free["sharpe"] + paid["sharpe"]) / 2
        best, worst = (
            (market["free"], market["paid"]) if free["sharpe"] > paid["sharpe"] else (market["paid"], market["free"])
        )
        assert best in wb.market.browse(min_metrics={"sharpe": middle}).index
        assert worst not in wb.market.browse(min_metrics={"sharpe": middle}).index
        shallow = wb.market.browse(max_metrics={"max_drawdown": free["max_drawdown"]})
        assert set(shallow.index) == set(table.index[table["max_drawdown"] <= free["max_drawdown"]])
        assert list(wb.market.browse("channel", free=True, min_metrics={"trades": 1}).index) == [market["free"]]
        with pytest.raises(MarketError, match="unknown metric 'sharp'; the metrics are total_return"):
            wb.market.browse(min_metrics={"sharp": 1})
        with pytest.raises(MarketError, match="metric bound sharpe: expected a number"):
            wb.market.browse(min_metrics={"sharpe": "high"})
    with as_tenant(ALICE):
        assert wb.market.browse()["cloneable"].to_dict()[market["paid"]]  # the author always may


def test_a_paid_listing_shows_its_metrics_but_not_its_parameters(market):
    with as_tenant(BOB):
        paid = wb.market.listing(market["paid"])
        assert paid.params is None and paid.risk_limits is None and not paid.cloneable
        assert paid.metrics["trades"] > 0 and len(paid.equity_curve["equity"]) > 100
        with pytest.raises(
            MarketError,
            match=r"costs 49.90 USD: you need an entitlement from its author "
            r"'mkt_alice' \(or the operator\)",
        ):
            _ = paid.strategy
        with pytest.raises(MarketError, match="entitlement"):
            paid.verify()


# --- clone and entitlements --------------------------------------------------------------------


def test_clone_free_at_once_and_paid_only_with_an_entitlement(market):
    with as_tenant(ALICE):
        paid = wb.market.publish("dips", name="Dips for sale", price=20).id
    with as_tenant(BOB):
        clone = wb.market.clone(market["free"], name="their breakout")
        assert (clone.template, clone.listing_id, clone.version) == ("channel", market["free"], 1)
        assert clone.params == wb.get_template("channel").validate(BREAKOUT)
        assert wb.load_strategy("their breakout") == clone
        with pytest.raises(MarketError, match="you have a strategy named 'their breakout' already"):
            wb.market.clone(market["free"], name="their breakout")
        with pytest.raises(MarketError, match="costs 20 USD: you need an entitlement"):
            wb.market.clone(paid)
        with pytest.raises(MarketError, match="only its author or the operator can grant"):
            wb.market.grant(paid, BOB)
    with as_tenant(ALICE):
        granted = wb.market.grant(paid, BOB)
        assert (granted.listing_id, granted.grantee, granted.granted_by) == (paid, BOB, ALICE)
        assert wb.market.grant(paid, BOB) == granted  # granting twice changes nothing
        with pytest.raises(MarketError, match="'mkt_alice' is the author"):
            wb.market.grant(paid, ALICE)
        with pytest.raises(MarketError, match="no tenant named 'nobody'"):
            wb.market.grant(paid, "nobody")
        with pytest.raises(TenantError, match="invalid"):
            wb.market.grant(paid, "Robert'); --")
    with as_tenant(BOB):
        bought = wb.market.clone(paid)
        assert (bought.name, bought.template, bought.listing_id) == ("Dips for sale", "ema_reversal", paid)
        assert bought.params == wb.get_template("ema_reversal").validate(DIPS)
        assert bought.risk_limits["max_daily_loss"] == 500
    with as_tenant(CAROL):
        with pytest.raises(MarketError, match="entitlement"):
            wb.market.clone(paid)
    operator = wb.market.grant(paid, CAROL, opener=store.owner_session)
    assert operator.granted_by is None
    with as_tenant(CAROL):
        assert wb.market.clone(paid).listing_id == paid
        assert wb.market.entitlements()[["listing_id", "grantee"]].values.tolist() == [
            [market["granted"], CAROL],
            [paid, CAROL],
        ]
    with as_tenant(BOB):
        assert wb.market.entitlements()[["listing_id", "grantee"]].values.tolist() == [[paid, BOB]]
    with as_tenant(ALICE):
        mine = wb.market.entitlements().fillna({"granted_by": "(the operator)"})
        assert mine[["listing_id", "grantee", "granted_by"]].values.tolist() == [
            [market["granted"], CAROL, ALICE],
            [paid, BOB, ALICE],
            [paid, CAROL, "(the operator)"],
        ]


# --- update and withdraw -----------------------------------------------------------------------


def test_update_and_withdraw_leave_clones_with_their_owners(market):
    with as_tenant(ALICE):
        first = wb.market.publish("breakout", name="evolving")
    with as_tenant(BOB):
        clone = wb.market.clone(first.id, name="early copy")
        with pytest.raises(MarketError, match="belongs to 'mkt_alice': only its author can update it"):
            wb.market.update(first.id, description="hacked")
        with pytest.raises(MarketError, match="only its author or the operator can withdraw it"):
            wb.market.withdraw(first.id)
    with as_tenant(ALICE):
        second = wb.market.update(
            first.id,
            strategy={"type": "channel", "params": {"entry_window": 96}},
            price=5,
            description="now <b>slower</b>",
        )
        assert (second.version, second.price, second.description) == (2, Decimal(5), "now <b>slower</b>")
        assert "now &lt;b&gt;slower&lt;/b&gt;" in second._repr_html_()  # another tenant's text, escaped
        assert second.params["entry_window"] == 96 and second.metrics != first.metrics
        assert second.metrics == json_metrics(wb.backtest("channel", wb.load_candles(), {"entry_window": 96}).metrics)
        renamed = wb.market.update(first.id, name="evolving breakout")  # no new measurement
        assert (renamed.name, renamed.version, renamed.metrics) == ("evolving breakout", 2, second.metrics)
        with pytest.raises(MarketError, match="nothing to update"):
            wb.market.update(first.id)
    with as_tenant(BOB):
        assert wb.load_strategy(clone.id) == clone  # the update did not reach the copy
        assert not wb.market.listing(first.id).cloneable  # now paid
    with as_tenant(ALICE):
        gone = wb.market.withdraw(first.id)
        assert gone.status == "withdrawn" and wb.market.withdraw(first.id).status == "withdrawn"
        assert wb.market.listing(first.id).status == "withdrawn"  # the author still sees it
        assert wb.market.browse(search="evolving").loc[first.id, "status"] == "withdrawn"
        with pytest.raises(MarketError, match="is withdrawn; publish the strategy again"):
            wb.market.update(first.id, price=1)
    with as_tenant(BOB):
        with pytest.raises(MarketError, match=f"no listing #{first.id} in the catalogue"):
            wb.market.listing(first.id)
        with pytest.raises(MarketError, match=f"no listing #{first.id}"):
            wb.market.clone(first.id, name="late copy")
        assert first.id not in wb.market.browse().index
        kept = wb.load_strategy("early copy")
        assert (kept.params, kept.listing_id) == (clone.params, first.id)
    assert wb.market.withdraw(market["bobs"], opener=store.owner_session).status == "withdrawn"
    assert wb.market.browse(opener=store.owner_session).loc[market["bobs"], "status"] == "withdrawn"


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_precise_error_and_stores_nothing(market):
    candles = wb.load_candles().iloc[-2000:]
    with as_tenant(ALICE):
        before = len(wb.market.browse())
        refused = [
            (dict(strategy="breakout", price=-1), MarketError, "price: -1 is not allowed"),
            (dict(strategy="breakout", price="ten"), MarketError, "price: 'ten' is not allowed"),
            (dict(strategy="breakout", price=float("nan")), MarketError, "price: nan"),
            (dict(strategy="breakout", currency="usd"), MarketError, "currency: 'usd' is not a currency code"),
            (dict(strategy="breakout", name="  "), MarketError, "name: expected a non-empty string"),
            (dict(strategy={"type": "channel"}), MarketError, "name: expected a non-empty string"),
            (dict(strategy={"type": "grid", "params": {}}, name="g"), TemplateError, "unknown template 'grid'"),
            (
                dict(strategy={"type": "channel", "params": {"entry_window": 0}}, name="c"),
                ParameterError,
                "entry_window",
            ),
            (dict(strategy=["channel"]), MarketError, "publish a saved strategy"),
            (dict(strategy="no such"), wb.StrategyError, "no saved strategy 'no such'"),
            (dict(strategy="breakout", dataset=candles), MarketError, "needs dataset_name="),
            (dict(strategy="breakout", dataset="eth"), wb.CandleError, "no bundled candles named 'eth'"),
            (dict(strategy="breakout", fees=0.5), ParameterError, "fees"),
        ]
        for kwargs, error, message in refused:
            with pytest.raises(error, match=message):
                wb.market.publish(kwargs.pop("strategy"), **kwargs)
        with pytest.raises(MarketError, match="named by its id"):
            wb.market.listing("7")
        assert len(wb.market.browse()) == before

        own = wb.market.publish(
            "breakout", name="recent breakout", dataset=candles, dataset_name="last 2000h", init_cash=1000
        )
        assert own.dataset == "last 2000h" and not own.dataset_info["bundled"]
        assert own.dataset_info["bars"] == 2000 and own.settings["init_cash"] == 1000
        assert own.verify(candles)["match"].all()
        with pytest.raises(MarketError, match="'last 2000h', which is not bundled; pass those candles"):
            own.verify()
        with pytest.raises(MarketError, match="sha256 differs"):
            own.verify(wb.load_candles().iloc[-2001:-1])
        with pytest.raises(MarketError, match="not bundled; pass its candles"):
            wb.market.update(own.id, strategy="breakout")


# --- isolation through raw SQL -----------------------------------------------------------------


def _visible(conn: psycopg.Connection) -> dict[str, list]:
    """The rows of each table the connection may read (tenants may not read tenant_data_keys)."""
    tables = [*MARKET_TABLES, "tenant_data_keys", "exchange_accounts", "trading_sessions", "backtest_results"]
    return {
        table: sorted(
            json.dumps(row, default=str)
            for (row,) in conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t").format(sql.Identifier(table)))
        )
        for table in tables
        if conn.execute("SELECT has_table_privilege(current_user, %s, 'SELECT')", [table]).fetchone()[0]
    }


def test_raw_sql_as_another_tenant_sees_only_the_listing_and_changes_nothing(database, market):
    def connect(url: str) -> psycopg.Connection:
        return psycopg.connect(database.server.libpq_url(url), autocommit=True)

    with connect(database.url) as owner:
        before = _visible(owner)
        assert owner.execute(
            "SELECT bool_and(relrowsecurity AND relforcerowsecurity), count(*) FROM pg_class WHERE relname = ANY(%s)",
            [MARKET_TABLES],
        ).fetchone() == (True, 4)
    with connect(store.tenant_url(BOB)) as bob:
        seen = {table: [json.loads(row) for row in rows] for table, rows in _visible(bob).items()}
        # nothing of alice's but her listed listings: no strategy, key, session or result
        for table in ("strategies", "tenant_data_keys", "exchange_accounts", "trading_sessions", "backtest_results"):
            assert all(row["tenant_id"] == market[BOB] for row in seen.get(table, ())), table
        listed = {row["id"] for row in seen["market_listings"]}
        assert {market[k] for k in ("free", "paid", "granted")} <= listed and market["withdrawn"] not in listed
        assert all(row["status"] == "listed" or row["author"] == BOB for row in seen["market_listings"])
        assert market["paid"] not in {row["listing_id"] for row in seen["market_listing_params"]}
        assert market["granted"] not in {row["listing_id"] for row in seen["market_listing_params"]}
        assert market["free"] in {row["listing_id"] for row in seen["market_listing_params"]}
        assert {row["grantee"] for row in seen["market_entitlements"]} <= {BOB}  # not carol's
        assert bob.execute("SELECT current_tenant_name()").fetchone() == (BOB,)

        nothing = [  # statements that run but touch no row of alice's
            ("UPDATE market_listings SET price = 0, metrics = '{\"sharpe\": 9}' WHERE author = %s", [ALICE]),
            ("UPDATE market_listings SET status = 'listed' WHERE id = %s", [market["withdrawn"]]),
            ("UPDATE market_listing_params SET params = '{}' WHERE listing_id = %s", [market["free"]]),
            (
                "INSERT INTO strategies (name, template, params, risk_limits, listing_id) SELECT 'stolen', "
                "'ema_reversal', params, risk_limits, listing_id FROM market_listing_params WHERE listing_id = %s",
                [market["paid"]],
            ),
        ]
        for statement, params in nothing:
            assert bob.execute(statement, params).rowcount == 0, statement
        refused_by_policy = [
            (
                "INSERT INTO market_listings (author, name, template, dataset, dataset_info, settings, metrics, "
                "equity_curve) VALUES (%s, 'fake', 'channel', 'x', '{}', '{}', '{\"sharpe\": 9}', '{}')",
                [ALICE],
            ),
            ("UPDATE market_listings SET author = %s WHERE id = %s", [ALICE, market["bobs"]]),
            (
                "INSERT INTO market_listing_params (listing_id, params, risk_limits) VALUES (%s, '{}', '{}')",
                [market["paid"]],
            ),
            ("INSERT INTO market_entitlements (listing_id, grantee) VALUES (%s, %s)", [market["paid"], BOB]),
            (
                "INSERT INTO market_entitlements (listing_id, grantee, granted_by) VALUES (%s, %s, %s)",
                [market["paid"], BOB, ALICE],
            ),
            (
                "INSERT INTO market_entitlements (listing_id, grantee, granted_by) VALUES (%s, %s, NULL)",
                [market["bobs"], CAROL],
            ),  # even on his own listing, not in the operator's name
        ]
        for statement, params in refused_by_policy:
            with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
                bob.execute(statement, params)
        for statement in (
            "DELETE FROM market_listings",
            "DELETE FROM market_listing_params",
            "DELETE FROM market_entitlements",
            "UPDATE market_entitlements SET grantee = grantee",
            "TRUNCATE market_listings",
            "ALTER TABLE market_listings DISABLE ROW LEVEL SECURITY",
            "DROP POLICY catalogue ON market_listings",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                bob.execute(statement)
    with connect(database.url) as owner:
        assert _visible(owner) == before


# --- command line ------------------------------------------------------------------------------


def test_market_commands(market, capsys):
    with as_tenant(ALICE):
        assert (
            main(
                [
                    "market",
                    "publish",
                    "dips",
                    "--name",
                    "CLI dips",
                    "--price",
                    "3.5",
                    "--description",
                    "from the terminal",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        listing_id = int(out.split("#")[1].split()[0])
        assert f"published listing #{listing_id} 'CLI dips'" in out
    with as_tenant(BOB):
        assert main(["market", "list", "--paid", "--search", "terminal"]) == 0
        out = capsys.readouterr().out
        assert "CLI dips" in out and "mkt_alice" in out and "Dip ladder" not in out
        assert main(["market", "list", "--min", "sharpe"]) == 2
        assert "--min 'sharpe': expected METRIC=NUMBER" in capsys.readouterr().err
        assert main(["market", "show", str(listing_id)]) == 0
        out = capsys.readouterr().out
        assert "price: 3.5 USD" in out and "Sharpe ratio" in out and "(needs an entitlement)" in out
        assert main(["market", "clone", str(listing_id)]) == 2
        assert "costs 3.5 USD: you need an entitlement" in capsys.readouterr().err
    assert main(["market", "grant", str(listing_id), BOB]) == 0  # no tenant URL: the operator
    assert f"{BOB} may clone listing #{listing_id} (granted by the operator)" in capsys.readouterr().out
    with as_tenant(BOB):
        assert main(["market", "clone", str(listing_id), "--name", "cli copy"]) == 0
        assert "cloned listing" in capsys.readouterr().out
        assert main(["market", "show", str(listing_id), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["params"]["leverage"] == 2 and shown["author"] == ALICE
        assert main(["market", "verify", str(listing_id)]) == 0
        assert "every published metric matches" in capsys.readouterr().out
        assert main(["market", "withdraw", str(listing_id)]) == 2
        assert "only its author or the operator can withdraw it" in capsys.readouterr().err
    assert main(["market", "withdraw", str(listing_id)]) == 0
    assert "withdrawn" in capsys.readouterr().out
    assert main(["market", "list", "--template", "ema_reversal"]) == 0
    assert "withdrawn" in capsys.readouterr().out  # the operator sees withdrawn listings too


# --- the notebook browser ----------------------------------------------------------------------


def test_the_browser_filters_shows_and_clones(market):
    with as_tenant(CAROL):
        browser = wb.market.browser()
        assert market["free"] in browser.table.index and market["withdrawn"] not in browser.table.index
        browser.template.value = "channel"
        browser.price.value = True
        browser.search.value = "long only"
        assert [value for _, value in browser.listings.options] == [market["free"]]
        browser.listings.value = market["free"]
        assert browser.selected.id == market["free"] and "Sharpe ratio" in browser.detail.value
        assert not browser.clone_button.disabled
        browser.name_box.value = "browsed breakout"
        saved = browser.clone()
        assert saved.listing_id == market["free"] and "cloned into your strategies" in browser.status.value
        assert browser.clone() is None and "already" in browser.status.value  # the error, in the widget
        browser.min_sharpe.value = "lots"
        assert "min Sharpe: &#x27;lots&#x27; is not a number" in browser.status.value
        browser.min_sharpe.value = ""
        browser.template.value, browser.price.value, browser.search.value = None, False, ""
        browser.listings.value = market["paid"]
        assert browser.clone_button.disabled and "49.90 USD" in browser.detail.value
        browser.listings.value = market["granted"]  # paid, but carol holds an entitlement
        assert not browser.clone_button.disabled
