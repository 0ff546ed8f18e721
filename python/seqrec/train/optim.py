"""Adam that updates only the rows a sparse gradient touches (for item tables with sparse gradients)."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam for a mix of dense parameters and embedding tables with row-sparse gradients.

    Dense gradients get the standard Adam update (torch's formula; ``decoupled`` weight decay is AdamW's).
    A sparse gradient updates only its rows: their moments, their weight decay and their parameters; rows
    no batch touched stay bit-identical and their moments do not decay (the "lazy" Adam of TensorFlow
    Addons and torch's ``SparseAdam``). We write our own instead of pairing ``SparseAdam`` with ``Adam``
    because one optimiser object keeps Lightning's automatic optimisation, checkpoints and schedulers as
    they are, and ``SparseAdam`` has no weight decay. Bias correction counts the steps of the whole
    parameter, as ``SparseAdam`` does.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"bad LazyAdam settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled=decoupled))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, decoupled = group["weight_decay"], group["decoupled"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"]
                bias1, bias2 = 1 - beta1**step, 1 - beta2**step
                step_size = lr / bias1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()  # tied tables get two sparse parts for the same rows
                    rows, values = grad.indices()[0], grad.values()
                    if rows.numel() == 0:
                        continue
                    w = p[rows]
                    if wd and decoupled:
                        w.mul_(1 - lr * wd)
                    elif wd:
                        values = values + wd * w
                    mr = m[rows].lerp_(values, 1 - beta1)
                    vr = v[rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
                    m[rows], v[rows] = mr, vr
                    denom = (vr.sqrt() / math.sqrt(bias2)).add_(eps)
                    p[rows] = w.addcdiv_(mr, denom, value=-step_size)
                    continue
                grad = p.grad
                if wd and decoupled:
                    p.mul_(1 - lr * wd)
                elif wd:
                    grad = grad.add(p, alpha=wd)
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(bias2)).add_(eps)
                p.addcdiv_(m, denom, value=-step_size)
        return loss
