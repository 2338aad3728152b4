"""The seeded fault campaign of live sessions (``tests/fault_campaign.py``) on fixed seeds.

Each seed is one trial: a venue, market and template, a session ticked through lost answers,
delayed visibility, partial fills, 5xx/429, slow answers, rejects, crashes at the tick's
checkpoints and (some seeds) a SIGKILLed tick process, then healed and stopped or left running.
After each: no client order id executed twice, every venue trade recorded once, the recorded
fills make the venue's position, no ended session holding an unprotected position. A failing
seed replays alone with ``python tests/fault_campaign.py SEED`` (half the seeds run that way
beside the test, on the second core); ``benchmarks/fault_campaign.py`` runs thousands.

The seeds cover every venue, market and template, the SIGKILL and stop-time faults included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fault_campaign import plan_trial, run_trial

from workbench import vault

# one seed per venue, market and template (the coverage test checks the faults they bring);
# thousands more run in benchmarks/fault_campaign.py
SEEDS = [32, 31, 37, 59, 4052, 1037, 3139, 41, 68, 1018, 4073, 1035]


@pytest.fixture
def db(database):
    if database.server.backend != "embedded":
        pytest.skip("the venues are the loopback's; the embedded server suffices")
    vault.use(None)
    yield database
    vault.use(None)


def test_the_seeds_cover_every_venue_market_and_template_and_each_kind_of_fault():
    plans = [plan_trial(seed) for seed in SEEDS]
    combos = {(p.venue, p.market, p.template) for p in plans}
    assert combos == {
        (v, m, t)
        for v in ("binance", "gate")
        for m in ("spot", "swap")
        for t in ("channel", "ema_reversal", "market_making")
    }
    kinds = {f.kind for p in plans for f in p.faults}
    assert kinds >= {
        "lose_send",
        "lose_cancel",
        "read_5xx",
        "read_429",
        "slow_read",
        "slow_send",
        "partial",
        "visibility",
        "reject_invalid",
        "reject_funds",
        "crash",
    }
    assert any(p.kill for p in plans) and {p.stop_fault for p in plans if p.stop_at_end} >= {"crash", "reject_funds"}
    assert {p.on_error for p in plans} == {"protect", "flatten", "leave"}
    assert plan_trial(SEEDS[0]) == plans[0]  # a seed is its trial


@pytest.mark.slow
def test_no_seeded_fault_breaks_an_invariant(db, capsys):
    # two thirds of the seeds replay in two more processes, each with its own embedded
    # PostgreSQL: a trial mostly waits (timeouts, visibility, Retry-After), so three share 2 cores
    others = [
        (
            subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("fault_campaign.py")), *map(str, SEEDS[k::3])],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            SEEDS[k::3],
        )
        for k in (1, 2)
    ]
    failed = []
    for seed in SEEDS[::3]:
        result = run_trial(seed)
        if not result.ok:
            failed.append(result.summary())
    for other, seeds in others:
        printed, _ = other.communicate(timeout=1200)
        summaries = [line for line in printed.splitlines() if line.startswith("seed ")]
        assert len(summaries) == len(seeds), printed[-2000:]
        failed += [line for line in summaries if " -- " in line]
    with capsys.disabled():
        print("".join("\n" + line for line in failed))
    assert not failed, "\n".join(failed)
