"""Short soak for CI: two 200 Hz sensors recorded by one `holdmon live` through each fault kind once.

The long run is `benchmarks/soak.py --minutes 120`; this runs the same code for under a minute.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import FAULT_KINDS, run_soak

pytestmark = pytest.mark.ble

SOAK_MINUTES = 42 / 60
FAULT_EVERY_S = 8.0
RSS_GROWTH_MAX_MB = 20.0
"""A leak of anything per sample or per notification (2 x 200 Hz, 2 x 25 notifications/s) would pass
this within a minute; the growth rate is measured over hours by the long soak."""


def test_short_soak_loses_nothing_unexplained(ble_stack, tmp_path):
    result = run_soak(ble_stack, tmp_path, SOAK_MINUTES, FAULT_EVERY_S, sample_every_s=5.0, log=lambda _m: None)

    assert [f["kind"] for f in result.faults] == list(FAULT_KINDS)
    assert result.client_exit == 0
    assert result.unexplained_loss == 0, result.sides
    for side in result.sides:
        assert side["emitted"] > 0
        assert side["value_mismatches"] == 0 and side["not_emitted"] == 0, side
        assert side["recorded"] == side["emitted"] - side["missing"]
        assert side["summary_matches_file"], side
        assert side["replay_exit"] == 0, side["replay_error"]
        assert side["gaps_in_file"] >= 1  # a kill, a reset or a dropped link on each side
    by_side = {s["side"]: s for s in result.sides}
    assert by_side["left"]["summary"]["bad"] >= 1  # the garbage notification, counted
    assert by_side["right"]["summary"]["resets"] == 1
    assert result.rss_end_mb - result.rss_samples[1][1] < RSS_GROWTH_MAX_MB
    assert result.ok
