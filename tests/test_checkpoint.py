"""mmmobilemamba/checkpoint.py: checkpoints never run code unless trusted;
Runner checkpoints load; truncated files and key mismatches are explained.

The crafted payload only creates a marker file when unpickled; every refused
path checks that the marker is still absent."""
import importlib.util
import os
import os.path as osp
import shutil
import warnings

import pytest
import torch

import mmmobilemamba  # noqa: F401  (routes mmengine's loaders)
from mmmobilemamba.checkpoint import (TRUST_ENV, CorruptCheckpointError,
                                     UnsafeCheckpointError,
                                     check_checkpoint_matches,
                                     load_checkpoint_file, load_state_dict,
                                     trust_checkpoints)

from .helpers import REPO, write_payload_checkpoint


@pytest.fixture(autouse=True)
def _untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


@pytest.fixture
def payload(tmp_path):
    """(checkpoint path, marker path) of a file that holds a payload."""
    path, marker = str(tmp_path / 'payload.pth'), str(tmp_path / 'RAN')
    write_payload_checkpoint(path, marker)
    return path, marker


def _refused(err, path):
    message = str(err)
    assert path in message and 'os.makedirs' in message, message
    assert '--trust-checkpoint' in message and TRUST_ENV in message


def test_the_payload_is_live(payload):
    """Unpickled in full, the file does run its code (so the tests below,
    which find no marker, show that it was never unpickled)."""
    path, marker = payload
    torch.load(path, weights_only=False)
    assert osp.exists(marker)


def test_loader_refuses_the_payload(payload):
    path, marker = payload
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(path)
    _refused(err.value, path)
    assert not osp.exists(marker)


def test_mmengine_local_and_url_loading_refuse_the_payload(
        payload, tmp_path, monkeypatch):
    from mmengine.runner import CheckpointLoader
    path, marker = payload
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')

    # URLs (mmengine would unpickle them in full through torch.hub)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file',
                        lambda url, dst, *a, **k: shutil.copy(path, dst))
    for url in ('https://example.invalid/weights.pth',
                'http://example.invalid/other.pth'):
        with pytest.raises(UnsafeCheckpointError, match='weights.pth|'
                           'other.pth'):
            CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert not osp.exists(marker)


def test_init_cfg_pretrained_refuses_the_payload(payload):
    from mmmobilemamba.models import MobileMamba
    path, marker = payload
    model = MobileMamba('T2', init_cfg=dict(type='Pretrained',
                                            checkpoint=path))
    with pytest.raises(UnsafeCheckpointError) as err:
        model.init_weights()
    _refused(err.value, path)
    assert not osp.exists(marker)


def _tool(relative):
    spec = importlib.util.spec_from_file_location(
        osp.basename(relative)[:-3], osp.join(REPO, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_refuses_the_payload_and_writes_nothing(payload, tmp_path,
                                                          capsys):
    from mmmobilemamba.checkpoint.release import convert_release_checkpoint
    path, marker = payload
    dst = str(tmp_path / 'out.pth')
    with pytest.raises(UnsafeCheckpointError):
        convert_release_checkpoint(path, dst)
    tool = _tool('tools/model_converters/mobilemamba_to_mmpretrain.py')
    assert tool.main([path, dst]) == 1
    _refused(capsys.readouterr().err, path)
    assert not osp.exists(marker) and not osp.exists(dst)


STOCK = osp.join(REPO, 'tests', 'data', 'configs',
                 'stock_resnet_tiny_folder.py')


T2_CLASSIFIER = f"""_base_ = [{STOCK!r}]
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(type='MobileMamba', arch='T2'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='BNLinearClsHead', num_classes=10, in_channels=368,
              topk=(1, )))
"""


def _payload_for(config, tmp_path):
    pytest.importorskip('mmpretrain')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(config).model)
    path, marker = str(tmp_path / 'payload.pth'), str(tmp_path / 'RAN')
    write_payload_checkpoint(path, marker, model.state_dict())
    return path, marker


@pytest.fixture
def stock_payload(tmp_path):
    """A payload file whose state dict is the stock test config's model."""
    return _payload_for(STOCK, tmp_path)


def test_export_tools_refuse_the_payload(stock_payload, tmp_path, capsys):
    path, marker = stock_payload
    fuse_bn = _tool('tools/deployment/fuse_bn.py')
    out = str(tmp_path / 'fused.pth')
    with pytest.raises(UnsafeCheckpointError) as err:
        fuse_bn.main([STOCK, path, out])
    _refused(err.value, path)
    export_onnx = _tool('tools/deployment/export_onnx.py')
    onnx_out = str(tmp_path / 'model.onnx')
    assert export_onnx.main([STOCK, path, onnx_out, '--shape', '48']) == 1
    _refused(capsys.readouterr().err, path)
    pte_out = str(tmp_path / 'model.pte')
    if importlib.util.find_spec('executorch') is not None:
        export_executorch = _tool('tools/deployment/export_executorch.py')
        assert export_executorch.main([STOCK, path, pte_out,
                                       '--shape', '48']) == 1
        _refused(capsys.readouterr().err, path)
    assert not osp.exists(marker)
    assert not any(osp.exists(p) for p in (out, onnx_out, pte_out))


def test_trust_flag_opts_in(tmp_path):
    config = tmp_path / 't2_classifier.py'
    config.write_text(T2_CLASSIFIER)
    path, marker = _payload_for(str(config), tmp_path)
    fuse_bn = _tool('tools/deployment/fuse_bn.py')
    out = str(tmp_path / 'fused.pth')
    with pytest.warns(UserWarning, match='trusted checkpoint'):
        assert fuse_bn.main([str(config), path, out, '--check-size', '64',
                             '64', '--trust-checkpoint']) == 0
    assert osp.exists(marker) and osp.exists(out)
    assert TRUST_ENV not in os.environ  # the flag is scoped to the tool


def test_environment_variable_opts_in(payload, monkeypatch):
    path, marker = payload
    monkeypatch.setenv(TRUST_ENV, '1')
    with pytest.warns(UserWarning, match='os.makedirs'):
        ckpt = load_checkpoint_file(path)
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))
    assert osp.exists(marker)


def test_trust_context_restores_the_environment(payload):
    path, _ = payload
    with trust_checkpoints():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            load_checkpoint_file(path)
    assert TRUST_ENV not in os.environ
    with trust_checkpoints(False), pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(path)


def test_runner_checkpoint_loads_without_trust(tmp_path, monkeypatch):
    """What an mmengine Runner writes: the message hub's HistoryBuffers
    (numpy float64/int64 histories, statistics methods) and numpy scalars."""
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub('checkpoint-test')
    for value in (0.5, 0.25):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(3.5))
    path = str(tmp_path / 'runner.pth')
    torch.save(dict(meta=dict(epoch=1, seed=3, dataset_meta=dict(
        classes=('a', 'b'), palette=[(1, 2, 3)])),
                    state_dict=dict(w=torch.ones(2)),
                    message_hub=hub.state_dict(),
                    optimizer=torch.optim.SGD([torch.nn.Parameter(
                        torch.ones(1))], lr=0.1).state_dict()), path)
    spy = []
    real = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: spy.append(
        k.get('weights_only')) or real(*a, **k))
    ckpt = load_checkpoint_file(path)
    assert spy == []  # never unpickled in full (nor by torch.load at all)
    scalars = ckpt['message_hub']['log_scalars']['train/loss']
    assert scalars.mean() == pytest.approx(0.375)
    assert scalars.statistics('min') == 0.25
    assert ckpt['message_hub']['runtime_info']['eta'] == 3.5


class _Lookup:
    """Unpickles as ``getattr(owner, name)``."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return (getattr, (self.owner, self.name))


@pytest.mark.parametrize('name', ['__init__', 'register_statistics'])
def test_getattr_is_limited_to_history_buffer_methods(tmp_path, name):
    """getattr stands only for a HistoryBuffer's statistics methods, and
    only inside a HistoryBuffer's state."""
    from mmengine.logging import HistoryBuffer
    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': _Lookup(HistoryBuffer, name)}, path)
    with pytest.raises(CorruptCheckpointError, match='getattr.pth.*not '
                       'allowed'):
        load_checkpoint_file(path)
    torch.save({'x': _Lookup(HistoryBuffer, 'mean')}, path)
    with pytest.raises(CorruptCheckpointError, match='getattr.pth.*stray'):
        load_checkpoint_file(path)


@pytest.mark.parametrize('keep', [0.5, 0.99])
def test_truncated_checkpoint_is_named(tmp_path, keep):
    path = str(tmp_path / 'model.pth')
    torch.save({'state_dict': {'w': torch.ones(1000)}}, path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])
    with pytest.raises(CorruptCheckpointError, match='model.pth .*truncated'
                       '.*Download or save it again'):
        load_checkpoint_file(path)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))


def test_key_report_and_fusion_hint_live_in_one_helper(tmp_path):
    from mmmobilemamba.models import MobileMamba
    unfused = MobileMamba('T2').state_dict()
    fused_model = MobileMamba('T2', deploy=True)
    with pytest.warns(UserWarning, match='build it with deploy=False'):
        load_state_dict(fused_model, unfused)
    with pytest.raises(KeyError, match='released MobileMamba layout'):
        load_state_dict(MobileMamba('T2'), {'blocks1.0.x': torch.ones(1)})
    # tools/test.py's check gives the same advice
    path = str(tmp_path / 'fused.pth')
    torch.save({'state_dict': fused_model.state_dict()}, path)
    with pytest.raises(ValueError, match='does not match the model.*look '
                       'BN-fused'):
        check_checkpoint_matches(MobileMamba('T2'), path)


def test_plain_message_hub_loads_back_as_history_buffers(tmp_path):
    """The project's checkpoints store the message hub plain
    (ResumableCheckpointHook); the loader gives MessageHub.load_state_dict
    the HistoryBuffers and numpy values it expects."""
    import numpy as np
    from mmengine.logging import HistoryBuffer, MessageHub

    from mmmobilemamba.checkpoint.runner_state import plain_message_hub
    hub = MessageHub('plain-hub-test')
    for value in (0.5, 0.25):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(3.5))
    hub.update_info('hist', np.arange(3, dtype=np.int32))
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(message_hub=plain_message_hub(hub.state_dict())), path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = load_checkpoint_file(path)['message_hub']
    loss = state['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert loss.statistics('mean') == pytest.approx(0.375)
    assert state['runtime_info']['eta'] == 3.5
    assert state['runtime_info']['hist'].tolist() == [0, 1, 2]
    resumed = MessageHub('plain-hub-resumed')
    resumed.load_state_dict(state)
    assert resumed.get_scalar('train/loss').current() == 0.25
