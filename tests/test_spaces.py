"""Tests for tuning.spec.space: the built-in spaces, Optuna distributions, grids and one-line validation errors."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from tuning.errors import UserError
from tuning.spec.space import (
    REPORTED_METRICS,
    builtin_names,
    find_space,
    load_space,
    quote,
)
from tuning.tune.searcher import grid_param_space, optuna_distributions

BUILTINS = ("hw3-p1", "hw3-p2", "nextchar", "shakespeare", "smoke")

# A small valid space in the built-ins' style (cell first); each invalid case below changes one thing.
BASE: dict[str, Any] = {
    "description": "test space",
    "corpus": "nextchar",
    "normalize_whitespace": True,
    "num_samples": 4,
    "sampler": "tpe",
    "seed": 0,
    "objective": {"metric": "val_loss", "mode": "min"},
    "budget": {"chars_per_iter": 4000, "max_iters": 3, "grace_iters": 1, "reduction_factor": 2},
    "scheduler": "asha",
    "params": {
        "cell": {"type": "categorical", "choices": ["rnn", "lstm", "gru"]},
        "seq_len": {"type": "int", "low": 10, "high": 30},
        "embed_dim": {"type": "int", "low": 8, "high": 32, "log": True},
        "hidden_size": {"type": "int", "low": 16, "high": 64, "log": True},
        "num_layers": {"type": "int", "low": 1, "high": 2},
        "lr": {"type": "float", "low": 3.0e-3, "high": 3.0e-2, "log": True},
        "batch_size": 16,
    },
}


def write_space(tmp_path: Path, doc: Any, name: str = "space.yaml") -> Path:
    """Write a document (a dict to dump as YAML, raw text, or raw bytes) to tmp_path and return its path."""
    path = tmp_path / name
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    elif isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def changed(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    edit(doc)
    return doc


def test_base_document_is_valid(tmp_path: Path) -> None:
    space = load_space(str(write_space(tmp_path, BASE)))
    assert [p.name for p in space.params] == ["cell", "seq_len", "embed_dim", "hidden_size", "num_layers", "lr"]
    assert space.fixed == {"batch_size": 16}
    assert space.name == "space"


# --- built-in spaces -------------------------------------------------------------------------------------------


def test_builtin_names() -> None:
    assert tuple(builtin_names()) == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_space_loads_and_validates(name: str) -> None:
    space = load_space(name)
    assert space.name == name
    assert Path(space.source).is_file()
    assert Path(space.source).name == f"{name}.yaml"
    assert space.description
    assert space.params
    if name.startswith("hw3-"):  # the homework's studies: exhaustive grids, every configuration at full budget
        assert space.is_grid and space.scheduler == "none" and space.grid_size() == (9 if name == "hw3-p1" else 12)
    else:
        assert space.sampler == "tpe" and not space.is_grid and space.grid_size() == 0
        # the shakespeare default uses ASHA as Li et al. 2020 state it (benchmarks/efficiency-promotion-2700s.md)
        assert space.scheduler == ("asha_promotion" if name == "shakespeare" else "asha")
    assert space.objective.metric in REPORTED_METRICS
    assert space.objective.mode in ("min", "max")
    assert 1 <= space.budget.grace_iters <= space.budget.max_iters
    assert space.num_samples >= 1
    for p in space.params:
        if p.type in ("int", "float"):
            assert p.low is not None and p.high is not None and p.low <= p.high
            assert not p.log or p.low > 0
        else:
            assert p.type in ("categorical", "grid") and p.choices
    cells = next(p for p in space.params if p.name == "cell")
    assert set(cells.choices) == ({"lstm", "gru"} if name == "hw3-p2" else {"rnn", "lstm", "gru"})


def test_shakespeare_space_contents() -> None:
    space = load_space("shakespeare")
    params = {p.name: p for p in space.params}
    assert space.corpus == "tinyshakespeare"

    cell = params["cell"]
    assert cell.type == "categorical"
    assert set(cell.choices) == {"rnn", "lstm", "gru"} and len(cell.choices) == 3

    seq_len = params["seq_len"]
    assert (seq_len.type, seq_len.low, seq_len.high, seq_len.log) == ("int", 10, 50, False)
    assert isinstance(seq_len.low, int) and isinstance(seq_len.high, int)

    hidden = params["hidden_size"]
    assert (hidden.type, hidden.low, hidden.high, hidden.log) == ("int", 32, 512, True)

    assert space.fixed == {"val_max_chars": 50000, "lr_schedule": "cosine"}
    assert space.base_config()["val_max_chars"] == 50000
    assert space.base_config()["lr_schedule"] == "cosine"


def test_builtin_spaces_load_from_another_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tuple(builtin_names()) == BUILTINS
    for name in BUILTINS:
        assert find_space(name).is_file()
        space = load_space(name)
        assert space.name == name
        assert Path(space.source).is_absolute()
        assert not Path(space.source).is_relative_to(tmp_path)


def test_builtin_spaces_found_in_a_source_checkout_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # With only the checkout on PYTHONPATH, `tuning.search_spaces` does not exist (setuptools maps it at install).
    import tuning.spec.space as spaces_module

    def not_installed(_name: str) -> None:
        raise ModuleNotFoundError("No module named 'tuning.search_spaces'")

    monkeypatch.setattr(spaces_module.resources, "files", not_installed)
    assert tuple(builtin_names()) == BUILTINS
    assert find_space("smoke").parent.name == "search_spaces"


def test_relative_corpus_path_is_relative_to_the_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spaces").mkdir()
    path = write_space(tmp_path / "spaces", changed(lambda d: d.update(corpus="text.txt")))
    monkeypatch.chdir(tmp_path)
    space = load_space(str(path))
    assert space.corpus == str((tmp_path / "spaces" / "text.txt").resolve())


# --- Optuna distributions --------------------------------------------------------------------------------------


def test_optuna_distributions_shakespeare() -> None:
    space = load_space("shakespeare")
    dists = optuna_distributions(space)
    assert set(dists) == {p.name for p in space.params}
    assert "val_max_chars" not in dists  # fixed values are not sampled

    cell = dists["cell"]
    assert isinstance(cell, optuna.distributions.CategoricalDistribution)
    assert set(cell.choices) == {"rnn", "lstm", "gru"}

    seq_len = dists["seq_len"]
    assert isinstance(seq_len, optuna.distributions.IntDistribution)
    assert (seq_len.low, seq_len.high, seq_len.log, seq_len.step) == (10, 50, False, 1)

    hidden = dists["hidden_size"]
    assert isinstance(hidden, optuna.distributions.IntDistribution)
    assert (hidden.low, hidden.high, hidden.log) == (32, 512, True)

    lr = dists["lr"]
    assert isinstance(lr, optuna.distributions.FloatDistribution)
    assert lr.log is True and lr.step is None
    assert math.isclose(lr.low, 3.0e-4) and math.isclose(lr.high, 1.0e-2)

    dropout = dists["dropout"]
    assert isinstance(dropout, optuna.distributions.FloatDistribution)
    assert (dropout.low, dropout.high, dropout.log) == (0.0, 0.5, False)

    batch = dists["batch_size"]
    assert isinstance(batch, optuna.distributions.CategoricalDistribution)
    assert tuple(batch.choices) == (32, 64, 128)


def test_optuna_distributions_with_steps(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["params"]["seq_len"] = {"type": "int", "low": 10, "high": 30, "step": 5}
        d["params"]["dropout"] = {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}

    dists = optuna_distributions(load_space(str(write_space(tmp_path, changed(edit)))))
    assert isinstance(dists["seq_len"], optuna.distributions.IntDistribution)
    assert (dists["seq_len"].low, dists["seq_len"].high, dists["seq_len"].step) == (10, 30, 5)
    assert isinstance(dists["dropout"], optuna.distributions.FloatDistribution)
    assert dists["dropout"].step == pytest.approx(0.1)
    assert dists["dropout"].log is False


# --- grids -----------------------------------------------------------------------------------------------------

GRID_DOC = """\
corpus: nextchar
normalize_whitespace: true
budget: {chars_per_iter: 4000, max_iters: 2, grace_iters: 1, reduction_factor: 2}
params:
  cell: {type: grid, values: [rnn, lstm, gru]}
  head_depth: {type: grid, values: [0, 1]}
  seq_len: {type: grid, values: [10, 20]}
  hidden_size: 32
  batch_size: 16
"""


def test_grid_space(tmp_path: Path) -> None:
    space = load_space(str(write_space(tmp_path, GRID_DOC)))
    assert space.sampler == "grid"
    assert space.is_grid
    assert space.grid_size() == 3 * 2 * 2
    assert space.scheduler == "none"  # a grid runs every point in full by default
    assert {p.name: p.choices for p in space.params} == {
        "cell": ("rnn", "lstm", "gru"), "head_depth": (0, 1), "seq_len": (10, 20)}
    assert space.fixed == {"hidden_size": 32, "batch_size": 16}
    assert optuna_distributions(space) == {}  # nothing for a sampler
    assert grid_param_space(space) == {
        "cell": {"grid_search": ["rnn", "lstm", "gru"]},
        "head_depth": {"grid_search": [0, 1]},
        "seq_len": {"grid_search": [10, 20]},
    }


def test_grid_mixed_with_sampled_params_is_rejected(tmp_path: Path) -> None:
    doc = GRID_DOC.replace("head_depth: {type: grid, values: [0, 1]}", "head_depth: {type: int, low: 0, high: 1}")
    path = write_space(tmp_path, doc)
    with pytest.raises(UserError) as info:
        load_space(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "params.head_depth.type" in message and "'int'" in message and "grid" in message


def test_grid_with_a_non_grid_sampler_is_rejected(tmp_path: Path) -> None:
    path = write_space(tmp_path, "sampler: tpe\n" + GRID_DOC)
    with pytest.raises(UserError) as info:
        load_space(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "sampler" in message and "'tpe'" in message


def test_scheduler_metric_sets_what_rays_asha_ranks_by(tmp_path: Path) -> None:
    mo = {"objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}]}
    doc = changed(lambda d: d.pop("objective") and d.update(mo, scheduler="asha_first",
                                                            scheduler_metric={"metric": "val_loss"}))
    space = load_space(str(write_space(tmp_path, doc)))
    assert (space.asha_objective.metric, space.asha_objective.mode) == ("val_loss", "min")
    assert space.objective.metric == "val_acc"
    plain = load_space(str(write_space(tmp_path, changed(lambda d: d.update(mo, scheduler="asha_first") or
                                                         d.pop("objective")), name="plain.yaml")))
    assert plain.scheduler_metric is None and plain.asha_objective == plain.objective


# --- invalid documents -----------------------------------------------------------------------------------------


def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d[section][key] = value
    return edit


def _param(name: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["params"][name] = {**d["params"][name], **changes}
    return edit


def _fixed_hidden_zero(d: dict[str, Any]) -> None:
    d["params"]["hidden_size"] = 0


def _cell_last_with_bad_first_choice(d: dict[str, Any]) -> None:
    d["params"].pop("cell")
    d["params"]["cell"] = {"type": "categorical", "choices": ["transformer", "rnn"]}


# (document, key the message must name, value (as repr) the message must name after the key)
INVALID: dict[str, tuple[Any, str, str]] = {
    "unknown top-level key": (changed(lambda d: d.update(colour="red")), "colour", "'red'"),
    "unknown param key": (changed(_set("params", "embed_size", 32)), "params.embed_size", "32"),
    "unknown distribution key": (changed(_param("seq_len", lowest=5)), "params.seq_len.lowest", "5"),
    "unknown distribution type": (changed(_param("seq_len", type="normal")), "params.seq_len.type", "'normal'"),
    "wrong type for a bound": (changed(_param("seq_len", low="a")), "params.seq_len.low", "'a'"),
    "non-integer bound for int": (changed(_param("seq_len", low=10.5)), "params.seq_len.low", "10.5"),
    "low greater than high": (changed(_param("seq_len", low=40, high=30)), "params.seq_len.low", "40"),
    "log with low <= 0": (changed(_param("lr", low=0.0)), "params.lr.low", "0.0"),
    "log not a bool": (changed(_param("lr", log="yes")), "params.lr.log", "'yes'"),
    "NaN bound": (changed(_param("lr", low=float("nan"))), "params.lr.low", "nan"),
    "infinite bound": (changed(_param("lr", high=float("inf"))), "params.lr.high", "inf"),
    "empty choices": (changed(_param("cell", choices=[])), "params.cell.choices", "[]"),
    "unknown cell type": (changed(_param("cell", choices=["rnn", "transformer"])), "params.cell", "'transformer'"),
    "unknown cell type, cell listed last": (changed(_cell_last_with_bad_first_choice), "params.cell", "'transformer'"),
    "num_layers low 0": (changed(_param("num_layers", low=0)), "params.num_layers", "0"),
    "hidden_size fixed 0": (changed(_fixed_hidden_zero), "hidden_size", "0"),
    "seq_len low 1": (changed(_param("seq_len", low=1)), "params.seq_len", "1"),
    "grace_iters > max_iters": (changed(_set("budget", "grace_iters", 5)), "budget.grace_iters", "5"),
    "objective metric not reported": (changed(_set("objective", "metric", "val_f1")), "objective.metric", "'val_f1'"),
    "objective mode": (changed(_set("objective", "mode", "lowest")), "objective.mode", "'lowest'"),
    "num_samples 0": (changed(lambda d: d.update(num_samples=0)), "num_samples", "0"),
    "scheduler_metric not reported": (changed(lambda d: d.update(scheduler_metric={"metric": "val_f1"})),
                                      "scheduler_metric.metric", "'val_f1'"),
    "scheduler_metric with MO-ASHA": (changed(lambda d: d.update(
        objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}],
        scheduler_metric={"metric": "val_loss"}) or d.pop("objective")), "scheduler_metric", "'val_loss'"),
    "scheduler_metric without ASHA": (changed(lambda d: d.update(scheduler="none", scheduler_metric={})),
                                      "scheduler_metric", "{}"),
    "unknown sampler": (changed(lambda d: d.update(sampler="cmaes")), "sampler", "'cmaes'"),
    "cost_anchor not a bool or families": (changed(lambda d: d.update(cost_anchor="off")), "cost_anchor", "'off'"),
    "cost_anchor a number": (changed(lambda d: d.update(cost_anchor=1)), "cost_anchor", "true, false or families"),
    "missing params": (changed(lambda d: d.pop("params")), "params", "None"),
    "malformed YAML": ("params: [unclosed\n", "malformed YAML", "line 2"),
    "non-UTF-8 bytes": (b"description: caf\xe9\nparams:\n  cell: {type: categorical, choices: [rnn]}\n\xff\xfe\n",
                        "UTF-8", ""),
}


@pytest.mark.parametrize(("doc", "key", "value"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_space_is_one_line_naming_file_key_and_value(tmp_path: Path, doc: Any, key: str, value: str) -> None:
    path = write_space(tmp_path, doc, name="bad-space.yaml")
    with pytest.raises(UserError) as info:
        load_space(str(path))
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    assert key in message, f"expected key {key!r} in: {message}"
    after_key = message.split(key, 1)[1]
    assert value in after_key, f"expected value {value!r} after {key!r} in: {message}"


def test_yaml_bounds_parse_as_yaml_nan_and_inf(tmp_path: Path) -> None:
    """The NaN/inf cases above are dumped as YAML's own .nan and .inf; check the spelling reaches the checker."""
    for spelling, shown in ((".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf")):
        text = yaml.safe_dump(BASE, sort_keys=False).replace("high: 0.03", f"high: {spelling}")
        assert spelling in text
        path = write_space(tmp_path, text)
        with pytest.raises(UserError) as info:
            load_space(str(path))
        assert f"params.lr.high={shown} " in str(info.value)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("params:\n  lr: {type: float, low: 0.001, high: 0.01}\n  lr: 0.1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"dup.yaml: malformed YAML at line 3.*duplicate key 'lr'"):
        load_space(str(path))


def alias_bomb(depth: int) -> str:
    """A "billion laughs" document: each level a list of nine aliases to the level below (9**depth strings)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, depth + 1)]
    return "\n".join(lines) + f"\nparams: {{cell: *a{depth}}}\n"


@pytest.mark.parametrize(("text", "expected"), [
    (alias_bomb(9), "more than 10,000 values once aliases"),
    ("params:\n" + "".join(f"  c{i}: &c{i} rnn\n" for i in range(101))
     + "  x: [" + ", ".join(f"*c{i}" for i in range(101)) + "]\n", "more than 100 alias uses"),
    ("params: {cell: " + "[" * 60 + "]" * 60 + "}\n", "nested deeper than 50 levels"),
    ("params: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 50 levels"),
    ("a: &a [[[[[[[[[[x]]]]]]]]]]\nb: &b [[[[[[[[[[*a]]]]]]]]]]\nc: &c [[[[[[[[[[*b]]]]]]]]]]\n"
     "d: &d [[[[[[[[[[*c]]]]]]]]]]\ne: &e [[[[[[[[[[*d]]]]]]]]]]\nf: [[[[[[[[[[*e]]]]]]]]]]\n",
     "nested deeper than 50 levels once aliases"),
    ("a: &a [1, *a]\n", "an alias (*name) inside the node it refers to"),
])
def test_yaml_past_the_bounds_is_refused_fast_in_one_short_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write_space(tmp_path, text, "big.yaml")
    with pytest.raises(UserError) as info:
        load_space(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: refused: ") and expected in message
    assert "\n" not in message and len(message) < 200 + len(str(path))


def test_a_long_value_is_quoted_cut_short(tmp_path: Path) -> None:
    path = write_space(tmp_path, changed(lambda d: d["params"].update(cell=["x" * 1000] * 50)))
    with pytest.raises(UserError, match=r"params\.cell=\['xxx.*…") as info:
        load_space(str(path))
    assert len(str(info.value)) < 300


def test_a_long_fixed_value_is_quoted_cut_short_by_the_trainers_check_too() -> None:
    from tuning.engine.config import TrainConfig

    with pytest.raises(UserError) as info:
        TrainConfig.from_dict({"cell": "x" * 10_000})
    assert len(str(info.value)) < 200 and "…" in str(info.value)


@pytest.mark.parametrize(("value", "shown"), [
    ("lr", "'lr'"), ([1, 2], "[1, 2]"), ({"a": 1}, "{'a': 1}"), ((1,), "(1,)"), (1.5, "1.5"), (None, "None"),
])
def test_quote_is_repr_when_short(value: Any, shown: str) -> None:
    assert quote(value) == shown == repr(value)


def test_quote_cuts_any_value_to_the_limit() -> None:
    nested: Any = "x" * 1000
    for _ in range(30):
        nested = [nested, nested, {"k" * 100: nested}]
    for value in ("y" * 10**6, list(range(10**5)), nested):
        text = quote(value)
        assert len(text) == 80 and text.endswith("…")


@pytest.mark.parametrize(("text", "expected"), [
    ("params: {[1, 2]: x}\n", "malformed YAML at line 1, column 10: a key that is a list"),
    ("params: {{a: 1}: x}\n", "a key that is a dict"),
    ("params: {1: a, cell: rnn}\n", "params key=1 is invalid: a name; allowed: cell, "),
    ("{1: a, b: c}\n", "key=1 is invalid: a name; allowed: description, "),
    ("params:\n  cell: {type: categorical, choices: [rnn], 3: x}\n", "params.cell key=3 is invalid: a name"),
])
def test_keys_that_are_not_names_are_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write_space(tmp_path, text, "keys.yaml")
    with pytest.raises(UserError, match="keys.yaml: ") as info:
        load_space(str(path))
    assert expected in str(info.value)


def test_merge_keys_give_defaults_that_the_mapping_overrides(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace(
        "  seq_len:\n", "  seq_len: &ints\n").replace(
        "  hidden_size:\n    type: int\n", "  hidden_size:\n    <<: *ints\n")
    assert "<<: *ints" in text
    space = load_space(str(write_space(tmp_path, text)))
    hidden = next(p for p in space.params if p.name == "hidden_size")
    assert (hidden.type, hidden.low, hidden.high, hidden.log) == ("int", 16, 64, True)
    merged = "params:\n  seq_len: &s {type: int, low: 10, high: 30}\n  embed_dim: {<<: *s, low: 8, low: 9}\n"
    with pytest.raises(UserError, match="duplicate key 'low'"):
        load_space(str(write_space(tmp_path, merged, "dup.yaml")))


def test_exponent_without_a_point_gets_a_hint(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-4 (no decimal point) as text; say so instead of only "not a number".
    path = tmp_path / "exp.yaml"
    path.write_text("params:\n  lr: {type: float, low: 1e-4, high: 1.0e-2, log: true}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"params.lr.low='1e-4' is invalid: a number, not a string .*1.0e-4"):
        load_space(str(path))
