"""Exponential moving average of the weights with a warm-up of its decay."""
from typing import Optional

import torch
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class WarmupEMA(ExponentialMovingAverage):
    r"""EMA whose decay rises from small values to the configured one.

    A fixed decay of 0.9998 averages over ~5,000 iterations: in a run of a
    few hundred iterations the average is still mostly the random
    initialisation. Here update ``n`` (``n`` >= 1; the first update copies
    the weights) uses

    .. math::

        d_n = \min\left(1 - m,\ \frac{1 + n}{w + n}\right), \qquad
        \bar\theta \leftarrow d_n \bar\theta + (1 - d_n)\,\theta

    with ``m`` = ``momentum`` (mmengine's convention: ``1 - decay``) and
    ``w`` = ``warmup``. The horizon grows with training (about ``n / (w -
    1)`` updates), so a short run averages over its recent steps, and from
    ``n`` = ``(w - 1) / m - w`` on (45k updates for m = 2e-4, w = 10) the
    decay is the configured one: long runs are as without warm-up.

    Args:
        model (nn.Module): The model to average.
        momentum (float): Final ``1 - decay``. Defaults to 2e-4.
        warmup (float): ``w`` above, > 1; larger is a slower warm-up.
            Defaults to 10.
        interval (int): Update every ``interval`` calls. Defaults to 1.
        device (torch.device, optional): Where the average lives.
        update_buffers (bool): Average buffers (e.g. BN statistics) too.
    """

    def __init__(self,
                 model: torch.nn.Module,
                 momentum: float = 2e-4,
                 warmup: float = 10.0,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = False) -> None:
        super().__init__(model, momentum, interval, device, update_buffers)
        if warmup <= 1:
            raise ValueError(f'warmup must be > 1, got {warmup}')
        self.warmup = float(warmup)
        self._current_momentum = momentum

    def momentum_at(self, steps: int) -> float:
        """``1 - d_n`` for update number ``steps`` (>= 1)."""
        decay = min(1.0 - self.momentum,
                    (1.0 + steps) / (self.warmup + steps))
        return 1.0 - decay

    def update_parameters(self, model: torch.nn.Module) -> None:
        # one host read of the step count per update, not one per tensor
        self._current_momentum = self.momentum_at(int(self.steps))
        super().update_parameters(model)

    def avg_func(self, averaged_param: Tensor, source_param: Tensor,
                 steps: int) -> None:
        averaged_param.lerp_(source_param, self._current_momentum)
