"""Per-sample seeding: what a sample's augmentation draws depends on its
place in training only, not on workers, persistence or a resume."""
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.dataset import InfiniteSampler
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmmobilemamba.engine import ResumableBatchSampler
from mmmobilemamba.engine.loops import resumable_dataloader_cfg


class DrawingDataset:
    """Each item draws from the three global generators, as transforms do."""

    def __len__(self):
        return 22

    def __getitem__(self, i):
        return (i, random.random(), float(np.random.rand()),
                float(torch.rand(())))


def _as_list(batch):
    return list(batch)


def _loader(num_workers, persistent=False):
    cfg = dict(
        dataset=DrawingDataset(),
        sampler=dict(type='DefaultSampler', shuffle=True, seed=3),
        batch_size=4,
        num_workers=num_workers,
        persistent_workers=persistent,
        collate_fn=_as_list)
    return Runner.build_dataloader(resumable_dataloader_cfg(cfg), seed=0)


def _epoch(loader, epoch, skip=0):
    loader.batch_sampler.sampler.set_epoch(epoch)  # as DistSamplerSeedHook
    loader.batch_sampler.set_position(seed=7, epoch=epoch, skip=skip)
    return [list(batch) for batch in loader]


def test_same_draws_with_any_workers():
    runs = []
    for workers, persistent in [(0, False), (2, False), (2, True)]:
        loader = _loader(workers, persistent)
        assert isinstance(loader.batch_sampler, ResumableBatchSampler)
        runs.append([_epoch(loader, e) for e in range(2)])
    assert runs[0] == runs[1] == runs[2]
    first, second = runs[0]
    assert len(first) == 6  # 22 / 4, last batch short
    draws = [s[1] for batch in first + second for s in batch]
    assert len(set(draws)) == len(draws)  # no two samples alike


def test_skipped_batches_are_not_loaded_and_the_rest_is_unchanged():
    loader = _loader(2, persistent=True)
    full = _epoch(loader, 1)
    rest = _epoch(loader, 1, skip=2)
    assert rest == full[2:]
    assert _epoch(loader, 1) == full  # the skip applies to one pass only
    assert len(loader) == 6


def test_loading_in_the_main_process_leaves_its_generators_alone():
    dataset = _loader(0).dataset
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(()))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    first = dataset[(3, 12345)]
    assert (random.random(), np.random.rand(), torch.rand(())) == expected
    assert dataset[(3, 12345)] == first  # the seed decides the draws
    assert dataset[(3, 12346)] != first


def test_wrapper_forwards_the_dataset_interface():
    loader = _loader(0)
    dataset = loader.dataset
    assert len(dataset) == 22
    assert dataset[5][0] == 5  # a plain index loads unseeded
    with pytest.raises(AttributeError):
        dataset.no_such_attribute


def _first_batches(batch_sampler, n=3):
    it = iter(batch_sampler)
    return [next(it) for _ in range(n)]


def test_a_held_sampler_draws_nothing_until_positioned():
    expected = _first_batches(ResumableBatchSampler(
        InfiniteSampler(DrawingDataset(), seed=0), 4))
    batches = ResumableBatchSampler(
        InfiniteSampler(DrawingDataset(), seed=0), 4, held=True)
    assert batches.held and list(batches) == [] and list(batches) == []
    batches.set_position(seed=0, epoch=0)
    assert not batches.held
    # nothing was taken from the InfiniteSampler's one index stream
    assert _first_batches(batches) == expected
    batches.hold()
    assert list(batches) == []


def test_bad_arguments_are_clear_errors():
    sampler = InfiniteSampler(DrawingDataset(), seed=0)
    with pytest.raises(TypeError, match='held'):
        ResumableBatchSampler(sampler, 4, held=1)
    with pytest.raises(ValueError, match='skip'):
        ResumableBatchSampler(sampler, 4).set_position(0, 0, skip=-1)
    with pytest.raises(TypeError, match='dict'):
        resumable_dataloader_cfg([DrawingDataset()])
    with pytest.raises(ValueError, match='dataset'):
        resumable_dataloader_cfg(dict(batch_size=2))


class _Recorder(BaseModel):
    """Trains nothing; keeps every batch it is given."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.batches = []

    def forward(self, inputs, mode='tensor'):
        self.batches.append(list(inputs))
        return dict(loss=self.w * 0)


def _as_inputs(batch):
    return dict(inputs=list(batch))


class _OneShotSampler:
    """Every index once, over all its iterators together (as mmengine's
    InfiniteSampler, which hands all its iterators one index stream)."""

    def __init__(self, dataset):
        self._size = len(dataset)
        self._indices = iter(range(self._size))

    def __iter__(self):
        return self._indices

    def __len__(self):
        return self._size


def _train_iter_based(work_dir, workers=0, persistent=False,
                      sampler='InfiniteSampler', dataset=None, built=False,
                      max_iters=14):
    """The batches a ResumableIterBasedTrainLoop trains on, 4 images each.

    ``sampler``: a registered sampler's name, or a sampler."""
    loader = dict(
        dataset=DrawingDataset() if dataset is None else dataset,
        sampler=dict(type=sampler, shuffle=True)
        if isinstance(sampler, str) else sampler,
        batch_size=4,
        num_workers=workers,
        persistent_workers=persistent,
        collate_fn=_as_inputs)
    if built:  # a DataLoader given built, as the Runner also accepts
        loader = Runner.build_dataloader(resumable_dataloader_cfg(loader),
                                         seed=0)
    model = _Recorder()
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=loader,
        train_cfg=dict(type='ResumableIterBasedTrainLoop',
                       max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=None),
        randomness=dict(seed=0),
        # one logger per Runner in this process
        experiment_name=f'iter_loop_{abs(hash(str(work_dir)))}')
    runner.train()
    # Runner and loop reference each other: left to the cyclic GC, the
    # dataloader iterator would go together with its queues, and every
    # worker would wait 5 s to be told to stop. Drop it now (torch keeps a
    # persistent-worker iterator in the DataLoader).
    runner.train_loop.dataloader_iterator = None
    runner.train_loop.dataloader._iterator = None
    return model.batches


@pytest.mark.parametrize('sampler', ['InfiniteSampler', 'DefaultSampler'])
def test_iteration_based_training_past_several_passes_with_any_workers(
        sampler, tmp_path, monkeypatch):
    # mmengine waits 2 s before restarting a finite sampler's pass
    monkeypatch.setattr('mmengine.runner.loops.time.sleep', lambda s: None)
    # 14 batches of 4 = 2.5 passes over the 22 images. mmengine's loop
    # makes a dataloader iterator in __init__, before the run's seed is
    # known; with 2 workers it would prefetch 4 batches at once.
    settings = [(0, False, False), (2, False, False), (2, True, False),
                (2, True, True)]
    runs = [_train_iter_based(tmp_path / str(i), w, p, sampler, built=b)
            for i, (w, p, b) in enumerate(settings)]
    assert all(len(run) == 14 for run in runs), [len(r) for r in runs]
    assert all(run == runs[0] for run in runs[1:])
    images = [s[0] for batch in runs[0] for s in batch]
    assert set(images) == set(range(22))
    # every pass augments anew: no two loaded samples drew alike
    draws = [s[1] for batch in runs[0] for s in batch]
    assert len(set(draws)) == len(draws) > 44


def test_a_sampler_that_cannot_restart_is_a_clear_error(tmp_path,
                                                        monkeypatch):
    monkeypatch.setattr('mmengine.runner.loops.time.sleep', lambda s: None)
    dataset = DrawingDataset()
    # 6 batches, then mmengine restarts the dataloader: it yields nothing
    with pytest.raises(RuntimeError, match='yielded no batch.*iteration 6'):
        _train_iter_based(tmp_path, sampler=_OneShotSampler(dataset),
                          dataset=dataset)


def test_an_empty_training_set_is_a_clear_error(tmp_path):
    empty = torch.utils.data.TensorDataset(torch.zeros(0))
    with pytest.raises(ValueError, match='training dataset is empty'):
        _train_iter_based(tmp_path, dataset=empty,
                          sampler=torch.utils.data.SequentialSampler(empty))
