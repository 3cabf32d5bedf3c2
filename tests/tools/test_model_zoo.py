"""The model zoo: model-index.yml and configs/mobilemamba/metafile.yml make
``mmpretrain.get_model('mobilemamba-...')`` find our configs, and a
checkpoint converted from the release plugs into a model built by name."""
import os.path as osp

import pytest
import torch
import yaml

from ..helpers import REPO, SHARED, run_tool

INDEX = osp.join(REPO, 'model-index.yml')
METAFILE = osp.join(REPO, 'configs', 'mobilemamba', 'metafile.yml')
FIXTURE = osp.join(SHARED, 'fixtures', 'release_t2_golden.pth')
VARIANTS = ('t2', 't4', 's6', 'b1', 'b2', 'b4')


@pytest.fixture(scope='module')
def hub():
    import mmmobilemamba  # noqa: F401  (registration)
    from mmpretrain.apis import ModelHub
    if not ModelHub.has('mobilemamba-t2_8xb128_in1k'):
        ModelHub.register_model_index(INDEX, config_prefix=REPO)
    return ModelHub


def _metafile_models():
    with open(METAFILE) as f:
        return yaml.safe_load(f)['Models']


def test_index_imports_the_metafile_and_every_config_exists():
    with open(INDEX) as f:
        imports = yaml.safe_load(f)['Import']
    assert 'configs/mobilemamba/metafile.yml' in imports
    models = _metafile_models()
    names = {m['Name'] for m in models}
    expected = {f'mobilemamba-{v}_8xb128_{kd}in1k' for v in VARIANTS
                for kd in ('', 'kd-1000e_')}
    assert names == expected
    for model in models:
        assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
        top1 = model['Results'][0]['Metrics']['Top 1 Accuracy']
        assert 70 < top1 < 85, model['Name']


def test_list_and_build_by_name(hub):
    from mmpretrain import get_model, list_models
    from mmengine.config import Config
    assert set(list_models('mobilemamba*')) >= {
        f'mobilemamba-{v}_8xb128_in1k' for v in VARIANTS}
    for entry in _metafile_models():
        if 'kd-1000e' in entry['Name']:
            continue  # same student network as the 300-epoch entry
        cfg = Config.fromfile(osp.join(REPO, entry['Config']))
        crops = [s['crop_size'] for s in cfg.test_dataloader.dataset.pipeline
                 if s['type'] == 'CenterCrop']
        assert crops == [entry['Metadata']['Resolution']], entry['Name']
        if entry['Name'] not in ('mobilemamba-t2_8xb128_in1k',
                                 'mobilemamba-b1_8xb128_in1k'):
            continue  # building every variant adds nothing but time
        model = get_model(entry['Name'])
        assert type(model.backbone).__name__ == 'MobileMamba'
        params = sum(p.numel() for p in model.parameters())
        # metafile: ours unfused (= the release's fused count + Haar filters)
        assert abs(params - entry['Metadata']['Parameters']) < 0.01e6


@pytest.mark.skipif(not osp.isfile(FIXTURE),
                    reason=f'golden fixture {FIXTURE} not found')
def test_release_checkpoint_through_converter(hub, tmp_path):
    from mmpretrain import get_model
    release = str(tmp_path / 'release_t2.pth')
    golden = torch.load(FIXTURE, map_location='cpu')
    torch.save(golden['state_dict'], release)  # as the authors ship it
    converted = str(tmp_path / 't2_converted.pth')
    run_tool('tools/model_converters/mobilemamba_to_mmpretrain.py', release,
             converted)
    model = get_model('mobilemamba-t2_8xb128_in1k', pretrained=converted)
    ref = golden['square']
    with torch.no_grad():
        logits = model(ref['input'], mode='tensor')
    err = ((logits - ref['logits']).abs().max() /
           ref['logits'].abs().max()).item()
    assert err < 1e-4


def test_unknown_name_is_an_error(hub):
    from mmpretrain import get_model
    with pytest.raises(ValueError, match='mobilemamba-t3'):
        get_model('mobilemamba-t3_8xb128_in1k')
