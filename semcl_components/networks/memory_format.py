"""The memory format of a workflow's network and batches: PyTorch's default (contiguous) or channels-last.

With ``channels_last`` the 5-D weights of the network (its 3-D convolutions, ``[O, I, kX, kY, kZ]``) and every batch
``[B, C, X, Y, Z]`` the trainer or evaluator hands it are stored in ``torch.channels_last_3d`` (channels innermost).
The arithmetic is the same; only the order of the values in memory changes, which lets the CPU's convolution kernels
(oneDNN) skip reordering every input and weight, and may change the order of floating-point sums (results equal
within float rounding). Checkpoints hold the same values either way: ``load_state_dict`` copies into each parameter
whatever its layout, so a model trained in one format loads into a network in the other.

Example (in a workflow config)::

    network:
      _target_: semcl_components.networks.network_on_device
      _requires_: '@semcl_components'
      network: '@network_def'
      device: '@device'
      channels_last: '$@settings.channels_last'
    # SupervisedTrainer / SupervisedEvaluator
    to_kwargs:
      _target_: semcl_components.networks.batch_to_kwargs
      _requires_: '@semcl_components'
      channels_last: '$@settings.channels_last'
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["batch_to_kwargs", "network_on_device"]


def network_on_device(network: nn.Module, device: torch.device | str, channels_last: bool = False) -> nn.Module:
    """``network`` moved to ``device`` in place (the same module and parameters, as ``nn.Module.to`` returns), its
    4-D and 5-D parameters and buffers in channels-last order when ``channels_last``.

    Args:
        network: any module (a 3-D network's convolution weights are ``[O, I, kX, kY, kZ]``).
        device: where it runs.
        channels_last: store the 5-D tensors as ``torch.channels_last_3d`` (4-D ones as ``torch.channels_last``).
    """
    if not channels_last:
        return network.to(device)
    network.to(device)
    for tensor in (*network.parameters(), *network.buffers()):
        if tensor.dim() == 5:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)
        elif tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return network


def batch_to_kwargs(channels_last: bool = False) -> dict:
    """The ``to_kwargs`` of MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator``: what their ``prepare_batch``
    passes to ``Tensor.to`` for the batch's image and label (both ``[B, C, X, Y, Z]``): channels-last order, or
    nothing (the batch as the data loader made it)."""
    return {"memory_format": torch.channels_last_3d} if channels_last else {}
