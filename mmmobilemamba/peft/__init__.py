"""Parameter-efficient fine-tuning of MobileMamba (docs/peft.md).

* :mod:`.lora_layers` - the adapter (a low-rank update of a weight tensor)
  and which layers take one: Conv-BN / dense convs, Linear, SS2D's x and dt
  projections;
* :mod:`.lora_model` - :class:`MobileMambaLoRA`, the wrapper model a config
  builds (target selection, what trains, adapter-only state dict);
* :mod:`.merge` - :func:`merge_lora`, adapters folded away for deployment;
* :mod:`.lora_checkpoint` - adapter-only checkpoints onto a base.
"""
from .lora_checkpoint import load_lora_checkpoint, save_lora_checkpoint
from .lora_layers import LoRAUpdate, add_lora, get_lora, iter_lora
from .lora_model import MobileMambaLoRA
from .merge import merge_lora

__all__ = [
    'LoRAUpdate', 'add_lora', 'get_lora', 'iter_lora', 'MobileMambaLoRA',
    'merge_lora', 'save_lora_checkpoint',
    'load_lora_checkpoint'
]
