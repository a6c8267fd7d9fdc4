"""Running a search on Ray Tune and Optuna: the only layer that imports either."""
