"""BatchNorm1d + Linear head (docs/architecture.md#head).

Unlike mmpretrain 1.2.0's LeViTClsHead (which raises with ``deploy=True``),
this head can be built in its fused form (the BatchNorm folded into the
Linear by :func:`mmmobilemamba.deploy.convert`), so a checkpoint written by
``tools/deployment/fuse_bn.py`` loads with
``--cfg-options model.head.deploy=True``.

Key names are fixed: ``bn.*`` and ``fc.*`` (unfused), ``fc.*`` (fused).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead


class BNLinearClsHead(ClsHead):
    """Classifier: BatchNorm1d over the pooled feature, then a Linear layer.

    The Linear weight starts truncated-normal (std 0.02), its bias at 0, the
    BatchNorm at weight 1, bias 0.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the (pooled) input feature.
        deploy (bool): Build the fused form (BN folded into the Linear).
            Defaults to False.
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (the initialisation above is done at construction).
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of
            :class:`mmpretrain.models.heads.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive '
                             'integer')
        if in_channels <= 0:
            raise ValueError(f'in_channels={in_channels} must be a positive '
                             'integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.deploy = deploy
        # fused: the BatchNorm lives in fc (and in no state_dict key)
        self.bn = nn.Identity() if deploy else nn.BatchNorm1d(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The pooled feature of the last stage (the same in both forms)."""
        return feats[-1]

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        x = self.pre_logits(feats)
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f'BNLinearClsHead expects pooled (B, '
                             f'{self.in_channels}) features, got '
                             f'{tuple(x.shape)}; put a GlobalAveragePooling '
                             'neck before it')
        return self.fc(self.bn(x))
