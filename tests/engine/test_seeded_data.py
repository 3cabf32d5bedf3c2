"""Per-sample seeding: what a sample's augmentation draws depends on its
place in training only, not on workers, persistence or a resume."""
import random

import numpy as np
import pytest
import torch
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
