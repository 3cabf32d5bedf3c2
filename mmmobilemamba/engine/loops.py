"""Training loops that resume exactly: epoch-based ones also in the middle
of an epoch."""
import copy
from typing import Dict, List, Optional, Tuple, Union

from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader

from .data import ResumableBatchSampler


def resumable_dataloader_cfg(cfg: dict, held: bool = False) -> dict:
    """A copy of a training dataloader config whose dataset seeds every
    sample from its position (:mod:`mmmobilemamba.engine.data`) and whose
    batch sampler can start an epoch part-way.

    Args:
        cfg (dict): The dataloader config.
        held (bool): Build the ResumableBatchSampler held: it yields nothing
            until its position is set. Defaults to False.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f'a dataloader config must be a dict, got {cfg!r}')
    if 'dataset' not in cfg:
        raise ValueError(f"a dataloader config needs a 'dataset': {cfg!r}")
    cfg = copy.deepcopy(cfg)
    dataset = cfg['dataset']
    if not (isinstance(dataset, dict)
            and dataset.get('type') == 'SampleSeededDataset'):
        cfg['dataset'] = dict(type='SampleSeededDataset', dataset=dataset)
    batch_sampler = cfg.get('batch_sampler')
    if not (isinstance(batch_sampler, dict)
            and batch_sampler.get('type') == 'ResumableBatchSampler'):
        cfg['batch_sampler'] = dict(
            type='ResumableBatchSampler',
            batch_sampler=cfg.pop('batch_sampler', None),
            drop_last=cfg.pop('drop_last', False))
    if held:
        cfg['batch_sampler']['held'] = True
    return cfg


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's EpochBasedTrainLoop, plus a position inside the epoch.

    A checkpoint saved in the middle of an epoch records how many of the
    epoch's batches were trained (:attr:`next_batch`); after resuming from
    it the epoch continues with the next batch: the same batches, with the
    same augmentations, as in an uninterrupted run. The skipped batches are
    never loaded.

    Arguments are EpochBasedTrainLoop's. A dataloader config is changed by
    :func:`resumable_dataloader_cfg`.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_epochs: int,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None
                 ) -> None:
        if isinstance(dataloader, dict):
            dataloader = resumable_dataloader_cfg(dataloader)
        super().__init__(runner, dataloader, max_epochs, val_begin,
                         val_interval, dynamic_intervals)
        sampler = getattr(self.dataloader, 'batch_sampler', None)
        self._batch_sampler = sampler if isinstance(
            sampler, ResumableBatchSampler) else None
        self._next_batch = 0
        self._start_batch = 0

    @property
    def next_batch(self) -> int:
        """Index in the current epoch of the next batch to train."""
        return self._next_batch

    def resume_at(self, epoch: int, batch: int) -> None:
        """Continue with batch ``batch`` of epoch ``epoch`` (0-based)."""
        if batch and self._batch_sampler is None:
            raise RuntimeError(
                'cannot resume in the middle of an epoch: the train '
                'dataloader was given built, without a ResumableBatchSampler')
        self._epoch = int(epoch)
        self._start_batch = int(batch)

    def run_epoch(self) -> None:
        """Train one epoch, or its rest after a mid-epoch resume."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        start, self._start_batch = self._start_batch, 0
        if self._batch_sampler is not None:
            self._batch_sampler.set_position(self.runner.seed, self._epoch,
                                             start)
        self._next_batch = start
        for idx, data_batch in enumerate(self.dataloader, start=start):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
        self._next_batch = 0

    def run_iter(self, idx, data_batch) -> None:
        """One training step; :attr:`next_batch` moves on before the
        ``after_train_iter`` hooks, which may save a checkpoint."""
        self.runner.call_hook(
            'before_train_iter', batch_idx=idx, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        self._next_batch = idx + 1
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """mmengine's IterBasedTrainLoop with per-sample seeded data.

    On resume mmengine replays the dataloader up to the checkpoint's
    iteration; with augmentation seeded by position
    (:mod:`mmmobilemamba.engine.data`) the replay and everything after it
    load exactly what the uninterrupted run loaded.

    The run's seed is known only in :meth:`run` (a resume may restore it
    after the loop is built), but IterBasedTrainLoop creates its dataloader
    iterator in ``__init__``. The batch sampler is therefore held until
    :meth:`run` sets its position, so that the early iterator draws no index:
    the index sampler (mmengine's InfiniteSampler in the iteration-based
    configs) is iterated exactly once, by :meth:`run`'s iterator, whatever
    the number of workers and whether they persist.

    Arguments are IterBasedTrainLoop's. A dataloader config is changed by
    :func:`resumable_dataloader_cfg`.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None
                 ) -> None:
        if isinstance(dataloader, dict):
            dataloader = resumable_dataloader_cfg(dataloader, held=True)
        elif isinstance(getattr(dataloader, 'batch_sampler', None),
                        ResumableBatchSampler):
            dataloader.batch_sampler.hold()
        super().__init__(runner, dataloader, max_iters, val_begin,
                         val_interval, dynamic_intervals)
        dataset = self.dataloader.dataset
        if hasattr(dataset, '__len__') and len(dataset) == 0:
            # an InfiniteSampler would search for an index forever
            root = getattr(dataset, 'data_root', None)
            raise ValueError('the training dataset is empty' +
                             (f' (data_root: {root})' if root else ''))
        sampler = getattr(self.dataloader, 'batch_sampler', None)
        self._batch_sampler = sampler if isinstance(
            sampler, ResumableBatchSampler) else None

    def run(self):
        """Train; the data seeds use the run's seed, which a resume may have
        taken from the checkpoint after this loop was built."""
        if self._batch_sampler is not None:
            self._batch_sampler.set_position(self.runner.seed, 0)
            # the iterator made in __init__ drew nothing (the sampler was
            # held); with persistent workers this one reuses its workers
            self.dataloader_iterator = _InfiniteDataloaderIterator(
                self.dataloader)
        try:
            return super().run()
        except StopIteration as e:
            # what mmengine lets out when a restarted dataloader is empty
            raise RuntimeError(
                'the training dataloader yielded no batch, even after a '
                f'restart, at iteration {self._iter}: its sampler ended and '
                'yields nothing when iterated again') from e
