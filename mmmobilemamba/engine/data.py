"""Training data whose randomness depends only on where a sample sits in
training, so a resumed run loads exactly the batches an uninterrupted one
would.

Stock PyTorch/mmengine data loading draws augmentation randomness from each
worker's generators, seeded once per worker (mmengine's ``worker_init_fn``):
what an image gets depends on which worker loaded it and on everything that
worker loaded before. A run resumed mid-epoch, or with persistent workers
after any epoch, therefore augments differently. Here the batch sampler tags
every index with a seed derived from (base seed, epoch, rank, position in
the epoch) and the dataset reseeds the CPU generators from it before loading
that sample. Augmentations are then the same whatever the number of
workers, whether they persist, and where training was resumed.
"""
import copy
from typing import Iterator, List, Optional, Tuple

import torch.utils.data
from mmengine.dist import get_rank
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import BatchSampler, Sampler

from .rng import (capture_cpu_state, derive_seed, restore_cpu_state,
                  seed_cpu_generators)


@DATASETS.register_module()
class SampleSeededDataset:
    """Wraps a dataset; ``dataset[(index, seed)]`` loads ``index`` with the
    CPU generators seeded by ``seed``.

    A plain ``dataset[index]`` loads as the wrapped dataset would. Attributes
    that the wrapper lacks (``metainfo``, ``get_data_info``, ...) come from
    the wrapped dataset.

    Args:
        dataset (dict | Dataset): The dataset or its config.
    """

    def __init__(self, dataset) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, seed = item
        if torch.utils.data.get_worker_info() is not None:
            seed_cpu_generators(seed)
            return self.dataset[index]
        # loading in the training process: leave its generators as they were
        saved = capture_cpu_state()
        try:
            seed_cpu_generators(seed)
            return self.dataset[index]
        finally:
            restore_cpu_state(saved)

    def __getattr__(self, name):
        # not for dunders (pickle, copy) nor before __init__ has run
        if name.startswith('__') or name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.dataset!r})'


@DATA_SAMPLERS.register_module()
class ResumableBatchSampler(Sampler):
    """Batches of ``(index, seed)`` pairs, able to start an epoch part-way.

    It wraps the batch sampler a config asks for (or torch's BatchSampler)
    and changes neither which indices are drawn nor how they are grouped.

    Args:
        sampler (Sampler): The index sampler (built by the Runner).
        batch_size (int): Images per batch.
        batch_sampler (dict, optional): Config of the batch sampler to wrap
            (``sampler`` and ``batch_size`` are filled in). None: torch's
            BatchSampler.
        drop_last (bool): For torch's BatchSampler. Defaults to False.
        held (bool): Start held (see :meth:`hold`). Defaults to False.
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: int,
                 batch_sampler: Optional[dict] = None,
                 drop_last: bool = False,
                 held: bool = False) -> None:
        if not isinstance(held, bool):
            raise TypeError(f'held must be a bool, got {held!r}')
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(
                copy.deepcopy(batch_sampler),
                default_args=dict(sampler=sampler, batch_size=batch_size))
        # DistSamplerSeedHook reaches the sampler's set_epoch through here
        self.sampler = sampler
        self.batch_size = batch_size
        self.rank = get_rank()
        self.seed = 0
        self.epoch = 0
        self._skip = 0
        self._held = held

    @property
    def held(self) -> bool:
        """Whether iterating yields nothing until :meth:`set_position`."""
        return self._held

    def hold(self) -> None:
        """Yield no batch, and draw nothing from the index sampler, until
        the next :meth:`set_position`.

        For a loop that must create a dataloader iterator before it knows
        the run's seed (mmengine's IterBasedTrainLoop does in ``__init__``,
        before a resume restores the seed). Indices drawn by such an early
        iterator (a worker's prefetch) cannot be given back, and with
        mmengine's InfiniteSampler they cannot even be drawn again: all its
        iterators share one index generator, which ends for good once any
        started iterator over it is closed.
        """
        self._held = True

    def set_position(self, seed: int, epoch: int, skip: int = 0) -> None:
        """Set the base seed and epoch of the next pass, and how many of its
        first batches to leave out (they were trained before a resume).
        Releases a :meth:`hold`."""
        if int(skip) < 0:
            raise ValueError(f'skip must be >= 0, got {skip}')
        self.seed = int(seed)
        self.epoch = int(epoch)
        self._skip = int(skip)
        self._held = False

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        # decided when the iterator is made: a DataLoader may make one and
        # start it only later
        if self._held:
            return iter(())
        return self._batches()

    def _batches(self) -> Iterator[List[Tuple[int, int]]]:
        # the skip is taken by the first iterator that starts: a
        # multi-process DataLoader makes one it never starts before the one
        # it uses
        skip, self._skip = self._skip, 0
        # the sampler's own epoch tells apart the passes of an iteration-
        # based loop, which does not call set_position between them
        pass_id = getattr(self.sampler, 'epoch', 0)
        position = 0
        for i, batch in enumerate(self.batch_sampler):
            if i >= skip:
                yield [(int(index),
                        derive_seed(self.seed, self.epoch, pass_id,
                                    self.rank, position + j))
                       for j, index in enumerate(batch)]
            position += len(batch)

    def __len__(self) -> int:
        return len(self.batch_sampler)
