"""Run-time helpers shared by tools/: config preparation, CPU-capable
distributed start-up and dataset checks (torch + mmengine only), and in
:mod:`.dense_parts` (imported on demand: it builds mmdet / mmseg models) the
part of a detector or segmentor that the analysis tools measure."""
from ..checkpoint import check_checkpoint_matches
from .data_checks import check_dataset_paths
from .dist import setup_distributed
from .runner_setup import (build_runner, load_config, prepare_test_config,
                           prepare_train_config)

__all__ = [
    'check_dataset_paths', 'setup_distributed', 'build_runner',
    'check_checkpoint_matches', 'load_config',
    'prepare_train_config', 'prepare_test_config'
]
