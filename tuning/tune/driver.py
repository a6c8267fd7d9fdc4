"""The search driver: ``python -m tuning.search --space shakespeare``.

Ray Tune runs the trials; Optuna proposes configurations (through Ray's ``OptunaSearch``); ASHA stops the
weak ones. This is the only module that imports Ray Tune. Everything the user gives is checked before Ray
starts or anything is written; a user mistake exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuning.engine.config import PRECISIONS, TrainConfig
from tuning.engine.data import Corpus, load_corpus
from tuning.errors import ArgumentParser, UserError
from tuning.files import EVALUATION_DIR, EXPERIMENT_META, FULL_VALIDATION, PARETO_STATE, PROMOTION_STATE, SCHEDULER_DIR
from tuning.machine import hardware, library_versions
from tuning.spec.anchor import anchor_points
from tuning.spec.rungs import rung_advice
from tuning.spec.space import ANCHORS, ASHA_SCHEDULERS, SearchSpace, load_space, parse_objectives_flag
from tuning.tune import storage
from tuning.tune.resume import (
    APPLIED_ON_RESUME,
    DEFAULT_SPACE,
    EXIT_CODES,
    StopRequests,
    find_latest,
    resume_command,
    session_args,
)
from tuning.tune.storage import check_resumable, is_uri, ray_storage

# Ray saves the experiment state every few seconds by default ("auto" aims at 5% overhead); a killed driver
# then loses up to that much bookkeeping. Our iterations take seconds to minutes, so saving every second
# costs little and loses at most one iteration. Set before Ray Tune is imported.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
# Ray Tune's new console output hides the trial table; the classic reporter shows it.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Saving state every second is what we want (above); Ray's warning that it might be a bottleneck is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

DEFAULT_GPU_SHARE = 0.25  # four trials per GPU: our models are small, one alone leaves most of a GPU idle
SHARED_FS_TYPES = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "fuse.s3fs", "fuse.gcsfuse",
                   "ceph", "glusterfs", "efs")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m tuning.search",
        description="Search hyperparameters of character-level RNN/LSTM/GRU language models with Ray Tune.",
    )
    p.add_argument("--space", help="built-in space name or path to a YAML file (default: smoke; with --resume and "
                                   "no --name: the latest experiment of this space)")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's num_samples)")
    p.add_argument("--time-budget-s", type=float,
                   help="stop after this many seconds, keeping unfinished trials for --resume (each session its own)")
    p.add_argument("--max-iters", type=int, help="override the space's budget.max_iters")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial; torch threads follow (default 1)")
    p.add_argument("--gpus-per-trial", type=float,
                   help=f"GPU share per trial (default {DEFAULT_GPU_SHARE} when the cluster has GPUs, else 0)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: the slots the cluster has)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="training precision of every trial: fp32, or bf16 (mixed: bfloat16 autocast) "
                        "(default: the space's, else fp32)")
    p.add_argument("--max-failures", type=int, default=2, help="restarts of a failed trial from its checkpoint")
    p.add_argument("--trial-timeout-s", type=float, default=1800.0,
                   help="end a trial that reports nothing for this long (0 = never; default 1800)")
    p.add_argument("--storage-path", default="./runs", help="experiment storage: a directory or s3:// / gs:// URI")
    p.add_argument("--name", help="experiment name (default: SPACE-TIMESTAMP)")
    p.add_argument("--resume", action="store_true",
                   help="continue an experiment: --name, else the latest of --space, else the latest of any space; "
                        "--time-budget-s, --num-samples, --max-concurrent, --quiet apply to the resumed search")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto after `ray up`)")
    p.add_argument("--objectives", help="several objectives, e.g. val_loss:min,flops_per_char:min (multi-objective "
                                        "search: Optuna's NSGA-II/MO-TPE and the Pareto-aware MO-ASHA scheduler)")
    p.add_argument("--cost-anchor", nargs="?", const="cheapest", choices=ANCHORS[1:],
                   help="with a cost objective (FLOPs, MACs, params) minimised, train the space's cheapest model "
                        "first (the space's cost_anchor: true); --cost-anchor families: the cheapest model of each "
                        "family (each cell type), smallest first (cost_anchor: families)")
    p.add_argument("--max-flops-per-char", type=float, help="constraint: forward FLOPs per character at most this")
    p.add_argument("--max-params", type=float, help="constraint: parameters at most this")
    p.add_argument("--max-inference-ms", type=float, help="constraint: inference latency (ms) at most this")
    p.add_argument("--seed", type=int, help="sampler and training seed (default: the space's seed)")
    p.add_argument("--report-dir", help="where the report goes (default: EXPERIMENT_DIR/report)")
    p.add_argument("--dashboard", action="store_true", help="start Ray's dashboard, on 127.0.0.1 only")
    p.add_argument("--quiet", action="store_true", help="no live trial table")
    p.add_argument("--deterministic", action="store_true",
                   help="one trial at a time, so that the same seed gives the same trials, stops and scores")
    return p


@dataclass(frozen=True)
class Plan:
    """Everything checked and decided before Ray starts."""

    space: SearchSpace
    corpus: Corpus
    storage: str  # absolute path or URI
    name: str
    resume: bool
    num_samples: int
    seed: int
    report_dir: Path | None
    args: argparse.Namespace  # as given; on --resume, the experiment's own for what a trial is
    started_at: str | None = None  # on --resume: when the experiment began


def _check_writable(path: Path, what: str) -> None:
    """The nearest existing ancestor must accept a file; nothing is created at ``path`` itself."""
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable (nearest existing folder: {probe})")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror})") from None


def _check_space_fits_corpus(space: SearchSpace, corpus: Corpus) -> None:
    """Longest window and largest batch in the space must fit the corpus's splits."""
    def largest(name: str) -> Any:
        for p in space.params:
            if p.name == name:
                return max(p.corners())
        return space.base_config().get(name, getattr(TrainConfig, name))

    seq_len, batch = largest("seq_len"), largest("batch_size")
    try:
        corpus.check_seq_len(seq_len)
    except UserError as exc:
        raise UserError(f"{space.source}: params.seq_len: {exc}") from None
    windows = len(corpus.train_ids) - seq_len
    if batch > windows:
        raise UserError(f"{space.source}: params.batch_size={batch} is invalid: larger than the {windows} windows "
                        f"of seq_len={seq_len} in corpus {corpus.name}'s training split")


def resumed_experiment(args: argparse.Namespace, argv: list[str], storage: str) -> argparse.Namespace:
    """The experiment ``--resume`` continues, said on stderr, and this session's arguments for it
    (:func:`tuning.tune.resume.session_args`)."""
    name = args.name
    if name is None:
        if is_uri(storage):
            raise UserError(f"--resume: give --name (experiments in {storage} are not listed)")
        space_name = load_space(args.space).name if args.space else None
        found = find_latest(Path(storage), space_name)
        if found is None:
            which = f"of space {space_name!r} " if space_name else ""
            raise UserError(f"--resume: no experiment {which}in {storage} (give --name)")
        name = found[0]
    meta = experiment_meta(storage, name)
    if meta is None:
        raise UserError(f"--resume: no experiment {name!r} in {storage} to resume")
    merged = session_args(build_parser(), argparse.Namespace(**{**vars(args), "name": name}), argv, meta)
    if merged.num_samples is None:  # the experiment's count, not the space's default
        merged.num_samples = meta.get("num_samples")
    merged.started_at = meta.get("started_at", "?")
    return merged


def experiment_meta(location: str, name: str) -> dict[str, Any] | None:
    _check_name(name)
    return storage.read_json(storage.join(location, name, EXPERIMENT_META))


def _check_name(name: str) -> None:
    if any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
        raise UserError(f"--name={name!r} is invalid: a plain folder name")


def make_plan(args: argparse.Namespace, argv: list[str] | None = None) -> Plan:
    location = args.storage_path if is_uri(args.storage_path) else str(Path(args.storage_path).expanduser().resolve())
    if args.resume:
        args = resumed_experiment(args, [] if argv is None else argv, location)
    space = load_space(args.space or DEFAULT_SPACE)
    if args.max_iters is not None:
        if args.max_iters < 1:
            raise UserError(f"--max-iters={args.max_iters} is invalid: an integer >= 1")
        space = space.with_max_iters(args.max_iters)
    if args.precision is not None:  # fixed for every trial, replacing the space's value or distribution
        space = replace(space, fixed={**space.fixed, "precision": args.precision},
                        params=tuple(p for p in space.params if p.name != "precision"))
    if args.objectives:
        space = replace(space, objectives=parse_objectives_flag(args.objectives))
        if space.scheduler_metric and not space.uses_rays_asha:
            raise UserError(f"--objectives={args.objectives} is invalid with {space.source}: its scheduler_metric "
                            "needs one objective, or scheduler asha_first (MO-ASHA ranks by the objectives)")
    if args.cost_anchor:
        space = replace(space, cost_anchor=args.cost_anchor)
    constraints = dict(space.constraints)
    for flag, metric in (("max_flops_per_char", "flops_per_char"), ("max_params", "params"),
                         ("max_inference_ms", "inference_latency_ms")):
        value = getattr(args, flag)
        if value is not None:
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"--{flag.replace('_', '-')}={value} is invalid: a positive number")
            constraints[metric] = value
    space = replace(space, constraints=constraints)
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples={args.num_samples} is invalid: an integer >= 1")
    if args.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial={args.cpus_per_trial} is invalid: a number > 0")
    if args.gpus_per_trial is not None and not 0 <= args.gpus_per_trial:
        raise UserError(f"--gpus-per-trial={args.gpus_per_trial} is invalid: a number >= 0")
    if args.gpus_per_trial is not None and args.gpus_per_trial > 1 and not args.gpus_per_trial.is_integer():
        raise UserError(f"--gpus-per-trial={args.gpus_per_trial} is invalid: a fraction up to 1, or a whole number")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UserError(f"--max-concurrent={args.max_concurrent} is invalid: an integer >= 1")
    if args.deterministic and (args.max_concurrent or 1) > 1:
        raise UserError(f"--max-concurrent={args.max_concurrent} is invalid with --deterministic: one trial at a time")
    if args.max_failures < 0:
        raise UserError(f"--max-failures={args.max_failures} is invalid: an integer >= 0")
    if not (args.trial_timeout_s >= 0 and math.isfinite(args.trial_timeout_s)):
        raise UserError(f"--trial-timeout-s={args.trial_timeout_s} is invalid: seconds >= 0 (0 turns it off)")
    if args.time_budget_s is not None and not (args.time_budget_s > 0 and math.isfinite(args.time_budget_s)):
        raise UserError(f"--time-budget-s={args.time_budget_s} is invalid: a number of seconds > 0")
    corpus = load_corpus(space.corpus, space.normalize_whitespace)
    _check_space_fits_corpus(space, corpus)

    storage = location
    if not is_uri(storage):
        _check_writable(Path(storage), "--storage-path")
    if args.report_dir:
        _check_writable(Path(args.report_dir), "--report-dir")
    name = args.name
    if args.resume:
        if not is_uri(storage):
            check_resumable(Path(storage) / name)
    else:
        name = name or f"{space.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        if not is_uri(storage) and (Path(storage) / name).exists():
            raise UserError(f"--name {name!r}: an experiment of that name exists in {storage} (use --resume)")
    _check_name(name)
    report_dir = Path(args.report_dir).resolve() if args.report_dir else None
    return Plan(
        space=space,
        corpus=corpus,
        storage=storage,
        name=name,
        resume=args.resume,
        num_samples=args.num_samples or space.num_samples,
        args=args,
        started_at=getattr(args, "started_at", None),
        seed=space.seed if args.seed is None else args.seed,
        report_dir=report_dir,
    )


def start_ray(args: argparse.Namespace) -> None:
    import ray

    if ray.is_initialized():  # e.g. a test session's Ray: reuse it
        return
    # Ray's own banner and worker logs are noise for a CLI user; errors still surface through Tune.
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        # Embedded local Ray. The dashboard (and with it the jobs API, which runs code for anyone who can
        # reach it, CVE-2023-48022) stays off unless asked for, and then listens on loopback only.
        ray.init(include_dashboard=args.dashboard, dashboard_host="127.0.0.1", log_to_driver=False)


@dataclass(frozen=True)
class Slots:
    cpus: float
    gpus: float
    count: int


def plan_resources(args: argparse.Namespace) -> Slots:
    """Resources per trial and the number of trials the cluster can run at once."""
    import ray

    total = ray.cluster_resources()
    total_gpus = total.get("GPU", 0.0)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (DEFAULT_GPU_SHARE if total_gpus else 0.0)
    if gpus > 0 and total_gpus == 0:
        raise UserError(f"--gpus-per-trial={gpus} is invalid: the cluster has no GPU (use 0, or join a GPU cluster)")
    node_gpus = [n.get("Resources", {}).get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    if gpus > max(node_gpus, default=0.0):
        raise UserError(f"--gpus-per-trial={gpus} is invalid: no node has more than {max(node_gpus, default=0)} GPUs")
    node_cpus = [n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    if args.cpus_per_trial > max(node_cpus, default=0.0):
        raise UserError(f"--cpus-per-trial={args.cpus_per_trial} is invalid: no node has more than "
                        f"{max(node_cpus, default=0)} CPUs")
    from tuning.tune.searcher import cluster_slots

    return Slots(cpus=args.cpus_per_trial, gpus=gpus, count=cluster_slots(args.cpus_per_trial, gpus))


def check_precision_here(plan: Plan, args: argparse.Namespace) -> None:
    """Trials on this machine's CPU in a precision it cannot train in would each fail alike: say so once, now.

    Checked where every trial will run here on the CPU: an embedded local Ray (no --address, no RAY_ADDRESS)
    and no CUDA device. On a cluster or a GPU each trial checks its own device when it starts (tuning.engine.train).
    """
    import torch

    from tuning.engine import precision

    if args.address or os.environ.get("RAY_ADDRESS") or torch.cuda.is_available():
        return
    precision.check(plan.space.fixed.get("precision", "fp32"), torch.device("cpu"))


def check_storage_reachable(storage: str) -> None:
    """A node-local path on a multi-host cluster loses trial files: Ray 2.7+ no longer syncs to the head."""
    import ray

    if is_uri(storage):
        return
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    if len(hosts) > 1 and not _on_shared_filesystem(Path(storage)):
        raise UserError(f"--storage-path {storage} is node-local but the cluster spans {len(hosts)} hosts: use a "
                        "URI every node can reach (s3://…, gs://…) or a shared mount (NFS, …)")


def _on_shared_filesystem(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    path = path.resolve()
    best, fstype = "", ""
    for line in mounts:
        # /proc/mounts escapes space, tab, newline and backslash in paths as octal (\040 …)
        parts = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p) for p in line.split()]
        if len(parts) >= 3 and (str(path) + "/").startswith(parts[1].rstrip("/") + "/") and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype in SHARED_FS_TYPES


def trial_config(plan: Plan, slots: Slots) -> dict[str, Any]:
    """Fixed training options of every trial; the sampled ones are merged in by Ray Tune."""
    fixed = plan.space.base_config()
    fixed.update(
        seed=plan.seed,
        threads=max(1, int(slots.cpus)),
        # auto: CUDA where the trial's node has it. A logical GPU without CUDA (tests) trains on the CPU.
        device="auto",
        gpu_memory_fraction=min(1.0, slots.gpus) if 0 < slots.gpus < 1 else 1.0,
    )
    return fixed


def write_meta(experiment: str, plan: Plan, slots: Slots, argv: list[str], session: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    """Write the experiment's meta. ``argv``: a session begins (its command and ``session`` are appended);
    without it, ``session`` updates the current session's record."""
    meta_file = storage.join(experiment, EXPERIMENT_META)
    meta = storage.read_json(meta_file) or {}
    space = plan.space
    meta.update(
        space=space.name,
        space_file=space.source,
        space_yaml=Path(space.source).read_text(encoding="utf-8") if Path(space.source).is_file() else "",
        description=space.description,
        corpus=space.corpus,
        objective={"metric": space.objective.metric, "mode": space.objective.mode},
        objectives=[{"metric": o.metric, "mode": o.mode} for o in space.objectives],
        constraints=space.constraints,
        sampler=space.sampler,
        scheduler=space.scheduler,
        scheduler_metric=asdict(space.scheduler_metric) if space.scheduler_metric else None,
        cost_anchor=anchor_points(space),
        budget=asdict(space.budget),
        num_samples=plan.num_samples if not space.is_grid else space.grid_size(),
        seed=plan.seed,
        resources={"cpus_per_trial": slots.cpus, "gpus_per_trial": slots.gpus, "slots": slots.count},
        hardware=hardware(),
        versions=library_versions(),
    )
    if argv:
        meta.setdefault("commands", []).append(" ".join(["python -m tuning.search", *map(shlex.quote, argv)]))
        meta.setdefault("sessions", []).append({})
    if session:
        meta.setdefault("sessions", [{}])[-1].update(session)
    # what tuning.report needs to print the command that continues this experiment
    meta.update(name=plan.name, storage_path=plan.storage, resume_command=resume_command(plan.name, plan.storage))
    meta.setdefault("started_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    meta.update(extra)
    storage.write_json(meta_file, meta)
    return meta


def make_scheduler(plan: Plan) -> Any:
    """The space's trial scheduler: FIFO, Ray's ASHA on one metric, or our MO-ASHA / promotion ASHA, whose rung
    records live beside the experiment (local storage) so that a restore keeps them."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    space = plan.space
    if space.uses_rays_asha:
        # time_attr is our own iteration count, carried in checkpoints: Ray's training_iteration counts result
        # rows and drops the one sent just before a crash, so it can lag after a restore.
        return ASHAScheduler(time_attr="iteration", metric=space.asha_objective.metric,
                             mode=space.asha_objective.mode, max_t=space.budget.max_iters,
                             grace_period=space.budget.grace_iters, reduction_factor=space.budget.reduction_factor)
    if space.scheduler in ASHA_SCHEDULERS:  # asha_promotion, or asha with several objectives
        from tuning.tune.schedulers.mo_asha import ParetoASHA
        from tuning.tune.schedulers.promotion_asha import PromotionASHA

        ours, state_name = ((PromotionASHA, PROMOTION_STATE) if space.scheduler == "asha_promotion"
                            else (ParetoASHA, PARETO_STATE))
        local_state = None if is_uri(plan.storage) else Path(plan.storage) / plan.name / SCHEDULER_DIR / state_name
        return ours({o.metric: o.mode for o in space.objectives}, time_attr="iteration",
                    max_t=space.budget.max_iters, grace_period=space.budget.grace_iters,
                    reduction_factor=space.budget.reduction_factor, state_file=local_state,
                    anchors=anchor_points(space))
    return FIFOScheduler()


def build_tuner(plan: Plan, slots: Slots, args: argparse.Namespace) -> Any:
    from ray import tune

    from tuning.tune.searcher import SlotLimiter, make_searcher
    from tuning.tune.trial import trainable

    space = plan.space
    # --deterministic: ASHA's decisions then follow the order of results alone, not which trial is faster
    max_concurrent = 1 if args.deterministic else args.max_concurrent
    resources = {"cpu": slots.cpus, "gpu": slots.gpus}
    runnable = tune.with_resources(
        tune.with_parameters(trainable, corpus=plan.corpus, trial_timeout_s=args.trial_timeout_s), resources
    )
    storage_path, filesystem = ray_storage(plan.storage)
    if args.resume:
        return restore_tuner(plan, slots, args, runnable)
    scheduler = make_scheduler(plan)
    param_space = trial_config(plan, slots)
    searcher: Any = None
    if space.is_grid:
        from tuning.tune.searcher import grid_param_space

        param_space.update(grid_param_space(space))
    else:
        # Without --max-concurrent the limit follows the cluster's slots as nodes join (autoscaling). Always ours:
        # Ray's own limiter counts paused trials as running, and a resumed search sets ours in its saved state.
        searcher = SlotLimiter(make_searcher(space, plan.seed), slots.cpus, slots.gpus, fixed=max_concurrent)
    summary, progress = make_progress(space, args)
    return tune.Tuner(
        runnable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            # metric/mode live on the searcher and the scheduler (Ray rejects them here as well).
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=1 if space.is_grid else plan.num_samples,
            max_concurrent_trials=None if isinstance(searcher, SlotLimiter) else max_concurrent or slots.count,
            # --time-budget-s is tuning.tune.resume.StopRequests's: Ray's stopper would close the search for good.
            time_budget_s=None,
            # Reusing a trial's worker process skips the actor start and the torch/calflops imports.
            reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            progress_reporter=progress,
            callbacks=[summary],
            verbose=0 if args.quiet else 1,
        ),
    )


def make_progress(space: SearchSpace, args: argparse.Namespace) -> tuple[Any, Any]:
    """The callback that follows the search, and the live trial table with its summary line (None with --quiet)."""
    from tuning.tune.progress import ProgressTable, SearchProgress

    metric = space.objective.metric
    summary = SearchProgress(metric, space.objective.mode, space.budget.max_iters, args.time_budget_s)
    if args.quiet:
        return summary, None
    return summary, ProgressTable(
        summary,
        parameter_columns=[p.name for p in space.params][:6],
        metric_columns={"iteration": "iter", metric: metric, "val_acc_last": "acc_last", "train_time_s": "train_s"},
        max_report_frequency=30,
    )


def restore_tuner(plan: Plan, slots: Slots, args: argparse.Namespace, runnable: Any) -> Any:
    """Ray's ``Tuner.restore`` after repairing the saved state, with this session's settings applied
    (:data:`tuning.tune.resume.APPLIED_ON_RESUME`; the time budget is :class:`tuning.tune.resume.StopRequests`'s)."""
    from ray import tune

    from tuning.tune import old_paths
    from tuning.tune.progress import SearchProgress
    from tuning.tune.ray_state import repair_checkpoint_references, repair_trial_count, set_search_plan
    from tuning.tune.resume import restored_configs

    old_paths.register()  # an experiment saved before the layout change pickled the old module paths
    storage_path, filesystem = ray_storage(plan.storage)
    experiment = f"{storage_path}/{plan.name}"
    for repair in repair_checkpoint_references(experiment, filesystem):
        print(repair.describe(), file=sys.stderr)
    if (count := repair_trial_count(experiment, filesystem)) is not None:
        print(count, file=sys.stderr)
    grid = plan.space.is_grid
    changes = set_search_plan(experiment, filesystem, num_samples=None if grid else plan.num_samples,
                              max_concurrent=args.max_concurrent)
    if changes:
        print(f"resume: {'; '.join(changes)}", file=sys.stderr)
    tuner = tune.Tuner.restore(experiment, trainable=runnable, storage_filesystem=filesystem,
                               resume_unfinished=True, resume_errored=True)
    tune_config, run_config = restored_configs(tuner)
    tune_config.time_budget_s = None  # an experiment begun before StopRequests may carry Ray's
    if grid and args.max_concurrent is not None:
        tune_config.max_concurrent_trials = args.max_concurrent
    summary, run_config.progress_reporter = make_progress(plan.space, args)
    # this session's summary line (its budget, its start), in place of the one pickled with the first session
    run_config.callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, SearchProgress)] + [summary]
    run_config.verbose = 0 if args.quiet else 1
    run_config.failure_config = tune.FailureConfig(max_failures=args.max_failures)
    return tuner


def run(args: argparse.Namespace, argv: list[str]) -> int:
    plan = make_plan(args, argv)  # every user mistake that needs no cluster stops here, before Ray starts
    args = plan.args  # on --resume: the experiment's own for what a trial is
    if plan.resume:
        print(f"resuming {plan.name} (space {plan.space.name}, started {plan.started_at})", file=sys.stderr)
    advice = rung_advice(plan.space.budget, plan.space.scheduler)
    if advice:
        print(f"warning: {advice}", file=sys.stderr)
    anchors = anchor_points(plan.space)
    if anchors and not args.resume:
        points = "; ".join(", ".join(f"{k}={v}" for k, v in a.items()) for a in anchors)
        which = ("the first trial is the space's cheapest model" if len(anchors) == 1
                 else f"the first {len(anchors)} trials are the cheapest model of each family")
        print(f"cost anchor: {which} ({points})", file=sys.stderr)
    check_precision_here(plan, args)
    start_ray(args)
    slots = plan_resources(args)
    check_storage_reachable(plan.storage)
    tuner = build_tuner(plan, slots, args)
    experiment = storage.join(plan.storage, plan.name)
    settings = {k: getattr(args, k) for k in APPLIED_ON_RESUME}
    # a resumed search keeps the tuner it pickled, its concurrency included: the first run's flag stands
    meta = write_meta(experiment, plan, slots, argv, session={"started_at": _now(), **settings}, finished_at=None,
                      **({} if args.resume else {"deterministic": args.deterministic}))
    from tuning.tune.progress import hide_misleading_ray_warnings

    hide_misleading_ray_warnings()
    started = time.time()
    with StopRequests(args.time_budget_s) as stop:
        results = tuner.fit()
    wall = time.time() - started
    if stop.reason is not None:
        keep_what_was_trained(plan)
    interrupted = stop.reason in EXIT_CODES
    write_meta(experiment, plan, slots, [], session={"ended_at": _now(), "stopped_by": stop.reason},
               finished_at=None if interrupted else _now(), wall_time_s=meta.get("wall_time_s", 0.0) + wall)
    from tuning.report.tables import trials_to_evaluate
    from tuning.report.write import summary, write_report

    # A bucket's experiment is read from a temporary download; its report goes to a local folder.
    report_dir = plan.report_dir or (Path(experiment) / "report" if not is_uri(experiment)
                                     else Path("reports") / plan.name)
    with storage.local_copy(experiment) as experiment_dir:
        from tuning.engine.full_validation import evaluate_trials
        from tuning.report.results import load_experiment

        meta_read, trials, history = load_experiment(experiment_dir)
        chosen = trials_to_evaluate(trials, history, meta_read)  # on a front, or best of its cell
        evaluation = evaluate_trials(experiment_dir, chosen)  # whole-split figures for the report's fronts
        if is_uri(experiment):  # the folder is a temporary download: the file goes back beside the trials
            storage.write_json(storage.join(experiment, EVALUATION_DIR, FULL_VALIDATION), evaluation)
        tables = write_report(experiment_dir, report_dir)
    print(summary(tables, report_dir))
    unfinished = int((tables.trials["status"] == "unfinished").sum())
    if stop.reason is not None or unfinished:
        why = f"stopped by {stop.reason}" if stop.reason else f"{unfinished} trial(s) unfinished"
        print(f"{why}; continue with: {resume_command(plan.name, plan.storage)}", file=sys.stderr)
    if interrupted:
        return stop.exit_code
    errors = sum(1 for r in results if r.error is not None)
    if len(results) and errors == len(results):
        print(f"every trial failed ({errors}); see {report_dir}", file=sys.stderr)
        return 1
    return 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def keep_what_was_trained(plan: Plan) -> None:
    """After a stop: give each unfinished trial its newest whole checkpoint and the rows it holds, which Ray's
    interrupt leaves unrecorded when their result was still in flight (:mod:`tuning.tune.ray_state`)."""
    from tuning.tune.ray_state import repair_checkpoint_references

    storage_path, filesystem = ray_storage(plan.storage)
    for repair in repair_checkpoint_references(f"{storage_path}/{plan.name}", filesystem):
        print(repair.describe().replace("resume: ", "kept: ", 1), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return run(args, argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
