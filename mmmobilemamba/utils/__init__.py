"""Run-time helpers shared by tools/ (torch + mmengine only): config
preparation, CPU-capable distributed start-up and dataset checks."""
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
