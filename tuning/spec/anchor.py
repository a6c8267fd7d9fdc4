"""The cost anchor: a multi-objective search that minimises a model's cost trains the space's cheapest model first.

A front of accuracy against cost is bounded on its cheap side by the smallest model the space allows, and that model
is the one a sampler is least likely to draw (every size parameter must sit at its low end at once). Training it
first tells the user at once what the floor of the trade-off is (and it costs the least wall time of any trial),
and it gives the sampler and MO-ASHA's rungs a point at the cheap end from the start. It is the cost objective's own
optimum, an "anchor point" of the front in Das and Dennis's (1998) normal-boundary intersection; NSGA-II likewise
always keeps a front's extreme points (their crowding distance is infinite, Deb et al. 2002).

Only the parameters that change the model's size are fixed; the rest (learning rate, dropout, sequence length,
batch size, …) the sampler draws as for any trial, so the anchor is the cheapest *architecture*, trained the way the
search would train it.

``cost_anchor: families`` anchors every family's cheap end, not only the space's: the cheapest model with each choice
of each categorical parameter that changes the model's size (in ``shakespeare`` the cell: the smallest RNN, GRU and
LSTM), cheapest first. A front over several families is the union of their fronts; the cheapest RNN bounds it but is
the least accurate, and the next point along it is usually the smallest gated cell. A single anchor leaves that point
to the sampler and the rungs: in the 45-minute benchmark (benchmarks/multiobjective-abc-amd-2700s.md) two seeds in
three completed no second trial until 35 M and 56 M characters, against random search's 21 M and 37 M (a third of its
compute), though their fronts then passed random search's. MO-ASHA (both types) records an anchor at every rung but
never stops it there (:mod:`tuning.tune.schedulers.mo_asha`): only completed trials are on the front, and under
``ceil(n / rf)`` the second and third anchors, arriving just after the first at a rung of two or three trials, would
stop.
"""

from __future__ import annotations

from typing import Any

from tuning.engine.config import TrainConfig
from tuning.engine.model import CharLM, count_parameters
from tuning.errors import UserError
from tuning.spec.space import SearchSpace

# Costs a trial knows before it trains (tuning.engine.complexity): the anchor applies when one of them is minimised.
# inference_latency_ms is measured at the end of a trial, and depends on the machine, so it does not count.
PRETRAINING_COSTS = ("flops_per_char", "train_flops_per_char", "macs_per_char", "params")
# Any vocabulary orders the architectures the same way (it only scales the embedding and the output layer);
# Tiny Shakespeare's 65 characters keep the sizes realistic.
_VOCAB = 65


def wants_anchor(space: SearchSpace) -> bool:
    """Whether a search of ``space`` starts with its cheapest model(s): several objectives, one of them a pre-training
    cost minimised, a model-based sampler (``random`` stays an unbiased sample, ``grid`` a grid) and the space's
    ``cost_anchor`` on (``--cost-anchor``). Off by default: in the 45-minute multi-objective benchmark
    (benchmarks/multiobjective-anchor-2700s.md) the anchored search reached random search's final front at once on
    the seed where the anchor alone beat it, but on another it completed 2 trials and ended below random search."""
    return (space.cost_anchor != "off" and space.is_multi_objective and space.sampler in ("tpe", "nsga2")
            and any(o.metric in PRETRAINING_COSTS and o.mode == "min" for o in space.objectives))


def anchor_points(space: SearchSpace) -> list[dict[str, Any]]:
    """What a search of ``space`` trains first, in this order: none unless :func:`wants_anchor`; else
    :func:`cheapest_point`, or with ``cost_anchor: families`` :func:`family_points`. The one rule the searcher, the
    search's stderr line and the experiment's meta all follow."""
    if not wants_anchor(space):
        return []
    return family_points(space) if space.cost_anchor == "families" else [cheapest_point(space)]


def _size(config: dict[str, Any]) -> int | None:
    try:
        return count_parameters(CharLM(TrainConfig.from_dict(config).model_config(_VOCAB)))
    except (UserError, ValueError):  # a combination the trainer refuses: not a candidate
        return None


def cheapest_point(space: SearchSpace, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The size-setting parameters of the space's smallest model, e.g. ``{cell: rnn, hidden_size: 32, …}``; with
    ``given`` (say ``{cell: gru}``), the smallest model that has those values.

    Size is the parameter count. It orders these models as their FLOPs do: every weight outside the embedding is one
    multiply-accumulate per character (:func:`tuning.engine.complexity.recurrent_macs_per_step`), and the embedding
    grows with ``embed_dim`` as the first layer's input weights do. Coordinate by coordinate, in the space's order, each
    parameter takes the bound (or choice) that makes the model smallest, the others at their low bounds or at the
    values chosen before it; a parameter whose bounds give the same size (learning rate, dropout, ``seq_len``, …)
    is left out, for the sampler.
    Pure: builds a few models on the CPU, trains nothing.
    """
    given = dict(given or {})
    base = {**space.base_config(), **{p.name: p.corners()[0] for p in space.params}, **given}
    point: dict[str, Any] = {}
    for param in space.params:
        if param.name in given:
            point[param.name] = given[param.name]
            continue
        sizes = {i: _size({**base, param.name: value}) for i, value in enumerate(param.corners())}
        known = {i: s for i, s in sizes.items() if s is not None}
        if len(set(known.values())) < 2:
            continue  # the size does not depend on it
        best = param.corners()[min(known, key=lambda i: (known[i], i))]
        point[param.name] = best
        base[param.name] = best
    return point


def family_points(space: SearchSpace) -> list[dict[str, Any]]:
    """The cheapest model of every family, smallest first, the space's cheapest model among them: for each
    categorical parameter that changes the size of the space's cheapest model, :func:`cheapest_point` given each of
    its choices. Distinct points only, and none the trainer refuses. Pure, as :func:`cheapest_point`."""
    cheapest = cheapest_point(space)
    sized: list[tuple[int, dict[str, Any]]] = [(_size({**space.base_config(), **cheapest}) or 0, cheapest)]
    for param in space.params:
        if param.type != "categorical" or param.name not in cheapest:
            continue
        for choice in param.corners():
            point = cheapest_point(space, {param.name: choice})
            size = _size({**space.base_config(), **point})
            if size is not None and all(point != p for _, p in sized):
                sized.append((size, point))
    return [p for _, p in sorted(sized, key=lambda sp: sp[0])]  # sorted is stable: equal sizes keep their order
