"""The course homework (HW3) reproduction: its reference table and ``python -m tuning.compare``."""
