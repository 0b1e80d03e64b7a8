"""`vfm3d.utils.optim`: fused AdamW where possible, same updates, checkpoints interchangeable."""

from __future__ import annotations

import copy

import torch

from vfm3d.utils.optim import adamw, fused_supported, load_optimizer_state


def _params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(*shape, generator=gen))
        for shape in [(7, 5), (3,), (2, 4, 3)]
    ]


def _steps(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def test_fused_on_cpu_and_same_updates_as_the_default_loop() -> None:
    fused_params, loop_params = _params(0), _params(0)
    fused = adamw(fused_params, lr=1e-2, weight_decay=0.1)
    loop = torch.optim.AdamW(loop_params, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    assert fused.param_groups[0]["fused"] is True
    assert not loop.param_groups[0]["fused"]
    _steps(fused, fused_params, 5, seed=1)
    _steps(loop, loop_params, 5, seed=1)
    for a, b in zip(fused_params, loop_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_integer_or_empty_parameters_fall_back() -> None:
    assert not fused_supported([])
    assert not fused_supported([torch.zeros(3, dtype=torch.int64)])
    assert fused_supported([torch.zeros(3)])


def test_a_loop_state_loads_into_a_fused_optimizer_and_stays_fused() -> None:
    """A checkpoint written by the default loop resumes on the fused kernel (and the other way),
    continuing exactly as the writer would have."""
    params_a, params_b = _params(2), _params(2)
    writer = torch.optim.AdamW(params_a, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05)
    _steps(writer, params_a, 3, seed=3)
    with torch.no_grad():
        for a, b in zip(params_a, params_b, strict=True):
            b.copy_(a)
    reader = adamw(params_b, lr=1e-2)
    load_optimizer_state(reader, copy.deepcopy(writer.state_dict()))  # as read from a file
    assert reader.param_groups[0]["fused"] is True
    assert float(reader.state[params_b[0]]["step"]) == 3.0
    _steps(writer, params_a, 2, seed=4)
    _steps(reader, params_b, 2, seed=4)
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    back = torch.optim.AdamW(_params(2), lr=1e-2)
    load_optimizer_state(back, reader.state_dict())
    assert not back.param_groups[0]["fused"]
