"""`benchmarks/bench_probe.py` counts the FLOPs of torch's CPU flash-attention kernels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


def _bench_probe():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_probe.py"
    spec = importlib.util.spec_from_file_location("bench_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_flash_attention_flops_are_counted() -> None:
    """Forward: two products of ``2 L S E`` FLOPs per (batch, head); backward 2.5x that (score
    recompute + four products), written out here from the SDPA algebra, not from torch."""
    _bench_probe().count_cpu_attention()
    _bench_probe().count_cpu_attention()  # idempotent: a second registration is no error
    b, h, length, source, e = 2, 3, 50, 40, 16
    q = torch.randn(b, h, length, e, requires_grad=True)
    k = torch.randn(b, h, source, e, requires_grad=True)
    v = torch.randn(b, h, source, e, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    product = 2 * b * h * length * source * e
    assert by_op["aten._scaled_dot_product_flash_attention_for_cpu"] == 2 * product
    assert by_op["aten._scaled_dot_product_flash_attention_for_cpu_backward"] == 5 * product
