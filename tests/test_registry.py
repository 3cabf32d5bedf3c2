"""``import mmmobilemamba`` registers the project in every installed toolbox,
and the lower layers import without the OpenMMLab toolboxes."""
import subprocess
import sys

import pytest

import mmmobilemamba
from mmmobilemamba.registry import REGISTRATIONS, installed_toolboxes

from .helpers import REPO


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_backbone_registered_in_each_toolbox(scope):
    registry = pytest.importorskip(f'{scope}.registry').MODELS
    assert scope in mmmobilemamba.REGISTERED
    cls = registry.get('MobileMamba')
    assert cls is not None, f'MobileMamba missing from {scope} MODELS'
    for entry in REGISTRATIONS[scope]:
        name = entry.split(':')[1]
        assert registry.get(name) is not None, f'{name} not in {scope}'
    assert 'MobileMamba' in mmmobilemamba.REGISTERED[scope]


def test_installed_toolboxes_are_all_registered():
    assert set(installed_toolboxes()) <= set(mmmobilemamba.REGISTERED)


def test_custom_imports_reach_the_backbone():
    from mmengine.config import Config
    cfg = Config(dict(
        custom_imports=dict(imports=['mmmobilemamba'],
                            allow_failed_imports=False),
        model=dict(type='MobileMamba', arch='T2')))
    from mmengine.utils import import_modules_from_strings
    import_modules_from_strings(**cfg.custom_imports)
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'MobileMamba'


_BLOCKED_IMPORT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # makes `import name` fail, find_spec -> None
{code}
for name in {blocked!r}:
    assert sys.modules.get(name) is None, name + ' was imported'
print('OK')
"""


def _run_blocked(blocked, code):
    script = _BLOCKED_IMPORT.format(blocked=blocked, code=code)
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and 'OK' in out.stdout, out.stderr[-3000:]


def test_ops_import_with_torch_alone():
    _run_blocked(
        ['mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'], """
import torch
from mmmobilemamba.ops import selective_scan
y = selective_scan(torch.randn(1, 4, 5), torch.rand(1, 4, 5),
                   -torch.rand(4, 1), torch.randn(1, 1, 5),
                   torch.randn(1, 1, 5))
assert y.shape == (1, 4, 5)
import mmmobilemamba
assert mmmobilemamba.REGISTERED == {}
""")


def test_backbone_builds_with_torch_and_mmengine_alone():
    _run_blocked(
        ['mmcv', 'mmdet', 'mmseg', 'mmpretrain'], """
import torch
from mmmobilemamba.models import MobileMamba
model = MobileMamba(arch='T2', out_indices=(1, 2, 3)).eval()
outs = model(torch.randn(1, 3, 64, 64))
assert [o.shape[1] for o in outs] == [144, 272, 368]
""")


@pytest.mark.parametrize('config,scope', [
    ('configs/mobilemamba/mobilemamba-t2-lora_1xb32_digits-32px.py',
     'mmpretrain'),
    ('configs/retinanet/retinanet_mobilemamba-b1-lora_fpn_1x_coco.py',
     'mmdet'),
])
def test_lora_config_builds_from_its_toolbox_registry(config, scope):
    """MobileMambaLoRA builds the model it wraps with the scope of the
    registry that builds it: no default scope needs to be set."""
    pytest.importorskip(scope)
    code = f'''
import mmmobilemamba
from mmengine.config import Config
from mmengine.registry import DefaultScope
from {scope}.registry import MODELS
cfg = Config.fromfile({config!r})
cfg.model.module.backbone.init_cfg = None
assert DefaultScope.get_current_instance() is None
model = MODELS.build(cfg.model)
print(type(model).__name__, type(model.model).__name__)
assert DefaultScope.get_current_instance() is None
'''
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    wrapped = {'mmpretrain': 'ImageClassifier', 'mmdet': 'RetinaNet'}[scope]
    assert f'MobileMambaLoRA {wrapped}' in proc.stdout, proc.stdout[-3000:]
