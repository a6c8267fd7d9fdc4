"""End-to-end searches through the real driver, a real local Ray, real Optuna and real processes."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tuning.errors import UserError
from tuning.files import (
    EVALUATION_DIR,
    EXPERIMENT_META,
    FULL_VALIDATION,
    HISTORY_TABLE,
    PARETO_TABLE,
    REPORT_MD,
    TRIALS_TABLE,
)
from tuning.report import write as report_cli
from tuning.report.results import STATUSES, load_experiment
from tuning.spec.anchor import cheapest_point, family_points
from tuning.spec.space import Objective, load_space
from tuning.tune import driver as search
from tuning.tune.ray_state import checkpoint_index
from tuning.tune.searcher import PrunedAwareOptunaSearch, make_searcher

HERE = Path(__file__).parent


def read_trials(report_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(report_dir / TRIALS_TABLE)


def _search(space: Path | str, tmp_path: Path, name: str, *flags: str) -> Path:
    """Runs a search quietly on the CPU through the real driver; it must exit 0. Returns its experiment folder."""
    code = search.main(["--space", str(space), "--storage-path", str(tmp_path), "--name", name, "--quiet",
                        "--gpus-per-trial", "0", *flags])
    assert code == 0
    return tmp_path / name


def _optuna_study(space: Path | str, exp: Path) -> optuna.Study:
    """The Optuna study as the searcher saved it at the end of the search: what Optuna was told."""
    restored = make_searcher(load_space(str(space)), 0)
    restored.restore(str(next(exp.glob("searcher-state-*.pkl"))))
    assert restored._ot_study is not None
    return restored._ot_study


@pytest.mark.usefixtures("ray_session")
def test_smoke_search_end_to_end(tmp_path: Path) -> None:
    exp = _search("smoke", tmp_path, "e2e", "--seed", "3")
    report = exp / "report"
    for name in (TRIALS_TABLE, HISTORY_TABLE, PARETO_TABLE, REPORT_MD):
        assert (report / name).is_file(), name
    trials = read_trials(report)
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= set(STATUSES)
    assert (trials["status"] == "completed").any()
    assert set(trials["cell"]) <= {"rnn", "lstm", "gru"}
    assert trials["seq_len"].between(10, 30).all()
    history = pd.read_parquet(report / HISTORY_TABLE)
    assert set(history["trial_id"]) == set(trials["trial_id"])
    meta = json.loads((exp / EXPERIMENT_META).read_text())
    assert meta["finished_at"] and meta["seed"] == 3
    text = (report / REPORT_MD).read_text()
    assert "python -m tuning.search --space smoke" in text and "## Pareto fronts" in text

    # The chosen trials' checkpoints, evaluated on the whole validation split at the end, reach the trials table.
    evaluation = exp / EVALUATION_DIR / FULL_VALIDATION
    evaluated = json.loads(evaluation.read_text())["trials"]
    assert set(trials.loc[trials["status"] == "completed", "trial_id"]) <= set(evaluated)
    shown = trials.set_index("trial_id").loc[sorted(evaluated)]
    assert shown["full_val_loss"].tolist() == [evaluated[t]["val_loss"] for t in sorted(evaluated)]
    assert shown["full_val_acc_last"].tolist() == [evaluated[t]["val_acc_last"] for t in sorted(evaluated)]
    assert (shown["full_val_iteration"] == shown["iteration"]).all()  # the latest checkpoint: the last iteration
    assert trials.set_index("trial_id").drop(index=list(evaluated))["full_val_loss"].isna().all()
    before = evaluation.read_bytes()
    assert report_cli.main([str(exp)]) == 0  # regenerating the report only reads the file
    assert evaluation.read_bytes() == before

    # Optuna heard the truth: ASHA-stopped trials are PRUNED, full-budget ones COMPLETE.
    states = [t.state for t in _optuna_study("smoke", exp).trials]
    assert states.count(TrialState.COMPLETE) == int((trials["status"] == "completed").sum())
    assert states.count(TrialState.PRUNED) == int((trials["status"] == "early_stopped").sum())


def test_pruned_not_complete_bookkeeping() -> None:
    """Scripted results, no cluster: each ending is told to Optuna with the right state."""
    searcher = make_searcher(load_space("smoke"), 0)
    assert isinstance(searcher, PrunedAwareOptunaSearch)
    endings = {
        "a": ({"trial_status": "completed", "val_loss": 1.5, "iteration": 3}, False, TrialState.COMPLETE),
        "b": ({"trial_status": "running", "val_loss": 2.5, "iteration": 1}, False, TrialState.PRUNED),
        "c": ({"trial_status": "diverged", "val_loss": float("nan"), "iteration": 1}, False, TrialState.FAIL),
        "d": (None, True, TrialState.FAIL),
    }
    for trial_id in endings:
        assert searcher.suggest(trial_id)
    for trial_id, (result, error, _) in endings.items():
        if result:
            searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result, error=error)
    got = {tid: searcher._ot_trials[tid] for tid in endings}
    assert searcher._ot_study is not None
    study_states = {t.number: t.state for t in searcher._ot_study.trials}
    for trial_id, (_, _, want) in endings.items():
        assert study_states[got[trial_id].number] == want, trial_id
    pruned = next(t for t in searcher._ot_study.trials if t.state == TrialState.PRUNED)
    assert pruned.intermediate_values == {1: 2.5}  # the low-budget score is kept as what it is
    complete = next(t for t in searcher._ot_study.trials if t.state == TrialState.COMPLETE)
    assert complete.value == 1.5


def _mo_row(iteration: int) -> dict[str, object]:
    return {"iteration": iteration, "val_acc_last": 0.3, "train_flops_per_char": 1e4, "trial_status": "running"}


def test_multiobjective_tpe_ranks_pruned_trials_by_how_far_they_got() -> None:
    """Scripted: no trial completes; GRUs after the first five reach rung 3, everything else stops at rung 1. TPE
    must take the deep ones as its good group and favour GRUs. Before each row recorded its depth, all pruned
    trials of a multi-objective study tied and the good group was the first trials by number (here a third GRUs
    or fewer afterwards)."""
    space = replace(load_space("smoke"), objectives=(Objective("val_acc_last", "max"),
                                                     Objective("train_flops_per_char", "min")))
    searcher = make_searcher(space, 0)
    for i in range(40):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        depth = 3 if config["cell"] == "gru" and i >= 5 else 1
        for iteration in range(1, depth + 1):
            searcher.on_trial_result(f"t{i}", _mo_row(iteration))
        searcher.on_trial_complete(f"t{i}", _mo_row(depth))
    study: Any = searcher._ot_study
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 40
    assert all(max(t.intermediate_values) == (3 if t.params["cell"] == "gru" and t.number >= 5 else 1)
               and all(math.isnan(v) for v in t.intermediate_values.values()) for t in pruned)
    later = [searcher.suggest(f"u{i}") for i in range(30)]
    assert sum(c is not None and c["cell"] == "gru" for c in later) >= 18, later  # 12 before the fix, 20 after


def test_multiobjective_paused_trial_keeps_its_depth_when_promoted() -> None:
    space = replace(load_space("smoke"), objectives=(Objective("val_acc_last", "max"),
                                                     Objective("train_flops_per_char", "min")))
    searcher = make_searcher(space, 0)
    assert searcher.suggest("t1")
    searcher.on_trial_result("t1", _mo_row(1))
    searcher.on_pause("t1")
    searcher.on_trial_result("t1", _mo_row(2))
    study: Any = searcher._ot_study
    assert study.trials[0].state == TrialState.PRUNED and sorted(study.trials[0].intermediate_values) == [1, 2]
    searcher.on_unpause("t1")  # Trial.report would raise here: multi-objective
    assert sorted(study.trials[-1].intermediate_values) == [1, 2] and study.trials[-1].state == TrialState.RUNNING
    searcher.on_trial_complete("t1", {**_mo_row(4), "trial_status": "completed"})
    assert study.trials[-1].state == TrialState.COMPLETE and study.trials[-1].values == [0.3, 1e4]


def test_restored_searcher_ignores_a_trial_it_never_proposed(tmp_path: Path) -> None:
    """A driver killed between saving the searcher and saving the experiment: on resume, Ray hands the restored
    searcher results of a trial that began after the save. Optuna has no trial for it: nothing is told, nothing
    raises, and the trials it does know are told as usual."""
    before_kill = make_searcher(load_space("smoke"), 0)
    assert before_kill.suggest("known")
    state = tmp_path / "searcher-state.pkl"
    before_kill.save(str(state))
    assert before_kill.suggest("late")  # began after the save: the restored searcher never heard of it

    restored = make_searcher(load_space("smoke"), 0)
    restored.restore(str(state))
    assert set(restored._ot_trials) == {"known"}
    late = {"trial_status": "completed", "val_loss": 1.2, "iteration": 3}
    restored.on_trial_result("late", late)  # raised KeyError before the guard
    restored.on_trial_complete("late", late)
    restored.on_trial_result("known", {"trial_status": "running", "val_loss": 2.0, "iteration": 1})
    restored.on_trial_complete("known", {"trial_status": "completed", "val_loss": 1.8, "iteration": 3})
    assert restored._ot_study is not None
    trials = restored._ot_study.trials
    assert [(t.state, t.value, t.intermediate_values) for t in trials] == [(TrialState.COMPLETE, 1.8, {1: 2.0})]


@pytest.mark.usefixtures("ray_session")
def test_fractional_gpus_pack_four_trials(tmp_path: Path) -> None:
    # The session's Ray has one logical GPU and 2 CPUs: 0.25 GPU and 0.5 CPU per trial gives four slots.
    code = search.main(["--space", "smoke", "--storage-path", str(tmp_path), "--name", "gpu", "--quiet",
                        "--gpus-per-trial", "0.25", "--cpus-per-trial", "0.5", "--num-samples", "4",
                        "--max-iters", "2"])
    assert code == 0
    exp = tmp_path / "gpu"
    meta = json.loads((exp / EXPERIMENT_META).read_text())
    assert meta["resources"] == {"cpus_per_trial": 0.5, "gpus_per_trial": 0.25, "slots": 4}
    spans = []
    for result_file in exp.glob("*/result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        params = json.loads((result_file.parent / "params.json").read_text())
        assert params["gpu_memory_fraction"] == 0.25  # each trial keeps to its share of the GPU's memory
        end = rows[-1]["timestamp"]
        spans.append((end - rows[-1]["time_total_s"], end))
    assert len(spans) == 4
    # all four ran at once: some moment lies inside every trial's span
    assert max(s for s, _ in spans) < min(e for _, e in spans) + 1.0


def _run_driver(args: list[str], tmp_path: Path, ray_tmp: str) -> subprocess.Popen[bytes]:
    # RAY_TMPDIR marks every process of the Ray this driver starts (they inherit it): see _kill_driver_and_its_ray
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_TMPDIR=ray_tmp)
    return subprocess.Popen([sys.executable, "-m", "tuning.search", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_driver_and_its_ray(proc: subprocess.Popen[Any], ray_tmp: str) -> None:
    """SIGKILL the driver's process group, then every process left of the local Ray it started, and wait until
    none is left. A trial worker can outlive the group for a moment, and one still copying a checkpoint into the
    experiment after the kill changed the files under the resume (CI, 2026-11-29)."""
    import psutil

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.time() + 60
    while True:
        left = []
        for process in psutil.process_iter():
            try:
                if process.environ().get("RAY_TMPDIR") == ray_tmp:
                    process.kill()
                    left.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if not left:
            return
        psutil.wait_procs(left, timeout=5)
        if time.time() > deadline:
            pytest.fail(f"processes of the killed driver's Ray still alive after 60 s: {[p.pid for p in left]}")


def _kill_when(proc: subprocess.Popen[bytes], ray_tmp: str, ready: Callable[[], bool], what: str) -> None:
    """Poll ``ready`` until it holds (``what`` names the failure if it never does in 120 s), then kill the driver and
    its Ray (:func:`_kill_driver_and_its_ray`), whatever happened."""
    try:
        deadline = time.time() + 120
        while not ready():
            assert proc.poll() is None, "driver exited before it could be killed"
            if time.time() > deadline:
                pytest.fail(f"{what} within 120 s")
            time.sleep(0.1)
    finally:
        _kill_driver_and_its_ray(proc, ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _lose_a_checkpoint_like_a_late_kill(exp: Path) -> str:
    """Make the saved state name a checkpoint that is gone while a newer whole one exists, as a driver killed
    between Ray deleting a superseded checkpoint and saving its state leaves it (see tuning/tune/ray_state.py).
    Returns the trial's id. The race itself is too narrow to hit on purpose."""
    from ray.tune.experiment.trial import Trial

    state = json.loads(max(exp.glob("experiment_state-*.json")).read_text())
    for trial_json, meta_json in state["trial_data"]:
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(meta_json)
        if trial.status == Trial.TERMINATED or trial.checkpoint is None or trial.storage is None:
            continue
        named = exp / str(trial.storage.trial_dir_name) / Path(trial.checkpoint.path).name
        if not named.is_dir():
            return str(trial.trial_id)  # the kill itself hit the race
        index = checkpoint_index(named.name) or 0
        for later in named.parent.glob("checkpoint_*"):  # persisted by the trial, not yet registered: drop
            if (checkpoint_index(later.name) or 0) > index:
                shutil.rmtree(later)
        # Ray registered the next checkpoint and deleted this one; the next holds this one's state, so the
        # resumed trial must go on from this iteration with no gap in its curve.
        named.rename(named.with_name(f"checkpoint_{index + 1:06d}"))
        return str(trial.trial_id)
    pytest.fail("the saved state names no checkpoint of an unfinished trial")


@pytest.mark.usefixtures("ray_session")
def test_driver_killed_then_resume_finishes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = str(HERE / "spaces" / "resume.yaml")
    storage = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="rk-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    proc = _run_driver(["--space", space, "--storage-path", str(storage), "--name", "killed", "--quiet",
                        "--gpus-per-trial", "0"], tmp_path, ray_tmp)
    exp = storage / "killed"

    def past_iteration_3() -> bool:
        # kill once some trial has a checkpoint past iteration 3 (and the driver has saved its state since one) but
        # before everything is done
        rows = [line for f in exp.glob("*/result.json") for line in f.read_text().splitlines() if line]
        return any(json.loads(r)["iteration"] >= 3 for r in rows)

    _kill_when(proc, ray_tmp, past_iteration_3, "no trial reached iteration 3")
    _, before, _ = load_experiment(exp)
    assert (before["status"] != "completed").any(), "the kill came too late to test anything"
    repaired = _lose_a_checkpoint_like_a_late_kill(exp)

    code = search.main(["--space", space, "--storage-path", str(storage), "--resume", "--quiet",
                        "--gpus-per-trial", "0"])
    assert code == 0
    assert f"resume: trial {repaired}: checkpoint_" in capsys.readouterr().err  # Ray 2.60 alone fails it
    meta, trials, history = load_experiment(exp)
    assert len(trials) == 3 and trials["trial_id"].is_unique  # num_samples, no trial run twice
    assert (trials["status"] == "completed").all()
    # unfinished trials continued from their checkpoints: iterations run 1..8 with no restart from 1
    for trial_id, curve in history.groupby("trial_id"):
        assert list(curve["iteration"]) == list(range(1, 9)), trial_id
    assert meta["finished_at"] and len(meta["commands"]) == 2
    # the searcher's state survived: three distinct suggestions, none repeated after the restart
    configs = {(r.cell, r.hidden_size) for r in trials.itertuples()}
    assert len(configs) == 3
    report = exp / "report" / REPORT_MD
    assert report.is_file()


@pytest.mark.usefixtures("ray_session")
def test_promotion_asha_driver_killed_while_trials_wait_then_resume(tmp_path: Path) -> None:
    space = str(HERE / "spaces" / "resume-promotion.yaml")  # 6 trials, rungs at 1 and 2 (rf 2), budget 4
    storage = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="rp-", dir="/tmp")
    proc = _run_driver(["--space", space, "--storage-path", str(storage), "--name", "killed", "--quiet",
                        "--gpus-per-trial", "0"], tmp_path, ray_tmp)
    exp = storage / "killed"
    state_file = exp / "scheduler" / "promotion_asha.json"

    def two_waiting() -> bool:
        return state_file.is_file() and len(json.loads(state_file.read_text())["waiting"]) >= 2

    _kill_when(proc, ray_tmp, two_waiting, "no two trials waited at a rung")
    waiting = json.loads(state_file.read_text())["waiting"]
    assert len(waiting) >= 2

    code = search.main(["--space", space, "--storage-path", str(storage), "--resume", "--quiet",
                        "--gpus-per-trial", "0"])
    assert code == 0
    state = json.loads(state_file.read_text())
    assert state["waiting"] == {}
    # Every trial is judged at rung 1, except one whose rung-1 result was in flight at the kill: resumed from its
    # newer checkpoint, it first reports past rung 1 and is judged at rung 2 (the scheduler records a trial at the
    # highest rung it newly reached; tests/test_promotion_asha.py scripts that case).
    skipped = set(state["rungs"]["2"]) - set(state["rungs"]["1"])
    assert len(state["rungs"]["1"]) + len(skipped) == 6, state["rungs"]
    meta, trials, history = load_experiment(exp)
    assert len(trials) == 6 and "completed" in set(trials["status"])
    for trial_id, curve in history.groupby("trial_id"):
        assert list(curve["iteration"]) == list(range(1, len(curve) + 1)), trial_id  # from checkpoints, no gap
    # a trial that waited at the kill kept waiting after the resume unless promoted later. Ray may restart it from
    # its checkpoint at the rung when its saved state is older than the rung records; the scheduler then pauses it
    # at its first report, one iteration on, and the report reads the rung records to call it early stopped.
    last = history.groupby("trial_id")["iteration"].max()
    for trial_id, rung in waiting.items():
        assert last[trial_id] <= rung + 1 or trial_id in state["promoted"][str(rung)], (trial_id, rung, last[trial_id])
    assert set(trials["status"]) <= {"completed", "early_stopped"}, trials[["trial_id", "status"]]
    assert meta["finished_at"] and len(meta["commands"]) == 2


def test_resume_without_experiment_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert search.main(["--space", "smoke", "--storage-path", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --resume") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_searcher_state_pickles() -> None:
    searcher = make_searcher(load_space("smoke"), 0)
    searcher.suggest("x")
    assert pickle.loads(pickle.dumps(searcher.__dict__))["_ot_trials"]


@pytest.mark.usefixtures("ray_session")
def test_precision_flag_fixes_every_trials_precision(data_dir: Path) -> None:
    plan = search.make_plan(search.build_parser().parse_args(["--space", "smoke", "--precision", "bf16"]))
    assert plan.space.fixed["precision"] == "bf16" and "precision" not in {p.name for p in plan.space.params}
    assert search.make_plan(search.build_parser().parse_args(["--space", "smoke"])).space.fixed.get("precision") is None
    with pytest.raises(UserError, match="--precision: invalid choice: 'fp16'"):
        search.build_parser().parse_args(["--space", "smoke", "--precision", "fp16"])


def test_scheduler_follows_the_space(data_dir: Path, tmp_path: Path) -> None:
    """asha_first is Ray's ASHA on the first objective, or on scheduler_metric; asha with several objectives is
    ours; --objectives cannot turn a scheduler_metric space into MO-ASHA silently."""
    from ray.tune.schedulers import ASHAScheduler

    from tuning.tune.schedulers.mo_asha import ParetoASHA

    def plan(doc: str, *flags: str, single: bool = False) -> search.Plan:
        path = tmp_path / "space.yaml"
        base = (HERE / "spaces" / "multi.yaml").read_text().replace("scheduler: asha\n", "")
        if single:
            base = base.replace("  - {metric: flops_per_char, mode: min}\n", "")
        path.write_text(base + doc, encoding="utf-8")
        args = ["--space", str(path), "--storage-path", str(tmp_path), *flags]
        return search.make_plan(search.build_parser().parse_args(args))

    assert isinstance(search.make_scheduler(plan("scheduler: asha\n")), ParetoASHA)
    first = search.make_scheduler(plan("scheduler: asha_first\n"))
    assert type(first) is ASHAScheduler and (first._metric, first._mode) == ("val_loss", "min")
    loss = search.make_scheduler(plan("scheduler: asha_first\nscheduler_metric: {metric: val_acc, mode: max}\n"))
    assert type(loss) is ASHAScheduler and (loss._metric, loss._mode) == ("val_acc", "max")
    one = "scheduler: asha\nscheduler_metric: {metric: val_acc, mode: max}\n"  # valid with one objective only
    with pytest.raises(UserError, match="scheduler_metric.*only with scheduler asha_first, or asha with one"):
        plan(one)
    single = plan(one, single=True)
    assert (search.make_scheduler(single)._metric, single.space.objective.metric) == ("val_acc", "val_loss")
    with pytest.raises(UserError, match="--objectives=val_loss,params is invalid .* scheduler_metric needs one"):
        plan(one, "--objectives", "val_loss,params", single=True)


def test_concurrency_follows_the_cluster_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuning.tune import searcher

    limiter = searcher.SlotLimiter(make_searcher(load_space("smoke"), 0), cpus_per_trial=1.0, gpus_per_trial=0.25)
    assert limiter.max_concurrent == 2  # the session's Ray: 2 CPUs, 1 GPU -> min(2, 4)
    assert limiter.suggest("t1") and limiter.suggest("t2")
    assert limiter.suggest("t3") is None  # full
    # a node with 4 CPUs and a GPU joins (the cluster's report is the edge we stand in for)
    monkeypatch.setattr(searcher.ray, "cluster_resources", lambda: {"CPU": 6.0, "GPU": 2.0})
    monkeypatch.setattr(limiter, "_checked", 0.0)
    assert limiter.suggest("t3") is not None
    assert limiter.max_concurrent == 6


@pytest.mark.usefixtures("ray_session")
def test_multi_objective_search_end_to_end(tmp_path: Path) -> None:
    space = HERE / "spaces" / "multi.yaml"  # NSGA-II on (val_loss, flops_per_char), params <= 40k, MO-ASHA
    exp = _search(space, tmp_path, "mo", "--cost-anchor", "families")
    rungs = json.loads((exp / "scheduler" / "pareto_asha.json").read_text())
    assert rungs["objectives"] == {"val_loss": "min", "flops_per_char": "min"}
    assert len(rungs["rungs"]["1"]) == 6  # every trial was judged at the first rung
    trials = read_trials(exp / "report")
    assert (trials["status"] == "early_stopped").sum() == rungs["num_stopped"]
    assert trials["feasible"].tolist() == (trials["params"] <= 40_000).tolist()
    report = (exp / "report" / REPORT_MD).read_text()
    assert "## The searched objectives" in report and "val_loss (min), flops_per_char (min)" in report
    study = _optuna_study(space, exp)
    assert len(study.directions) == 2
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == int((trials["status"] == "completed").sum())
    # flops_per_char is minimised and --cost-anchor families given: the first three trials were the cheapest model
    # of each cell type, smallest first, and MO-ASHA stopped none of them (with rf 2, "gru" ties with "rnn" on the
    # front at rung 1 and arrives after it: an ordinary trial there would stop)
    anchors = family_points(load_space(str(space)))
    assert anchors[0] == cheapest_point(load_space(str(space))) == {"cell": "rnn", "hidden_size": 16}
    assert [a["cell"] for a in anchors] == ["rnn", "gru", "lstm"]
    firsts = sorted(study.trials, key=lambda t: t.number)[:3]
    assert [{k: t.params[k] for k in a} for t, a in zip(firsts, anchors, strict=True)] == anchors
    assert all(t.state == TrialState.COMPLETE for t in firsts)
    anchored = trials[trials["hidden_size"] == 16]
    assert set(anchored["cell"]) >= {"rnn", "gru", "lstm"} and (anchored["status"] == "completed").all()
    assert ("The first 3 trials were the cheapest model of each family (cost anchor: cell rnn, hidden_size 16; "
            "cell gru, hidden_size 16; cell lstm, hidden_size 16)") in report
    assert trials["params"].min() == trials.loc[(trials["cell"] == "rnn") & (trials["hidden_size"] == 16),
                                                "params"].min()


@pytest.mark.usefixtures("ray_session")
def test_promotion_asha_search_end_to_end(tmp_path: Path) -> None:
    space = HERE / "spaces" / "promotion.yaml"  # 8 trials, rungs at iterations 1 and 2 (rf 2), budget 4
    exp = _search(space, tmp_path, "promo")  # exit 0: the search ends by itself, no trial left waiting at a rung
    state = json.loads((exp / "scheduler" / "promotion_asha.json").read_text())
    assert len(state["rungs"]["1"]) == 8 and state["waiting"] == {}
    assert state["num_resumed"] >= 1  # at least one trial waited at a rung and went on later
    trials = read_trials(exp / "report")
    completed = set(trials.loc[trials["status"] == "completed", "trial_id"])
    assert completed == set(state["promoted"]["2"]) and len(completed) >= 1
    assert set(trials["status"]) == {"completed", "early_stopped"}
    assert len(state["promoted"]["1"]) >= 1  # the rule itself is checked step by step in test_promotion_asha.py
    _, _, history = load_experiment(exp)
    for trial_id, rows in history.groupby("trial_id"):
        # paused trials resumed from their checkpoints: one row per iteration, none repeated, none missing
        assert rows["iteration"].tolist() == list(range(1, len(rows) + 1)), trial_id
    states = [t.state for t in _optuna_study(space, exp).trials]
    # each pause told once as PRUNED; each resume opened a new Optuna trial, which ends COMPLETE or PRUNED
    assert len(states) == 8 + state["num_resumed"]
    assert states.count(TrialState.COMPLETE) == len(completed)
    assert states.count(TrialState.PRUNED) == state["num_paused"]


@pytest.mark.usefixtures("ray_session")
def test_multi_objective_search_with_promotion_asha(tmp_path: Path) -> None:
    text = (HERE / "spaces" / "multi.yaml").read_text()
    space = tmp_path / "multi-promotion.yaml"  # multi.yaml (NSGA-II, params <= 40k) with promotion-type ASHA
    space.write_text(text.replace("scheduler: asha\n", "scheduler: asha_promotion\n"))
    exp = _search(space, tmp_path, "mop")
    state = json.loads((exp / "scheduler" / "promotion_asha.json").read_text())
    assert state["objectives"] == {"val_loss": "min", "flops_per_char": "min"}
    assert len(state["rungs"]["1"]) == 6 and state["waiting"] == {}
    trials = read_trials(exp / "report")
    assert set(trials["status"]) <= {"completed", "early_stopped"} and (trials["status"] == "completed").any()
    study = _optuna_study(space, exp)
    assert len(study.directions) == 2
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == int((trials["status"] == "completed").sum())
    assert states.count(TrialState.PRUNED) == state["num_paused"] and len(states) == 6 + state["num_resumed"]


@pytest.mark.usefixtures("ray_session")
def test_storage_uri_goes_through_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # file:// takes the same path as s3:// or gs:// (pyarrow's file systems), without a bucket.
    monkeypatch.chdir(tmp_path)
    uri = f"file://{tmp_path}/bucket"
    code = search.main(["--space", "smoke", "--storage-path", uri, "--name", "u", "--quiet", "--gpus-per-trial", "0",
                        "--max-iters", "2", "--num-samples", "2"])
    assert code == 0
    meta = json.loads((tmp_path / "bucket" / "u" / EXPERIMENT_META).read_text())
    assert meta["finished_at"] and meta["commands"]
    trials = read_trials(tmp_path / "reports" / "u")  # the report of a bucket's experiment is written locally
    assert len(trials) == 2
    # the whole-split evaluation ran on the temporary download; its file went back to the bucket
    evaluated = json.loads((tmp_path / "bucket" / "u" / EVALUATION_DIR / FULL_VALIDATION).read_text())["trials"]
    assert evaluated and trials.set_index("trial_id").loc[sorted(evaluated), "full_val_loss"].notna().all()


@pytest.mark.usefixtures("ray_session")
def test_every_trial_failed_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A watchdog shorter than any first report ends every trial (no retries): exit status 1, report still written.
    # --max-iters 3 with smoke's reduction factor 2 puts ASHA's last rung at 2 of 3 iterations: a warning first.
    code = search.main(["--space", "smoke", "--storage-path", str(tmp_path), "--name", "fail", "--quiet",
                        "--gpus-per-trial", "0", "--num-samples", "2", "--trial-timeout-s", "0.2",
                        "--max-failures", "0", "--max-iters", "3"])
    assert code == 1
    err = capsys.readouterr().err
    assert "every trial failed (2)" in err
    assert "warning: budget: max_iters 3 is not grace_iters × reduction_factor^k (1, 2, 4, …): ASHA's last rung, at " \
           "iteration 2, stops trials after 67% of their budget" in err
    trials = read_trials(tmp_path / "fail" / "report")
    assert (trials["status"] == "errored").all() and trials["error"].str.contains("watchdog").all()


@pytest.mark.usefixtures("ray_session")
def test_more_gpus_per_trial_than_any_node_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = search.main(["--space", "smoke", "--storage-path", str(tmp_path / "runs"), "--gpus-per-trial", "2"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --gpus-per-trial=2.0 is invalid: no node has more than 1.0 GPUs"
    assert not (tmp_path / "runs").exists()


def test_nsga2_searcher_pickles_and_keeps_sampling() -> None:
    """Ray pickles the searcher when it builds the tuner and at each save; Optuna 5.1's NSGA-II holds a thread lock
    that plain pickling refuses. The copy must pickle and go on proposing configurations."""
    space = replace(load_space("smoke"), sampler="nsga2", objectives=(Objective("val_acc_last", "max"),
                                                                      Objective("train_flops_per_char", "min")))
    searcher = make_searcher(space, 0)
    assert searcher.suggest("t0") is not None
    copy = pickle.loads(pickle.dumps(searcher))
    assert copy.suggest("t1") is not None
    assert pickle.loads(pickle.dumps(copy._ot_study.sampler))._thread_lock.acquire(blocking=False)


def _raw_rows(exp: Path) -> dict[str, list[int]]:
    """Every row each trial's result.json holds, in file order: trial id -> iterations (a restart repeats some)."""
    rows: dict[str, list[int]] = {}
    for result_file in exp.glob("*/result.json"):
        for line in result_file.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows.setdefault(row["trial_id"], []).append(row["iteration"])
    return rows


def _write_fake_experiment(storage: Path, name: str, space: str, command: str, started: str) -> None:
    (storage / name).mkdir(parents=True)
    meta = {"space": load_space(space).name, "space_file": load_space(space).source,
            "commands": [command], "started_at": started, "num_samples": 3}
    (storage / name / EXPERIMENT_META).write_text(json.dumps(meta))


def test_resume_without_space_takes_the_latest_experiment_of_any_space(data_dir: Path, tmp_path: Path) -> None:
    """Before: the parser's default space (smoke) chose, so a user's latest shakespeare search was passed over."""
    resume_space = str(HERE / "spaces" / "resume.yaml")
    _write_fake_experiment(tmp_path, "old-smoke", "smoke", "python -m tuning.search --space smoke",
                           "2026-01-01T00:00:00+00:00")
    _write_fake_experiment(tmp_path, "new", resume_space,
                           f"python -m tuning.search --space {resume_space} --max-iters 2", "2026-01-02T00:00:00+00:00")
    argv = ["--resume", "--storage-path", str(tmp_path)]
    plan = search.make_plan(search.build_parser().parse_args(argv), argv)
    assert (plan.name, plan.space.name, plan.space.budget.max_iters) == ("new", "resume", 2)  # the first session's
    assert plan.num_samples == 3  # the experiment's, not the space's default
    argv = ["--resume", "--space", "smoke", "--storage-path", str(tmp_path)]
    assert search.make_plan(search.build_parser().parse_args(argv), argv).name == "old-smoke"
    argv = ["--resume", "--storage-path", str(tmp_path), "--max-iters", "2", "--num-samples", "5"]
    plan = search.make_plan(search.build_parser().parse_args(argv), argv)  # the same value again is no change
    assert (plan.space.budget.max_iters, plan.num_samples) == (2, 5)


@pytest.mark.parametrize(("flags", "named"), [(["--max-iters", "3"], "--max-iters=3"),
                                              (["--seed", "7"], "--seed=7"),
                                              (["--objectives", "val_loss,params"], "--objectives="),
                                              (["--space", "smoke"], "--space=smoke"),
                                              (["--precision", "bf16"], "--precision=bf16")])
def test_resume_refuses_flags_that_change_what_a_trial_is(data_dir: Path, tmp_path: Path, flags: list[str],
                                                          named: str) -> None:
    resume_space = str(HERE / "spaces" / "resume.yaml")
    _write_fake_experiment(tmp_path, "e", resume_space, f"python -m tuning.search --space {resume_space} --max-iters 2",
                           "2026-01-02T00:00:00+00:00")
    argv = ["--resume", "--name", "e", "--storage-path", str(tmp_path), *flags]
    with pytest.raises(UserError, match=f"^{named}.* is invalid with --resume"):
        search.make_plan(search.build_parser().parse_args(argv), argv)


@pytest.mark.usefixtures("ray_session")
def test_search_ended_by_its_time_budget_continues_on_resume(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Before: Ray's time-budget stopper marked unfinished trials TERMINATED and the searcher finished, and a
    resume ended at once leaving them so. Now the budget stops the search as Ctrl-C does, and a resume with a new
    budget and more samples promotes paused trials, trains unfinished ones on and samples new ones."""
    space = str(HERE / "spaces" / "budget.yaml")  # 40 trials, promotion-type ASHA, rungs 1 2 4 8, budget 16
    storage = tmp_path / "runs"
    exp = _search(space, storage, "budget", "--time-budget-s", "10")
    meta, before, _ = load_experiment(exp)
    assert len(before) < 40, "the budget left no trial to sample: the test proves nothing"
    unfinished = set(before.loc[before["status"] == "unfinished", "trial_id"])
    assert meta["sessions"][0]["stopped_by"] == "time budget" and meta["finished_at"]
    err = capsys.readouterr().err
    assert f"continue with: python -m tuning.search --resume --name budget --storage-path {storage}" in err
    done_before = {t: max(its) for t, its in _raw_rows(exp).items()}

    # A new driver, as a user's resume is: a resume inside the same Ray session finds Ray's driver staging copy of
    # each result.json from the first session, which it uploads over the rows kept after the stop.
    ray_tmp = tempfile.mkdtemp(prefix="rb-", dir="/tmp")
    proc = subprocess.run([sys.executable, "-m", "tuning.search", "--resume", "--storage-path", str(storage),
                           "--quiet", "--time-budget-s", "900", "--num-samples", "42"], cwd=tmp_path,
                          env=dict(os.environ, RAY_TMPDIR=ray_tmp), capture_output=True, text=True, timeout=900)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert "resuming budget (space budget, started" in proc.stderr
    meta, trials, history = load_experiment(exp)
    assert len(trials) == 42 and trials["trial_id"].is_unique  # the new --num-samples
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    state = json.loads((exp / "scheduler" / "promotion_asha.json").read_text())
    # every trial was judged at a rung and none waits any more. A trial whose rung result was in flight at the stop
    # goes on from that checkpoint and is judged at the next rung it reaches (the scheduler never saw the row).
    assert state["waiting"] == {} and set().union(*state["rungs"].values()) == set(trials["trial_id"])
    assert state["promoted"]["1"] or state["promoted"]["2"]
    for trial_id, iterations in _raw_rows(exp).items():
        # continued from checkpoints: each iteration once, none restarted from 1
        assert iterations == list(range(1, len(iterations) + 1)), (trial_id, iterations)
    after = _raw_rows(exp)
    assert all(max(after[t]) > done_before.get(t, 0) for t in unfinished)  # each unfinished trial went on
    assert [s["time_budget_s"] for s in meta["sessions"]] == [10.0, 900.0]
    assert [s["num_samples"] for s in meta["sessions"]] == [None, 42]
    assert meta["sessions"][1]["stopped_by"] is None and len(meta["commands"]) == 2


def test_sigint_stops_gracefully_and_the_resume_continues_from_checkpoints(tmp_path: Path) -> None:
    """A real driver, a real SIGINT once a checkpoint exists. Before: exit 0, Ray's Tuner.restore hint, and a
    trial whose result was in flight kept an empty result.json and trained iteration 1 again on resume."""
    storage = tmp_path / "store"  # not ./runs, the default: the printed command must name it
    space = str(HERE / "spaces" / "resume.yaml")
    ray_tmp = tempfile.mkdtemp(prefix="ri-", dir="/tmp")
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_TMPDIR=ray_tmp)
    proc = subprocess.Popen([sys.executable, "-m", "tuning.search", "--space", space, "--storage-path", str(storage),
                             "--name", "sig", "--quiet", "--gpus-per-trial", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    exp = storage / "sig"
    try:
        deadline = time.time() + 240
        while not list(exp.glob("*/checkpoint_*/config.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        _kill_driver_and_its_ray(proc, ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 130, err
    assert f"continue with: python -m tuning.search --resume --name sig --storage-path {storage}" in err
    assert "Tuner.restore" not in err + out
    for trial_dir in {c.parent.parent for c in exp.glob("*/checkpoint_*/config.json")}:
        assert (trial_dir / "result.json").read_text().strip(), f"{trial_dir.name}: empty result.json"
    meta = json.loads((exp / EXPERIMENT_META).read_text())
    assert meta["finished_at"] is None and meta["sessions"][0]["stopped_by"] == "SIGINT"
    checkpointed = {t: max(its) for t, its in _raw_rows(exp).items()}
    assert checkpointed

    ray_tmp = tempfile.mkdtemp(prefix="rj-", dir="/tmp")
    code = subprocess.run([sys.executable, "-m", "tuning.search", "--resume", "--storage-path", str(storage),
                           "--quiet"], cwd=tmp_path, env=dict(env, RAY_TMPDIR=ray_tmp), timeout=600).returncode
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert code == 0
    _, trials, _ = load_experiment(exp)
    assert len(trials) == 3 and (trials["status"] == "completed").all()
    rows = _raw_rows(exp)
    for trial_id, iterations in rows.items():
        assert iterations == list(range(1, 9)), (trial_id, iterations)  # iteration 1 was not trained again
    assert set(checkpointed) <= set(rows)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_reaches_rays_interrupt_as_sigusr1(signum: int, code: int) -> None:
    """What tune.run installs for its run (a SIGUSR1 handler that ends its loop) hears SIGTERM too; before, SIGTERM
    met Ray's sys.exit handler mid-loop (exit 1, a native stack dump)."""
    from tuning.tune.resume import StopRequests

    ended = threading.Event()
    with StopRequests(None) as stop:
        signal.signal(signal.SIGUSR1, lambda *_: ended.set())  # as ray/tune/tune.py's _setup_signal_catching does
        os.kill(os.getpid(), signum)
        assert ended.wait(5)
    assert (stop.reason, stop.exit_code) == (signal.Signals(signum).name, code)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL and signal.getsignal(signal.SIGTERM) != stop._on_signal


def test_the_time_budget_reaches_rays_interrupt() -> None:
    from tuning.tune.resume import StopRequests

    ended = threading.Event()
    with StopRequests(0.2) as stop:
        signal.signal(signal.SIGUSR1, lambda *_: ended.set())
        assert ended.wait(5)
    assert (stop.reason, stop.exit_code) == ("time budget", 0)
