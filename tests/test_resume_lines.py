"""Ray's lines about its own stop are dropped from its logger, and nothing else is."""

from __future__ import annotations

import logging

import pytest

import tuning.tune.resume  # noqa: F401  (installs the filter on Ray Tune's logger)


def test_rays_stop_lines_are_dropped_and_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ray.tune.tune")
    with caplog.at_level(logging.INFO, logger="ray.tune.tune"):
        logger.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run. Press CTRL+C to skip.")
        logger.error("Trials did not complete: %s", ["trainable_738c775c", "trainable_ea6537ad"])
        logger.info('Resume experiment with: Tuner.restore(path="/tmp/x", trainable=...)')
        logger.info("Total run time: 910.25 seconds (899.97 seconds for the tuning loop).")
        logger.error("Trial trainable_1 errored after 3 iterations")
    assert [r.getMessage() for r in caplog.records] == [
        "Total run time: 910.25 seconds (899.97 seconds for the tuning loop).",
        "Trial trainable_1 errored after 3 iterations"]
