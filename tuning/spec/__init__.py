"""What a search is, before anything runs: its space (YAML), cost anchors, ASHA rungs and Pareto maths.

No Ray here: the driver in :mod:`tuning.tune` turns these definitions into Ray Tune and Optuna objects.
"""
