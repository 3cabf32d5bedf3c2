"""Training machinery (torch + mmengine only), registered in mmengine's root
registries so that every toolbox's configs find it:

- :class:`ResumableCheckpointHook`: atomic checkpoint writes, random states
  and the position inside an epoch in every checkpoint;
- :class:`ResumableEpochBasedTrainLoop`: resumes in the middle of an epoch;
  :class:`ResumableIterBasedTrainLoop`: the iteration-based counterpart;
- :class:`SampleSeededDataset` / :class:`ResumableBatchSampler`: data
  augmentation seeded by a sample's position in training;
- :class:`WarmupEMA`: an EMA whose decay warms up, so short runs average
  their recent weights rather than the initialisation;
- :func:`make_resumable`: switch a config's stock loop and checkpoint hook
  to the ones above.
"""
from .atomic_io import AtomicLocalBackend, atomic_write_bytes
from .checkpoint_hook import ResumableCheckpointHook
from .data import ResumableBatchSampler, SampleSeededDataset
from .ema import WarmupEMA
from .loops import (ResumableEpochBasedTrainLoop, ResumableIterBasedTrainLoop,
                    resumable_dataloader_cfg)
from .setup import make_resumable

__all__ = [
    'AtomicLocalBackend', 'atomic_write_bytes', 'ResumableCheckpointHook',
    'ResumableBatchSampler', 'SampleSeededDataset', 'WarmupEMA',
    'ResumableEpochBasedTrainLoop', 'ResumableIterBasedTrainLoop',
    'resumable_dataloader_cfg',
    'make_resumable'
]
