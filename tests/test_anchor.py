"""Tests for tuning.spec.anchor: which searches start with the cheapest model(s), and that they are the cheapest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from tuning.engine.config import TrainConfig
from tuning.engine.model import CharLM, count_parameters
from tuning.errors import UserError
from tuning.spec.anchor import anchor_points, cheapest_point, family_points, wants_anchor
from tuning.spec.space import Objective, load_space
from tuning.tune import driver as search
from tuning.tune.searcher import make_searcher, optuna_distributions

HERE = Path(__file__).parent
ACC, FLOPS = Objective("val_acc_last", "max"), Objective("train_flops_per_char", "min")


def _size(space_config: dict[str, object]) -> int:
    return count_parameters(CharLM(TrainConfig.from_dict(space_config).model_config(65)))


def test_cheapest_point_of_the_builtin_spaces() -> None:
    # every size parameter at the end that makes the model smallest; lr, dropout, seq_len, batch size left free
    assert cheapest_point(load_space("shakespeare")) == {
        "cell": "rnn", "embed_dim": 16, "hidden_size": 32, "num_layers": 1, "head_depth": 0}
    assert cheapest_point(load_space("smoke")) == {"cell": "rnn", "hidden_size": 16}


def test_no_sampled_model_is_smaller_than_the_anchor() -> None:
    space = load_space("shakespeare")
    point = cheapest_point(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    distributions = optuna_distributions(space)
    for _ in range(200):
        sampled = study.ask(distributions).params
        config = {**space.base_config(), **sampled}
        assert _size({**config, **point}) <= _size(config), sampled


def test_which_searches_anchor() -> None:
    shakespeare = load_space("shakespeare")
    mo = replace(shakespeare, objectives=(ACC, FLOPS), cost_anchor="cheapest")
    assert not wants_anchor(replace(mo, cost_anchor="off"))  # off unless asked for
    assert wants_anchor(mo)
    assert wants_anchor(replace(mo, sampler="nsga2"))
    assert wants_anchor(replace(mo, objectives=(Objective("val_loss", "min"), Objective("params", "min"))))
    assert not wants_anchor(shakespeare)  # one objective: the cheapest model is no answer to it
    assert anchor_points(mo) == [cheapest_point(mo)] and anchor_points(shakespeare) == []
    assert not wants_anchor(replace(mo, sampler="random"))  # random search stays an unbiased sample
    assert not wants_anchor(replace(mo, objectives=(ACC, Objective("val_loss", "min"))))  # no cost objective
    assert not wants_anchor(replace(mo, objectives=(ACC, Objective("params", "max"))))  # a cost, but maximised
    assert not wants_anchor(replace(mo, objectives=(ACC, Objective("inference_latency_ms", "min"))))  # known late


def test_the_searchers_first_trial_is_the_anchor_and_the_rest_are_drawn() -> None:
    space = replace(load_space("shakespeare"), objectives=(ACC, FLOPS), cost_anchor="cheapest")
    point = cheapest_point(space)
    searcher = make_searcher(space, 1)
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert first is not None and second is not None
    assert {k: first[k] for k in point} == point
    assert set(first) == set(second)  # the free parameters drawn by the sampler as for any trial
    assert {k: second[k] for k in point} != point
    plain = make_searcher(replace(space, cost_anchor="off"), 1).suggest("t1")
    assert plain is not None and {k: plain[k] for k in point} != point


def test_cost_anchor_flag(tmp_path: Path) -> None:
    def plan(*flags: str) -> search.Plan:
        args = ["--space", str(HERE / "spaces" / "multi.yaml"), "--storage-path", str(tmp_path), *flags]
        return search.make_plan(search.build_parser().parse_args(args))

    assert plan().space.cost_anchor == "off" and not wants_anchor(plan().space)  # off by default
    assert wants_anchor(plan("--cost-anchor").space) and plan("--cost-anchor").space.cost_anchor == "cheapest"
    assert plan("--cost-anchor", "families").space.cost_anchor == "families"
    with pytest.raises(UserError, match="--cost-anchor: invalid choice: 'every' .*'cheapest', 'families'"):
        plan("--cost-anchor", "every")


@pytest.mark.parametrize(("value", "meaning"), [("true", "cheapest"), ("false", "off"), ("families", "families")])
def test_cost_anchor_in_yaml(tmp_path: Path, value: str, meaning: str) -> None:
    text = (HERE / "spaces" / "multi.yaml").read_text()
    path = tmp_path / "anchor.yaml"
    path.write_text(text + f"cost_anchor: {value}\n")
    assert load_space(str(path)).cost_anchor == meaning


def test_family_points_of_the_builtin_spaces() -> None:
    # one per cell type, smallest first (a GRU has 3 gates, an LSTM 4), each otherwise the cheapest model
    shakespeare = load_space("shakespeare")
    rest = {"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "head_depth": 0}
    assert family_points(shakespeare) == [{"cell": c, **rest} for c in ("rnn", "gru", "lstm")]
    assert family_points(shakespeare)[0] == cheapest_point(shakespeare)
    sizes = [_size({**shakespeare.base_config(), **p}) for p in family_points(shakespeare)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert cheapest_point(shakespeare, {"cell": "lstm"}) == {"cell": "lstm", **rest}
    families = replace(shakespeare, objectives=(ACC, FLOPS), cost_anchor="families")
    assert anchor_points(families) == family_points(shakespeare)
    assert anchor_points(replace(families, sampler="random")) == []


def test_a_space_with_one_cell_type_has_one_family(tmp_path: Path) -> None:
    text = (HERE / "spaces" / "multi.yaml").read_text()
    path = tmp_path / "gru.yaml"
    path.write_text(text.replace("cell: {type: categorical, choices: [rnn, lstm, gru]}", "cell: gru"))
    assert "cell: gru" in path.read_text()
    space = load_space(str(path))
    assert family_points(space) == [cheapest_point(space)]


def test_the_searchers_first_trials_are_the_families_in_order() -> None:
    space = replace(load_space("shakespeare"), objectives=(ACC, FLOPS), cost_anchor="families")
    searcher = make_searcher(space, 1)
    firsts = [searcher.suggest(f"t{i}") for i in range(4)]
    for point, drawn in zip(family_points(space), firsts, strict=False):
        assert drawn is not None and {k: drawn[k] for k in point} == point
    assert firsts[3] is not None and firsts[3]["cell"] in ("rnn", "gru", "lstm")
