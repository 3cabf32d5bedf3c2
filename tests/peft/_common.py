"""A small MobileMamba classifier for the PEFT tests and the target
patterns of the LoRA configs."""
import torch

from ..helpers import build_classifier, randomize_norms

#: The LoRA configs' targets: dense 1x1 Conv-BNs and SS2D.
CONV_PATTERN = (r'backbone\..*\.(pw1|pw2|proj|in_proj|out_proj|expand'
                r'|project)')
TARGETS = [dict(type=CONV_PATTERN), dict(type=r'backbone\..*\.ss2d',
                                         rank=2)]
# every block type (stem, blocks, downsampling, SS2D) at a tenth of T2's
# width: Cg 32 / 32 / 48, dt rank 2 / 2 / 3
TINY = dict(embed_dims=(32, 48, 80), depths=(1, 1, 1))


def tiny_classifier(seed: int = 0, num_classes: int = 5):
    """A tiny random classifier with random BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_classifier('t2', **{
        'backbone.arch': dict(TINY, _delete_=True),
        'head.in_channels': TINY['embed_dims'][-1],
        'head.num_classes': num_classes,
        'train_cfg': None,
    })
    randomize_norms(model)
    return model.eval()


def perturb_adapters(model, std: float = 0.05, seed: int = 1) -> None:
    """Give every LoRA B factor random values (a trained adapter)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('lora_B'):
                param.copy_(torch.randn(param.shape, generator=gen) * std)
