"""Declarative search spaces: YAML in Optuna's vocabulary, validated before anything starts.

A space file looks like this (``search_spaces/smoke.yaml`` is the smallest complete example)::

    description: one line for the report
    corpus: tinyshakespeare          # a known name or a path to a UTF-8 text file
    normalize_whitespace: false
    num_samples: 40                  # default for --num-samples (ignored by grids: they run every point)
    sampler: tpe                     # tpe | random | grid
    seed: 0
    objective: {metric: val_loss, mode: min}
    budget: {chars_per_iter: 250000, max_iters: 27, grace_iters: 1, reduction_factor: 3}
    scheduler: asha                  # asha | asha_promotion | asha_first | none (every trial runs its full budget)
    scheduler_metric: {metric: val_loss, mode: min}  # optional: what asha_first (or one-objective asha) ranks by
    cost_anchor: false               # true: the cheapest model first; families: each cell type's (tuning.spec.anchor)
    params:
      cell: {type: categorical, choices: [rnn, lstm, gru]}
      seq_len: {type: int, low: 10, high: 50}
      hidden_size: {type: int, low: 32, high: 512, log: true}
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      head_depth: {type: grid, values: [0, 1]}   # grid values: an exhaustive grid, no sampler
      batch_size: 64                             # a fixed value

Every error is one line naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tuning.engine.config import TrainConfig
from tuning.errors import QUOTE_CHARS, UserError, quote

# Metrics every trial reports (tuning.engine.train); an objective must be one of them.
REPORTED_METRICS = (
    "train_loss", "train_acc", "val_loss", "val_loss_last", "val_bpc", "val_ppl", "val_acc", "val_acc_last",
    "train_time_s", "eval_time_s", "chars_trained", "params", "calflops_flops", "calflops_macs", "macs",
    "flops_per_char", "macs_per_char", "train_flops_per_char", "inference_latency_ms", "inference_throughput",
)
# Training options a space may search or fix. The rest belong to the driver (device, threads, seed, …) or to
# the budget section.
SEARCHABLE = (
    "cell", "seq_len", "embed_dim", "hidden_size", "num_layers", "dropout", "head_depth", "head_width",
    "head_dropout", "lr", "lr_schedule", "lr_min_ratio", "batch_size", "precision", "weight_decay", "grad_clip",
    "checkpoint_every", "val_max_chars", "sample_chars", "temperature",
)
TOP_KEYS = ("description", "corpus", "normalize_whitespace", "num_samples", "sampler", "seed", "objective",
            "objectives", "constraints",
            "budget", "scheduler", "scheduler_metric", "cost_anchor", "params")
BUDGET_KEYS = ("chars_per_iter", "max_iters", "grace_iters", "reduction_factor")
DIST_KEYS = {
    "int": ("type", "low", "high", "log", "step"),
    "float": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
    "grid": ("type", "values"),
}
SAMPLERS = ("tpe", "nsga2", "random", "grid")
# asha: Ray's ASHA for one objective, the Pareto-aware MO-ASHA (tuning.tune.schedulers.mo_asha) for several;
# asha_first: Ray's ASHA on the first objective even when there are several; asha_promotion: ASHA of the promotion
# type (tuning.tune.schedulers.promotion_asha: a trial waits at each rung until it ranks in the top 1/rf there, on
# every objective);
# none: every trial runs to the end.
ANCHORS = ("off", "cheapest", "families")  # cost_anchor (YAML false / true / families; tuning.spec.anchor)
SCHEDULERS = ("asha", "asha_first", "asha_promotion", "none")
ASHA_SCHEDULERS = ("asha", "asha_first", "asha_promotion")  # the ones that end trials at rungs
# Costs a space may bound (--max-flops-per-char, --max-params, --max-inference-ms); Optuna learns the feasible region.
CONSTRAINABLE = ("flops_per_char", "train_flops_per_char", "macs_per_char", "params", "inference_latency_ms")


@dataclass(frozen=True)
class Param:
    """One searched parameter, in Optuna's vocabulary (``grid`` is an exhaustive list of values)."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def corners(self) -> list[Any]:
        """The values that bound this parameter: checking them checks the whole range."""
        if self.type in ("categorical", "grid"):
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class Budget:
    chars_per_iter: int = 250_000
    max_iters: int = 27  # grace · rf^3: ASHA's last rung a full factor below the end (see rung_advice)
    grace_iters: int = 1
    reduction_factor: int = 3


@dataclass(frozen=True)
class Objective:
    metric: str = "val_loss"
    mode: str = "min"


def uses_rays_asha(scheduler: str, objectives: int) -> bool:
    """Whether Ray's single-metric ASHAScheduler runs the search: asha_first, or asha with one objective (with
    several, asha is our MO-ASHA). The one place this rule lives: the space check, --objectives and the search."""
    return scheduler == "asha_first" or (scheduler == "asha" and objectives == 1)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    source: str  # the file it was read from
    description: str = ""
    corpus: str = "tinyshakespeare"
    normalize_whitespace: bool = False
    num_samples: int = 10
    sampler: str = "tpe"
    seed: int = 0
    objectives: tuple[Objective, ...] = (Objective(),)
    constraints: dict[str, float] = field(default_factory=dict)  # metric -> upper bound
    budget: Budget = field(default_factory=Budget)
    scheduler: str = "asha"
    # What Ray's single-objective ASHA ranks trials by when it is not the first objective, e.g. val_loss while the
    # search looks for the accuracy/FLOPs front (#8's baseline b); None: the first objective.
    scheduler_metric: Objective | None = None
    params: tuple[Param, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    # A multi-objective search that minimises a pre-training cost trains the cheapest model first, or with
    # "families" each family's (tuning.spec.anchor); off by default: in the 45-minute benchmark one seed in three ended
    # below random search with it. One of ANCHORS; YAML false / true / families.
    cost_anchor: str = "off"

    @property
    def objective(self) -> Objective:
        """The first objective: what single-objective parts (summaries) use."""
        return self.objectives[0]

    @property
    def uses_rays_asha(self) -> bool:
        return uses_rays_asha(self.scheduler, len(self.objectives))

    @property
    def asha_objective(self) -> Objective:
        """What Ray's ASHA (see :attr:`uses_rays_asha`) ranks trials by."""
        return self.scheduler_metric or self.objective

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    def grid_size(self) -> int:
        return math.prod(len(p.choices) for p in self.params) if self.is_grid else 0

    def base_config(self) -> dict[str, Any]:
        """Training options every trial shares: corpus, budget and the fixed values."""
        return {
            "corpus": self.corpus,
            "normalize_whitespace": self.normalize_whitespace,
            "chars_per_iter": self.budget.chars_per_iter,
            "max_iters": self.budget.max_iters,
            **self.fixed,
        }

    def with_max_iters(self, max_iters: int) -> SearchSpace:
        grace = min(self.budget.grace_iters, max_iters)
        return replace(self, budget=replace(self.budget, max_iters=max_iters, grace_iters=grace))


def builtin_dir() -> Path:
    """The built-in spaces: installed as ``tuning.search_spaces``, or the repository's ``search_spaces/``."""
    try:
        return Path(str(resources.files("tuning.search_spaces")))
    except ModuleNotFoundError:  # a source checkout on PYTHONPATH, not pip-installed (e.g. a machine without pip)
        return Path(__file__).resolve().parents[2] / "search_spaces"  # tuning/spec/space.py -> the repository


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def find_space(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UserError(f"search space file {path}: no such file")
        return path
    candidate = builtin_dir() / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise UserError(
            f"unknown search space {quote(name_or_path)}: give a YAML file or one of: {', '.join(builtin_names())}"
        )
    return candidate


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Checker:
    """Raises one-line errors that name the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise UserError(f"{self.source}: {key}={quote(value)} is invalid: {allowed}")

    def mapping(self, key: str, value: Any, allowed_keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, value, f"a mapping with keys {', '.join(allowed_keys)}")
        odd = next((k for k in value if not isinstance(k, str)), None)
        if odd is not None:
            self.fail(f"{key} key" if key else "key", odd, f"a name; allowed: {', '.join(allowed_keys)}")
        unknown = sorted(set(value) - set(allowed_keys))
        if unknown:
            name = unknown[0] if len(unknown[0]) <= QUOTE_CHARS else quote(unknown[0])
            self.fail(f"{key}.{name}" if key else name, value[unknown[0]],
                      f"unknown key; allowed: {', '.join(allowed_keys)}")
        return value

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(key, value, f"an integer >= {minimum}")
        return value

    def one_of(self, key: str, value: Any, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            self.fail(key, value, f"one of {', '.join(allowed)}")
        return value


def _parse_param(check: _Checker, name: str, spec: dict[str, Any]) -> Param:
    key = f"params.{name}"
    kind = check.one_of(f"{key}.type", spec.get("type"), tuple(DIST_KEYS))
    check.mapping(key, spec, DIST_KEYS[kind])
    if kind in ("categorical", "grid"):
        list_key = "choices" if kind == "categorical" else "values"
        values = spec.get(list_key)
        if not isinstance(values, list) or not values:
            raise UserError(f"{check.source}: {key}.{list_key}={quote(values)} is invalid: a non-empty list")
        for v in values:
            if _is_number(v) and not math.isfinite(v):
                check.fail(f"{key}.{list_key}", v, "finite values")
        return Param(name=name, type=kind, choices=tuple(values))
    for bound in ("low", "high"):
        if bound not in spec:
            check.fail(f"{key}.{bound}", None, f"required for type {kind}")
        value = spec[bound]
        if isinstance(value, str) and _looks_numeric(value):
            check.fail(f"{key}.{bound}", value, f"a number, not a string (YAML reads {value} as text: write it "
                                                "with a decimal point, e.g. 1.0e-4)")
        if not _is_number(value) or not math.isfinite(value):
            check.fail(f"{key}.{bound}", value, "a finite number")
        if kind == "int" and not float(value).is_integer():
            check.fail(f"{key}.{bound}", value, "an integer for type int")
    low, high = spec["low"], spec["high"]
    if low > high:
        check.fail(f"{key}.low", low, f"at most high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        check.fail(f"{key}.log", log, "true or false")
    if log and low <= 0:
        check.fail(f"{key}.low", low, "> 0 when log is true")
    step = spec.get("step")
    if step is not None:
        if not _is_number(step) or not math.isfinite(step) or step <= 0:
            check.fail(f"{key}.step", step, "a positive number")
        if log and kind == "float":
            check.fail(f"{key}.step", step, "omitted when log is true (Optuna cannot combine them for floats)")
    if kind == "int":
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    else:
        low, high = float(low), float(high)
    return Param(name=name, type=kind, low=low, high=high, log=log, step=step)


def _check_against_trainer(check: _Checker, space: SearchSpace) -> None:
    """Every bound of every parameter must make a valid TrainConfig: the trainer's rules are the space's.

    Each value is checked alone on top of the trainer's defaults, so an error names the key that is wrong.
    """
    base = {k: v for k, v in space.base_config().items() if k not in space.fixed}
    for name, value in space.fixed.items():
        try:
            TrainConfig.from_dict({**base, name: value})
        except UserError as exc:
            check.fail(f"params.{name}", value, str(exc).split(" is invalid: ", 1)[-1])
    for param in space.params:
        for value in param.corners():
            try:
                TrainConfig.from_dict({**base, param.name: value})
            except UserError as exc:
                check.fail(f"params.{param.name}", value, str(exc).split(" is invalid: ", 1)[-1])
    try:
        TrainConfig.from_dict(space.base_config())
    except UserError as exc:
        raise UserError(f"{check.source}: {exc}") from None


def parse_objective(check: _Checker, key: str, raw: Any) -> Objective:
    raw = check.mapping(key, raw, ("metric", "mode"))
    return Objective(
        metric=check.one_of(f"{key}.metric", raw.get("metric", "val_loss"), REPORTED_METRICS),
        mode=check.one_of(f"{key}.mode", raw.get("mode", "min"), ("min", "max")),
    )


def parse_objectives_flag(text: str) -> tuple[Objective, ...]:
    """``val_loss:min,flops_per_char:min`` → objectives; a missing mode means min."""
    check = _Checker("--objectives")
    out = []
    for part in text.split(","):
        metric, _, mode = part.strip().partition(":")
        out.append(parse_objective(check, "objective", {"metric": metric, "mode": mode or "min"}))
    if len({o.metric for o in out}) != len(out):
        raise UserError(f"--objectives={quote(text)} is invalid: distinct metrics")
    return tuple(out)


def parse_space(data: Any, source: str, name: str) -> SearchSpace:
    check = _Checker(source)
    if not isinstance(data, dict):
        raise UserError(f"{source}: the file must be a YAML mapping with keys {', '.join(TOP_KEYS)}")
    check.mapping("", data, TOP_KEYS)
    if "params" not in data:
        check.fail("params", None, "required: a mapping of parameter names to distributions or fixed values")
    raw_params = check.mapping("params", data["params"], SEARCHABLE)
    params, fixed = [], {}
    for pname, spec in raw_params.items():
        if isinstance(spec, dict):
            params.append(_parse_param(check, pname, spec))
        else:
            fixed[pname] = spec
    grid = [p for p in params if p.type == "grid"]
    sampler = check.one_of("sampler", data.get("sampler", "grid" if grid else "tpe"), SAMPLERS)
    if sampler == "grid" and len(grid) != len(params):
        odd = next(p for p in params if p.type != "grid")
        check.fail(f"params.{odd.name}.type", odd.type, "grid (a grid space takes only grid values or fixed values)")
    if grid and sampler != "grid":
        check.fail("sampler", sampler, "grid when params use type grid")
    budget_raw = check.mapping("budget", data.get("budget", {}), BUDGET_KEYS)
    budget = Budget(**{k: check.integer(f"budget.{k}", v, 1 if k != "reduction_factor" else 2)
                       for k, v in budget_raw.items()})
    if budget.grace_iters > budget.max_iters:
        check.fail("budget.grace_iters", budget.grace_iters, f"at most max_iters ({budget.max_iters})")
    if "objective" in data and "objectives" in data:
        check.fail("objectives", data["objectives"], "either objective (one) or objectives (a list), not both")
    raw_objectives = data.get("objectives", [data.get("objective", {})])
    if not isinstance(raw_objectives, list) or not raw_objectives:
        check.fail("objectives", raw_objectives, "a non-empty list of {metric, mode} mappings")
    objectives = tuple(parse_objective(check, f"objectives[{i}]" if "objectives" in data else "objective", raw)
                       for i, raw in enumerate(raw_objectives))
    if len({o.metric for o in objectives}) != len(objectives):
        check.fail("objectives", [o.metric for o in objectives], "distinct metrics")
    raw_constraints = check.mapping("constraints", data.get("constraints", {}), CONSTRAINABLE)
    constraints = {}
    for metric, bound in raw_constraints.items():
        if not _is_number(bound) or not math.isfinite(bound) or bound <= 0:
            check.fail(f"constraints.{metric}", bound, "a positive number (an upper bound)")
        constraints[metric] = float(bound)
    scheduler = check.one_of("scheduler", data.get("scheduler", "none" if grid else "asha"), SCHEDULERS)
    scheduler_metric = None
    if "scheduler_metric" in data:
        if not uses_rays_asha(scheduler, len(objectives)):
            check.fail("scheduler_metric", data["scheduler_metric"],
                       "only with scheduler asha_first, or asha with one objective (MO-ASHA ranks by the objectives)")
        scheduler_metric = parse_objective(check, "scheduler_metric", data["scheduler_metric"])
    corpus = data.get("corpus", "tinyshakespeare")
    if not isinstance(corpus, str) or not corpus:
        check.fail("corpus", corpus, "a corpus name or a file path")
    if corpus not in ("tinyshakespeare", "nextchar") and not Path(corpus).is_absolute():
        corpus = str((Path(source).parent / corpus).resolve())  # a relative path is relative to the YAML file
    normalize = data.get("normalize_whitespace", False)
    if not isinstance(normalize, bool):
        check.fail("normalize_whitespace", normalize, "true or false")
    anchor_value = data.get("cost_anchor", False)
    if not (isinstance(anchor_value, bool) or anchor_value == "families"):
        check.fail("cost_anchor", anchor_value, "true, false or families")
    cost_anchor = "families" if anchor_value == "families" else "cheapest" if anchor_value is True else "off"
    description = data.get("description", "")
    if not isinstance(description, str):
        check.fail("description", description, "a string")
    space = SearchSpace(
        name=name,
        source=source,
        description=description,
        corpus=corpus,
        normalize_whitespace=normalize,
        num_samples=check.integer("num_samples", data.get("num_samples", 10), 1),
        sampler=sampler,
        seed=check.integer("seed", data.get("seed", 0), 0),
        objectives=objectives,
        constraints=constraints,
        budget=budget,
        scheduler=scheduler,
        scheduler_metric=scheduler_metric,
        params=tuple(params),
        fixed=fixed,
        cost_anchor=cost_anchor,
    )
    _check_against_trainer(check, space)
    return space


class YAMLTooLarge(yaml.YAMLError):
    """A YAML document past :class:`_StrictLoader`'s bounds; the message names the limit."""


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys (PyYAML silently keeps the last one) and documents too large.

    A search space is a page of YAML, but aliases let a small file expand past memory ("billion laughs") and
    nesting recurse past Python's stack, so the composer counts alias uses and the size and depth each node
    has once its aliases are expanded, and refuses beyond the bounds below.
    """

    MAX_ALIASES = 100
    MAX_NODES = 10_000  # nodes after alias expansion
    MAX_DEPTH = 50

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        # id(node) -> (expanded node count, expanded depth), filled as each node is composed
        self._sizes: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):  # type: ignore[no-untyped-call]
            self._aliases += 1
            if self._aliases > self.MAX_ALIASES:
                raise YAMLTooLarge(f"more than {self.MAX_ALIASES} alias uses (*name); write the values out")
            node = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
            if id(node) not in self._sizes:
                raise YAMLTooLarge("an alias (*name) inside the node it refers to; a space cannot be recursive")
            return node
        self._depth += 1
        try:
            if self._depth > self.MAX_DEPTH:
                raise YAMLTooLarge(f"nested deeper than {self.MAX_DEPTH} levels")
            node = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        sizes = [self._sizes[id(c)] for c in children]
        count = 1 + sum(n for n, _ in sizes)
        depth = 1 + max((d for _, d in sizes), default=0)
        if count > self.MAX_NODES:
            raise YAMLTooLarge(f"more than {self.MAX_NODES:,} values once aliases (*name) are expanded")
        if depth > self.MAX_DEPTH:
            raise YAMLTooLarge(f"nested deeper than {self.MAX_DEPTH} levels once aliases (*name) are expanded")
        self._sizes[id(node)] = (count, depth)
        return node


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """A mapping whose own keys are distinct and hashable; merge keys (``<<: *base``) give defaults it overrides."""
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        mark = key_node.start_mark
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(None, None, f"a key that is a {type(key).__name__}, "
                                                    "not a name or a number", mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {quote(key)}", mark)
        seen.add(key)
    loader.flatten_mapping(node)  # type: ignore[no-untyped-call]
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)  # type: ignore[arg-type]


def load_space(name_or_path: str) -> SearchSpace:
    """Find, parse and validate a search space by built-in name or YAML path."""
    path = find_space(name_or_path)
    try:
        # A safe loader: a space file never builds Python objects.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except YAMLTooLarge as exc:
        raise UserError(f"{path}: refused: {exc}") from None
    except RecursionError:
        raise UserError(f"{path}: refused: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    return parse_space(data, str(path), path.stem)
