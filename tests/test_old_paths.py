"""Tests for tuning.tune.old_paths: pickles of experiments saved before the layout change still load."""

from __future__ import annotations

import pickle

from tuning.engine.config import ModelConfig
from tuning.spec.rungs import asha_rungs
from tuning.tune import old_paths
from tuning.tune.schedulers.mo_asha import ParetoASHA
from tuning.tune.schedulers.promotion_asha import PromotionASHA
from tuning.tune.searcher import PrunedAwareOptunaSearch, SlotLimiter, _PicklableNSGAIISampler
from tuning.tune.trial import trainable


def _load_global(module: str, name: str) -> object:
    """What an old pickle's reference to ``module.name`` loads as (protocol 0's GLOBAL opcode)."""
    return pickle.loads(f"c{module}\n{name}\n.".encode())


def test_old_module_paths_load_the_moved_objects() -> None:
    old_paths.register()
    assert _load_global("tuning.tune_glue", "PrunedAwareOptunaSearch") is PrunedAwareOptunaSearch
    assert _load_global("tuning.tune_glue", "SlotLimiter") is SlotLimiter
    assert _load_global("tuning.tune_glue", "_PicklableNSGAIISampler") is _PicklableNSGAIISampler
    assert _load_global("tuning.tune_glue", "trainable") is trainable
    assert _load_global("tuning.mo_asha", "ParetoASHA") is ParetoASHA
    assert _load_global("tuning.promotion_asha", "PromotionASHA") is PromotionASHA
    assert _load_global("tuning.model", "ModelConfig") is ModelConfig
    assert _load_global("tuning.spaces", "asha_rungs") is asha_rungs
    old_paths.register()  # twice is harmless
