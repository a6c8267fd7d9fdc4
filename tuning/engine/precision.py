"""Whether a device can train in a given precision.

``precision: bf16`` runs the training forward pass under bfloat16 autocast. On a GPU that is routine; on a CPU,
PyTorch hands a bfloat16 ``nn.LSTM`` (and GRU, RNN) to oneDNN, which builds that primitive only where the CPU
has the instructions for it (AVX-512 or AMX). Elsewhere every step fails with "could not create a primitive
descriptor for the LSTM forward propagation primitive" (seen on a 2-core CI machine, torch 2.13.0 CPU build,
2026-12-06, where the same tests pass on an AMD EPYC and an Intel Xeon with AVX-512). CPU flags are only a
proxy for what oneDNN accepts, so :func:`supports` asks it: one tiny training step of each cell type.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

from tuning.errors import UserError

CELLS: tuple[type[nn.RNN] | type[nn.LSTM] | type[nn.GRU], ...] = (nn.RNN, nn.LSTM, nn.GRU)


@functools.cache
def supports(precision: str, device_type: str) -> bool:
    """True when every cell type trains a step on ``device_type`` ('cpu', 'cuda') in ``precision``."""
    if precision == "fp32":
        return True
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}")
    device = torch.device(device_type)
    try:
        for cell in CELLS:
            rnn = cell(4, 4, batch_first=True).to(device)
            x = torch.zeros(1, 2, 4, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out, _ = rnn(x)
            out.float().sum().backward()
    except RuntimeError:
        return False
    return True


def check(precision: str, device: torch.device) -> None:
    """Raise a one-line UserError when ``device`` cannot train in ``precision``."""
    if supports(precision, device.type):
        return
    from tuning.machine import cpu_model

    where = f"this CPU ({cpu_model()})" if device.type == "cpu" else f"this {device.type} device"
    raise UserError(f"precision={precision} is not supported on {where}: PyTorch cannot build a bfloat16 "
                    "RNN/LSTM/GRU here (on a CPU oneDNN needs AVX-512 or AMX); use precision fp32, or a GPU")
