"""Stopping a search so that ``--resume`` can continue it, and what a resumed search may change.

One way to stop. Ctrl-C (SIGINT), SIGTERM and the end of ``--time-budget-s`` all end the search through Ray Tune's
own interrupt: ``tune.run`` ends its loop, saves the experiment state once more and returns, leaving unfinished
trials RUNNING or PAUSED and the searcher open. Ray's ``time_budget_s`` stopper is not used: it marks every
unfinished trial TERMINATED and the searcher finished, so ``--resume`` had nothing left to run. Ray reaches its
interrupt through a signal handler it installs for the run (``_setup_signal_catching`` in ``ray/tune/tune.py``,
on SIGINT and SIGUSR1); with ``TUNE_DISABLE_SIGINT_HANDLER`` set, SIGINT is ours and we pass the stop on as SIGUSR1.

What a resumed search may change: how long it runs and how many trials it keeps or starts
(:data:`APPLIED_ON_RESUME`). What a trial is stays as the experiment began (:data:`FIXED_ON_RESUME`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from tuning.errors import UserError
from tuning.files import EXPERIMENT_META

DEFAULT_SPACE = "smoke"
DEFAULT_STORAGE = "./runs"
COMMAND = "python -m tuning.search"
# Flags that change what a trial is or how it is judged: a resumed search must keep the experiment's values.
FIXED_ON_RESUME = ("space", "objectives", "max_iters", "seed", "cost_anchor", "max_flops_per_char", "max_params",
                   "max_inference_ms", "precision", "cpus_per_trial", "gpus_per_trial", "deterministic")
# Flags that apply to the session they are given in, first or resumed.
APPLIED_ON_RESUME = ("time_budget_s", "num_samples", "max_concurrent", "quiet", "max_failures", "trial_timeout_s")
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it

# Ray Tune ends its run on this environment variable's absence; set before the first tune.run (see the docstring).
os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"


# Lines of ray/tune/tune.py's logger that speak of Ray's API or of its own Ctrl-C handling: every stop of ours
# reaches Ray as its interrupt, and the driver says in its own words why it stopped and how to continue.
RAY_STOP_LINES = (
    "Tuner.restore(",  # "Resume experiment with: Tuner.restore(...)": an API our users do not call
    "Stop signal received",  # "(e.g. via SIGINT/Ctrl+C) ... Press CTRL+C to skip": also said for a time budget
    "Trials did not complete",  # an ERROR listing every unfinished and paused trial: what a stop leaves, by design
)


def not_rays_stop_line(record: logging.LogRecord) -> bool:
    """False for the lines of :data:`RAY_STOP_LINES` (a :class:`logging.Filter` callable)."""
    message = record.getMessage()
    return not any(line in message for line in RAY_STOP_LINES)


logging.getLogger("ray.tune.tune").addFilter(not_rays_stop_line)


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The options present in ``argv`` (abbreviated or not), parsed: dest -> value. Defaults are left out."""
    quiet = argparse.Namespace()
    saved = {a.dest: a.default for a in parser._actions}  # noqa: SLF001 (argparse has no public list of actions)
    try:
        for action in parser._actions:  # noqa: SLF001
            action.default = argparse.SUPPRESS
        parser.parse_args(argv, namespace=quiet)
    finally:
        for action in parser._actions:  # noqa: SLF001
            action.default = saved[action.dest]
    return vars(quiet)


def command_argv(command: str) -> list[str]:
    """The flags of a command recorded in the meta (``python -m tuning.search ...``)."""
    words = shlex.split(command)
    return words[3:] if words[:3] == COMMAND.split() else words


def find_latest(storage: Path, space_name: str | None) -> tuple[str, dict[str, Any]] | None:
    """The experiment in ``storage`` started last (of space ``space_name``, or of any): its name and meta."""
    found = []
    for meta_file in storage.glob(f"*/{EXPERIMENT_META}"):
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if space_name is None or meta.get("space") == space_name:
            # started_at orders sessions started in the same second poorly; the meta's mtime breaks ties
            found.append((str(meta.get("started_at", "")), meta_file.stat().st_mtime, meta_file.parent.name, meta))
    if not found:
        return None
    _, _, name, meta = max(found, key=lambda f: f[:3])
    return name, meta


def resume_command(name: str, storage: str) -> str:
    """The command that continues experiment ``name``; ``--storage-path`` only where it is not the default."""
    words = [COMMAND, "--resume", "--name", shlex.quote(name)]
    default = str(Path(DEFAULT_STORAGE).resolve())
    if storage != default:
        words += ["--storage-path", shlex.quote(storage)]
    return " ".join(words)


def session_args(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str],
                 meta: dict[str, Any]) -> argparse.Namespace:
    """The arguments of a resumed session: the experiment's own for :data:`FIXED_ON_RESUME`, this session's for
    everything else. A fixed flag given now with another value than the experiment's is a :class:`UserError`."""
    commands = meta.get("commands") or []
    first = given_flags(parser, command_argv(commands[0])) if commands else {}
    now = given_flags(parser, argv)
    merged = argparse.Namespace(**vars(args))
    # What the first session used where it chose by itself (a GPU share when the cluster had GPUs, say).
    effective = {k: v for k, v in (meta.get("resources") or {}).items() if k in ("cpus_per_trial", "gpus_per_trial")}
    for dest in FIXED_ON_RESUME:
        then = first.get(dest, effective.get(dest, parser.get_default(dest)))
        if dest == "space":
            then = meta.get("space_file") if Path(str(meta.get("space_file", ""))).is_file() else meta.get("space")
            if dest in now and not _same_space(now[dest], meta):
                raise UserError(f"--space={now[dest]} is invalid with --resume: experiment {args.name!r} searches "
                                f"space {meta.get('space')!r}, and a resumed search keeps its space")
        elif dest in now and now[dest] != then:
            flag = "--" + dest.replace("_", "-")
            was = "not given" if dest not in first else f"{then}"
            raise UserError(f"{flag}={now[dest]} is invalid with --resume: it changes what a trial is, and experiment "
                            f"{args.name!r} began with {flag} {was}")
        setattr(merged, dest, then)
    return merged


def _same_space(given: str, meta: dict[str, Any]) -> bool:
    from tuning.spec.space import find_space

    try:
        return find_space(given).stem == meta.get("space")
    except UserError:
        return given == meta.get("space")


class StopRequests:
    """While a search runs: SIGINT, SIGTERM and the deadline each end it through Ray's interrupt (module docstring).

    ``reason`` says which came first ("SIGINT", "SIGTERM", "time budget"), or None. A second SIGINT or SIGTERM
    while Ray winds down stops the driver at once, as Ray's own handler does.
    """

    def __init__(self, time_budget_s: float | None) -> None:
        self.time_budget_s = time_budget_s
        self.reason: str | None = None
        self._done = threading.Event()
        self._previous: dict[int, Any] = {}
        self._deliver: threading.Thread | None = None

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("a search runs in the main thread: signal handlers can only be set there")
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            self._previous[signum] = signal.getsignal(signum)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        # Until tune.run installs its own: a SIGUSR1 sent early must not end the process (its default action).
        signal.signal(signal.SIGUSR1, self._placeholder)
        if self.time_budget_s is not None:
            threading.Thread(target=self._deadline, name="tuning-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._deliver is not None:  # a SIGUSR1 sent after the handlers below are restored would end the process
            self._deliver.join()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.reason or "", 0)

    @staticmethod
    def _placeholder(signum: int, frame: FrameType | None) -> None:
        pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.reason in EXIT_CODES:  # the second signal: stop now
            if signum == signal.SIGTERM:
                raise SystemExit(EXIT_CODES[name])
            raise KeyboardInterrupt
        print(f"\n{name}: stopping the search; trials keep what they have trained (again: stop at once)",
              file=sys.stderr)
        self._stop(name)

    def _deadline(self) -> None:
        assert self.time_budget_s is not None
        if not self._done.wait(self.time_budget_s):
            print(f"\ntime budget of {self.time_budget_s:g} s reached: stopping the search; trials keep what they "
                  "have trained", file=sys.stderr)
            self._stop("time budget")

    def _stop(self, reason: str) -> None:
        if self.reason is None or (reason in EXIT_CODES and self.reason not in EXIT_CODES):
            self.reason = reason
        if self._deliver is None:
            self._deliver = threading.Thread(target=self._to_ray, name="tuning-stop", daemon=True)
            self._deliver.start()

    def _to_ray(self) -> None:
        """Send SIGUSR1 once tune.run has put its handler in place of ours (at once if it has)."""
        while not self._done.is_set():
            if signal.getsignal(signal.SIGUSR1) is not self._placeholder:
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.05)


def restored_configs(tuner: Any) -> tuple[Any, Any]:
    """``(tune_config, run_config)`` of a tuner made by ``Tuner.restore``, for this session's settings.

    Ray 2.60 restores both from the experiment's ``tuner.pkl`` (``TunerInternal._restore_from_path_or_uri``) and
    by design takes no new ones (ray-project/ray#33495); nor does it expose the restored ones (ray-project/ray#41364
    names this same attribute as the way). The one place we reach into the tuner; it fails loudly if Ray moved it.
    """
    from ray.tune import RunConfig, TuneConfig

    internal = getattr(tuner, "_local_tuner", None)
    tune_config = getattr(internal, "_tune_config", None)
    run_config = getattr(internal, "_run_config", None)
    if not isinstance(tune_config, TuneConfig) or not isinstance(run_config, RunConfig):
        import ray

        raise RuntimeError(f"Ray {ray.__version__}: Tuner._local_tuner._tune_config / _run_config moved; "
                           "tuning.tune.resume.restored_configs needs updating for --resume")
    return tune_config, run_config
