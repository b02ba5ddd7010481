"""Crash safety in CI: `holdmon live --record` SIGKILLed while streaming keeps a file that replays and
holds every sample sent up to the last second. The 50-kill version is `benchmarks/crash.py`."""

from __future__ import annotations

import pytest

from benchmarks.crash import run_crashes

pytestmark = pytest.mark.ble

KILLS = 3
KILL_AFTER_STREAMING_S = (0.3, 2.5)


def test_sigkill_while_streaming_keeps_a_replayable_file(ble_stack, tmp_path):
    results = run_crashes(ble_stack, tmp_path, KILLS, seed=3, kill_after_s=KILL_AFTER_STREAMING_S,
                          streaming_share=1.0, log=lambda _m: None)

    for run in results:
        assert run.file_exists and run.replay_exit == 0, run
        assert run.recorded > 0 and run.prefix_ok, run  # exactly the first samples sent, in order
        assert run.lost_window_s <= 1.0, run  # at most the last second before the kill is missing
        assert run.ok, run
