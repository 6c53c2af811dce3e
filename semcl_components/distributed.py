"""The differentiable all-gather of losses that contrast against samples from every rank.

The rank, world size, reductions and padded gathers without gradient are ``ignite.distributed`` (``idist``) and
``monai.utils.evenly_divisible_all_gather``.

Why our own differentiable all_gather: ``torch.distributed.nn.functional.all_gather`` does the job but is deprecated in
torch 2.13 (a ``FutureWarning`` on every call) in favour of a private module. The autograd function below uses only
public collectives (``all_gather`` forward, ``all_reduce`` backward) and so runs on every backend (gloo, NCCL).
"""

from __future__ import annotations

import ignite.distributed as idist
import torch
import torch.distributed as dist

__all__ = ["all_gather_with_grad"]


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sends each rank the summed gradient of its own slice.

    Every rank's loss may depend on every rank's slice, so the gradient of rank ``r``'s input is
    ``sum_over_ranks d loss_rank / d input_r``: the backward all-reduces (sums) the gradient of the gathered tensor
    and keeps the rows that came from this rank. The backward is a collective: every rank must run it.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        tensor = tensor.contiguous()
        ctx.rows = tensor.shape[0]
        ctx.rank = dist.get_rank()
        chunks = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(chunks, tensor)
        return torch.cat(chunks, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, keeping gradients.

    Args:
        tensor: ``(N, *)`` with the same shape, dtype and device type on every rank.

    Returns:
        ``(world_size * N, *)``, rank ``r``'s rows at ``[r * N, (r + 1) * N)``. Gradients flowing into any rank's
        copy are summed and returned to the rank that owns the rows. Without an initialised process group (or with
        one process) the input is returned unchanged.
    """
    if idist.get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)
