"""tools/train.py and tools/test.py with untrusted, trusted and truncated
checkpoints: the crafted payload never runs unless --trust-checkpoint."""
import os
import os.path as osp

import pytest
import torch

from ..helpers import (REPO, data_root_options, run_tool,
                       write_payload_checkpoint)

pytest.importorskip('mmpretrain')

STOCK = osp.join(REPO, 'tests', 'data', 'configs',
                 'stock_resnet_tiny_folder.py')
# no env var from the caller's shell may trust the payload
UNTRUSTED = {'MMMOBILEMAMBA_TRUST_CHECKPOINTS': ''}


@pytest.fixture(scope='module')
def stock_payload(tmp_path_factory):
    """(payload checkpoint holding the stock model's weights, marker)."""
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(STOCK).model)
    tmp = tmp_path_factory.mktemp('payload')
    path, marker = str(tmp / 'payload.pth'), str(tmp / 'RAN')
    write_payload_checkpoint(path, marker, model.state_dict())
    return path, marker


def _assert_refused(code, out, path, marker):
    assert code != 0
    assert 'UnsafeCheckpointError' in out and f'checkpoint {path}' in out, \
        out[-3000:]
    assert 'os.makedirs' in out and '--trust-checkpoint' in out
    assert not osp.exists(marker)


def test_test_tool_refuses_then_trusts(stock_payload, tiny_imagenet_folder,
                                       tmp_path):
    path, marker = stock_payload
    args = ['tools/test.py', STOCK, path, '--work-dir', str(tmp_path / 'w'),
            '--cfg-options', *data_root_options(tiny_imagenet_folder)]
    code, out = run_tool(*args, env=UNTRUSTED, check=False)
    _assert_refused(code, out, path, marker)

    out = run_tool(*args, '--trust-checkpoint', env=UNTRUSTED)
    assert 'accuracy/top1' in out and osp.exists(marker)
    os.rmdir(marker)  # the fixture is shared with the refusal tests


@pytest.mark.parametrize('how', ['--resume', 'load_from'])
def test_train_tool_refuses_resume_and_load_from(how, stock_payload,
                                                 tiny_imagenet_folder,
                                                 tmp_path):
    path, marker = stock_payload
    work = str(tmp_path / 'w')
    opts = ['train_cfg.max_epochs=1', *data_root_options(tiny_imagenet_folder)]
    if how == '--resume':
        extra = ['--resume', path, '--cfg-options', *opts]
    else:
        extra = ['--cfg-options', f'load_from={path}', *opts]
    code, out = run_tool('tools/train.py', STOCK, '--work-dir', work, *extra,
                         env=UNTRUSTED, check=False)
    _assert_refused(code, out, path, marker)
    assert not osp.exists(osp.join(work, 'epoch_1.pth'))


def test_truncated_checkpoint_is_named_by_test_and_train(tiny_imagenet_folder,
                                                         tmp_path):
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(STOCK).model)
    path = str(tmp_path / 'epoch_3.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])
    for args in (['tools/test.py', STOCK, path],
                 ['tools/train.py', STOCK, '--resume', path]):
        code, out = run_tool(*args, '--work-dir', str(tmp_path / 'w'),
                             '--cfg-options',
                             *data_root_options(tiny_imagenet_folder), check=False)
        assert code != 0
        assert f'cannot read checkpoint {path}' in out, out[-3000:]
        assert 'truncated' in out and 'earlier checkpoint' in out
