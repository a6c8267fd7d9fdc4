"""The module paths of experiments saved before the package was split into layers, so that ``--resume`` reads them.

Ray saves an experiment's searcher, schedulers, callbacks and settings with cloudpickle (``tuner.pkl``, the
searcher's state, the search generator's), and a pickle names each class and function by its module path. Those
paths moved (``tuning.tune_glue`` is now :mod:`tuning.tune.searcher` and :mod:`tuning.tune.trial`, and so on):
:func:`register` puts a module under each old path, holding the new modules' names, before anything of an older
experiment is unpickled. Nothing else imports the old paths.
"""

from __future__ import annotations

import importlib
import sys
import types

# old module path -> the modules that now hold its names (the first one wins where two define a name)
OLD_PATHS: dict[str, tuple[str, ...]] = {
    "tuning.tune_glue": ("tuning.tune.searcher", "tuning.tune.trial"),
    "tuning.mo_asha": ("tuning.tune.schedulers.mo_asha",),
    "tuning.promotion_asha": ("tuning.tune.schedulers.promotion_asha",),
    "tuning.progress": ("tuning.tune.progress",),
    "tuning.resume": ("tuning.tune.resume",),
    "tuning.ray_state": ("tuning.tune.ray_state",),
    "tuning.storage": ("tuning.tune.storage",),
    "tuning.atomic_fs": ("tuning.tune.atomic_fs",),
    "tuning.spaces": ("tuning.spec.space", "tuning.spec.rungs", "tuning.tune.searcher"),
    "tuning.anchor": ("tuning.spec.anchor",),
    "tuning.pareto": ("tuning.spec.pareto",),
    "tuning.config": ("tuning.engine.config",),
    "tuning.model": ("tuning.engine.model", "tuning.engine.config"),
    "tuning.data": ("tuning.engine.data",),
    "tuning.train": ("tuning.engine.train",),
    "tuning.checkpoint": ("tuning.engine.checkpoint",),
    "tuning.complexity": ("tuning.engine.complexity",),
    "tuning.precision": ("tuning.engine.precision",),
}


def register() -> None:
    """Make every old path importable (once; an old path already in ``sys.modules`` is left alone)."""
    for old, new in OLD_PATHS.items():
        if old in sys.modules:
            continue
        alias = types.ModuleType(old, f"Old path of {', '.join(new)} (see tuning.tune.old_paths).")
        for name in reversed(new):
            alias.__dict__.update({k: v for k, v in vars(importlib.import_module(name)).items()
                                   if not (k.startswith("__") and k.endswith("__"))})
        sys.modules[old] = alias
