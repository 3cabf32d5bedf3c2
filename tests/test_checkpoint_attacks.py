"""Crafted checkpoints and images, one test per way they were found to
attack the tools (docs/checkpoints.md#threat-model). Loads run in a
subprocess, so that a crash fails the test instead of killing pytest; a
payload only creates a marker directory, and every test checks that it is
absent."""
import io
import os
import os.path as osp
import pickle
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest
import torch

import mmmobilemamba  # noqa: F401  (routes mmengine's loaders)
from mmmobilemamba.checkpoint import (MAX_EXPANSION_ENV, CheckpointLimitError,
                                     CorruptCheckpointError, TRUST_ENV,
                                     load_checkpoint_file)

from .helpers import REPO, run_tool


@pytest.fixture(autouse=True)
def _untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def run_python(code: str, timeout: int = 300):
    """(exit code, output) of ``code`` run in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop(TRUST_ENV, None)
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout


def payload_text(marker: str) -> str:
    """Config text whose execution creates ``marker``."""
    return (f"model = dict(type='ImageClassifier')\n"
            f"_x = __import__('os').makedirs({marker!r})\n")


def _replace_in_pickle(path: str, old: bytes, new: bytes) -> None:
    """Rewrite data.pkl of a torch zip checkpoint (valid archive, CRCs)."""
    with zipfile.ZipFile(path) as src:
        entries = [(i.filename, src.read(i.filename)) for i in src.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            if name.endswith('/data.pkl'):
                assert old in data, (old, data[:200])
                data = data.replace(old, new)
            dst.writestr(name, data)
    with open(path, 'wb') as f:
        f.write(out.getvalue())


def _stock_runner_checkpoint(path: str, **extra) -> None:
    """What a stock mmengine Runner writes, small."""
    from mmengine.logging import MessageHub
    hub = MessageHub(f'attack-{osp.basename(path)}')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('eta', np.float64(3.5))
    torch.save(dict(meta=dict(epoch=1, iter=1), state_dict={},
                    message_hub=hub.state_dict(), **extra), path)


# 1. resume executes meta['config']: covered end to end through
#    tools/train.py --resume in tests/tools/test_runner_checkpoints.py;
#    here the loader's part, with the config that mmengine then executes.
def test_config_text_is_data_only_after_loading(tmp_path):
    marker = str(tmp_path / 'RAN')
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(meta=dict(epoch=0, iter=0, config=payload_text(marker),
                              cfg="gpu_ids = [0, 1]\nlr = 1e-3\n"),
                    state_dict={}), path)
    code, out = run_python(f"""
        import warnings
        import mmmobilemamba, mmengine
        from mmengine.runner.checkpoint import _load_checkpoint
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            ckpt = _load_checkpoint({path!r}, map_location='cpu')
        print([str(w.message) for w in caught])
        assert 'config' not in ckpt['meta'], ckpt['meta']
        # what mmengine's resume and inferencers execute: our rendering
        cfg = mmengine.Config.fromstring(ckpt['meta']['cfg'], '.py')
        assert cfg.gpu_ids == [0, 1] and cfg.lr == 1e-3
        print('OK')""")
    assert code == 0 and 'OK' in out, out
    assert 'not plain data' in out and 'call to __import__' in out, out
    assert not osp.exists(marker)


# 2. DetInferencer(model=None, weights=...) executes meta['cfg']
@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg'])
def test_inferencer_without_config_runs_no_checkpoint_text(tmp_path,
                                                           toolbox):
    pytest.importorskip(toolbox)
    marker = str(tmp_path / 'RAN')
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(meta=dict(cfg=payload_text(marker)), state_dict={},
                    message_hub=dict(runtime_info=dict(
                        cfg=payload_text(marker)))), path)
    inferencer = dict(mmdet='from mmdet.apis import DetInferencer as I',
                      mmseg='from mmseg.apis import MMSegInferencer as I'
                      )[toolbox]
    code, out = run_python(f"""
        import mmmobilemamba
        {inferencer}
        try:
            I(model=None, weights={path!r}, device='cpu')
        except Exception as err:
            print('REFUSED', type(err).__name__, err)""")
    assert not osp.exists(marker), out
    assert 'REFUSED' in out or code != 0, out
    assert 'Segmentation fault' not in out and code in (0, 1), out


# 3. numpy's _reconstruct with an object dtype forges a pointer
class _ObjectDType:
    """Pickles as numpy.dtype('O') (no BUILD after it)."""

    def __reduce__(self):
        return (np.dtype, ('O', False, True))


class _ForgedArray:
    """Pickles as an object array of 2**20 items whose list holds one."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct
        return (_reconstruct, (np.ndarray, (0, ), b'b'),
                (1, (1 << 20, ), _ObjectDType(), False, [0]))


def test_object_dtype_array_is_refused_not_a_crash(tmp_path):
    path = str(tmp_path / 'forged.pth')
    _stock_runner_checkpoint(path, forged=_ForgedArray())
    code, out = run_python(f"""
        import copy
        import mmmobilemamba
        from mmmobilemamba.checkpoint import load_checkpoint_file
        try:
            copy.deepcopy(load_checkpoint_file({path!r}))
        except Exception as err:
            print('REFUSED', type(err).__name__, err)""")
    assert code == 0, f'exit {code}: {out}'
    assert 'REFUSED CorruptCheckpointError' in out and path in out, out
    assert "numpy dtype 'O'" in out, out


# 4. a HistoryBuffer's state wrote the class's statistics methods
def test_history_buffer_state_cannot_change_the_class(tmp_path):
    path = str(tmp_path / 'stats.pth')
    code, out = run_python(f"""
        import torch
        from mmengine.logging import HistoryBuffer, MessageHub
        hub = MessageHub('w')
        hub.update_scalar('loss', 1.0)
        real = HistoryBuffer._statistics_methods['mean']
        HistoryBuffer._statistics_methods['mean'] = HistoryBuffer.max
        torch.save(dict(message_hub=hub.state_dict()), {path!r})
        HistoryBuffer._statistics_methods['mean'] = real""")
    assert code == 0, out
    code, out = run_python(f"""
        import mmmobilemamba
        from mmengine.logging import HistoryBuffer
        from mmmobilemamba.checkpoint import load_checkpoint_file
        try:
            load_checkpoint_file({path!r})
        except Exception as err:
            print('REFUSED', type(err).__name__, err)
        assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 2.0
        assert HistoryBuffer._statistics_methods['mean'] is \\
            HistoryBuffer.mean
        print('CLASS INTACT')""")
    assert code == 0 and 'CLASS INTACT' in out, out
    assert 'REFUSED CorruptCheckpointError' in out and 'statistics' in out


# 5. the allowlist is per load
def case_allowlist_is_per_load_and_keeps_the_users_entries(tmp_path):
    from mmengine.logging import HistoryBuffer
    stock = str(tmp_path / 'stock.pth')
    _stock_runner_checkpoint(stock)
    seen = []

    def spy(storage, location):
        # runs inside our load: the process-wide allowlist is unchanged,
        # and a plain weights-only load still refuses the message hub
        seen.append(list(torch.serialization.get_safe_globals()))
        try:
            torch.load(stock, weights_only=True)
            seen.append('plain load accepted')
        except pickle.UnpicklingError:
            seen.append('plain load refused')
        return storage

    torch.save(dict(state_dict=dict(w=torch.ones(2)),
                    message_hub=torch.load(stock, weights_only=False)[
                        'message_hub']), str(tmp_path / 'both.pth'))
    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([HistoryBuffer])
    try:
        ckpt = load_checkpoint_file(str(tmp_path / 'both.pth'),
                                    map_location=spy)
        assert set(seen[0]) == set(before) | {HistoryBuffer}
        assert seen[1] == 'plain load refused'  # numpy stays refused
        assert HistoryBuffer in torch.serialization.get_safe_globals()
        assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                          HistoryBuffer)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def case_loads_in_threads_do_not_interfere(tmp_path):
    stock = str(tmp_path / 'stock.pth')
    _stock_runner_checkpoint(stock)
    errors = []

    def ours():
        for _ in range(20):
            load_checkpoint_file(stock)

    def plain():
        for _ in range(20):
            try:
                torch.load(stock, weights_only=True)
                errors.append('plain load accepted a message hub')
            except pickle.UnpicklingError:
                pass

    threads = [threading.Thread(target=f) for f in (ours, plain, ours)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# 6. errors that tell the truth
def _write(path, data: bytes) -> str:
    with open(path, 'wb') as f:
        f.write(data)
    return str(path)


NOT_CHECKPOINTS = [
    (b'<!DOCTYPE html><html><body>404 Not Found</body></html>' * 3,
     'not a PyTorch checkpoint.*HTML'),
    (bytes(range(256)) * 4, 'not a PyTorch checkpoint.*not a format'),
    (b'version https://git-lfs.github.com/spec/v1\noid sha256:ab\n',
     'Git LFS pointer'),
    (b'', 'empty \\(0 bytes\\)'),
]


def case_not_a_checkpoint_says_what_it_is(tmp_path):
    for i, (content, expected) in enumerate(NOT_CHECKPOINTS):
        path = _write(tmp_path / f'model{i}.pth', content)
        with pytest.raises(CorruptCheckpointError, match=expected) as err:
            load_checkpoint_file(path)
        assert path in str(err.value)
        assert '--trust-checkpoint' not in str(err.value)


def case_torchscript_and_tar_and_broken_zip_are_named(tmp_path):
    script = str(tmp_path / 'scripted.pt')
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    with pytest.raises(CorruptCheckpointError, match='scripted.pt: a '
                       'TorchScript archive.*torch.jit.load'):
        load_checkpoint_file(script)

    import tarfile
    tar = str(tmp_path / 'old.tar.pth')
    with tarfile.open(tar, 'w') as archive:
        info = tarfile.TarInfo('storages')
        info.size = 4
        archive.addfile(info, io.BytesIO(b'\x80\x02N.'))
    with pytest.raises(CorruptCheckpointError, match='legacy tar format'):
        load_checkpoint_file(tar)

    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.ones(64)}, good)
    data = open(good, 'rb').read()
    broken = _write(tmp_path / 'broken.pth', data[:len(data) - 30])
    with pytest.raises(CorruptCheckpointError,
                       match='broken.pth .*corrupt or truncated zip') as err:
        load_checkpoint_file(broken)
    assert '%ld' not in str(err.value)


def case_only_valid_files_needing_globals_get_the_trust_advice(tmp_path):
    """A malformed pickle is corrupt, not 'untrusted'."""
    path = str(tmp_path / 'odd.pth')
    torch.save({'w': torch.ones(2)}, path)
    _replace_in_pickle(path, b'q\x00', b'\xfe\x00')  # no such opcode
    with pytest.raises(CorruptCheckpointError) as err:
        load_checkpoint_file(path)
    assert '--trust-checkpoint' not in str(err.value)


# 7. zip bombs
def case_archive_expansion_is_limited(tmp_path):
    path = str(tmp_path / 'bomb.pth')
    torch.save({'w': torch.ones(2)}, path)
    with zipfile.ZipFile(path, 'a', zipfile.ZIP_DEFLATED) as archive:
        prefix = archive.namelist()[0].split('/')[0]
        archive.writestr(f'{prefix}/data/99', bytes(20 * 2 ** 20))
    assert osp.getsize(path) < 100_000
    with pytest.raises(CheckpointLimitError, match='bomb.pth.*limit of 4x'
                       f'.*{MAX_EXPANSION_ENV}'):
        load_checkpoint_file(path)
    os.environ[MAX_EXPANSION_ENV] = '1000'
    assert torch.equal(load_checkpoint_file(path)['w'], torch.ones(2))
    with pytest.raises(CheckpointLimitError, match='limit of 2x'):
        load_checkpoint_file(path, expansion_limit=2)


def test_storage_claiming_more_than_its_record_is_refused(tmp_path):
    path = str(tmp_path / 'short.pth')
    torch.save({'w': torch.ones(4)}, path)
    with zipfile.ZipFile(path) as src:
        entries = [(i.filename, src.read(i.filename)) for i in src.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as dst:
        for name, data in entries:
            dst.writestr(name, data[:4] if name.endswith('/data/0') else data)
    _write(path, out.getvalue())
    code, text = run_python(f"""
        from mmmobilemamba.checkpoint import load_checkpoint_file
        try:
            load_checkpoint_file({path!r})
        except Exception as err:
            print('REFUSED', type(err).__name__, err)""")
    assert code == 0 and 'REFUSED CorruptCheckpointError' in text, text
    assert 'claims 16 bytes, its record holds 4' in text, text


# 8. images: pixel limit, empty files
def _png_header_only(path, width, height) -> str:
    """A PNG whose header declares width x height (no valid pixel data)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return _write(path, b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) +
                  chunk(b'IDAT', zlib.compress(b'\x00' * 64)) +
                  chunk(b'IEND', b''))


def case_image_pixel_limit_and_empty_images(tmp_path):
    from mmmobilemamba.utils.input_checks import (MAX_PIXELS_ENV,
                                                  BadInputFileError,
                                                  check_image_file,
                                                  checked_imread)
    huge = _png_header_only(tmp_path / 'huge.png', 10000, 10000)
    with pytest.raises(BadInputFileError, match='huge.png declares '
                       '10000x10000.*limit of 89478485'):
        check_image_file(huge)
    os.environ[MAX_PIXELS_ENV] = '100'
    small = _png_header_only(tmp_path / 'small.png', 20, 20)
    with pytest.raises(BadInputFileError, match='limit of 100'):
        check_image_file(small)
    del os.environ[MAX_PIXELS_ENV]
    empty = _write(tmp_path / 'empty.jpg', b'')
    with pytest.raises(BadInputFileError, match='cannot read image .*empty'
                       '.jpg .*the file is empty'):
        checked_imread(empty)
    junk = _write(tmp_path / 'junk.jpg', b'\xff\xd8\xff' + bytes(50))
    with pytest.raises(BadInputFileError, match='cannot read image .*junk'):
        checked_imread(junk)


def test_inferencers_refuse_huge_and_empty_images(tmp_path):
    """mmpretrain's inferencer (its own imread) and the toolboxes'
    LoadImageFromFile (mmdet's and mmseg's inferencers, test pipelines)."""
    pytest.importorskip('mmpretrain')
    huge = _png_header_only(tmp_path / 'huge.png', 10000, 10000)
    empty = _write(tmp_path / 'empty.png', b'')
    config = osp.join(REPO, 'configs', 'mobilemamba',
                      'mobilemamba-t2_8xb128_in1k.py')
    code, out = run_python(f"""
        import mmmobilemamba
        from mmpretrain.apis import ImageClassificationInferencer
        from mmcv.transforms import TRANSFORMS
        inferencer = ImageClassificationInferencer({config!r}, device='cpu')
        for image in ({huge!r}, {empty!r}):
            try:
                inferencer(image)
            except Exception as err:
                print('REFUSED', type(err).__name__, err)
        load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
        try:
            load(dict(img_path={huge!r}))
        except Exception as err:
            print('REFUSED', type(err).__name__, err)""")
    assert code == 0, out
    assert out.count('REFUSED BadInputFileError') == 3, out
    assert out.count('huge.png declares 10000x10000') == 2, out
    assert 'empty.png (0 bytes): EOFError: the file is empty' in out, out


# The cases above that load crafted files in this process run in a child
# process each: a crash there fails the test instead of killing pytest.
IN_A_CHILD = [name[len('case_'):] for name in dir() if name.startswith(
    'case_')]


@pytest.mark.parametrize('case', IN_A_CHILD)
def test_case_in_a_subprocess(case, tmp_path):
    code, out = run_python(f"""
        import pathlib
        from tests.test_checkpoint_attacks import case_{case}
        case_{case}(pathlib.Path({str(tmp_path)!r}))
        print('CASE OK')""")
    assert code == 0 and 'CASE OK' in out, f'exit {code}:\n{out[-4000:]}'


# 6 (fuzzing): the CI share of tools/analysis_tools/fuzz_checkpoints.py
def test_fuzzed_checkpoints_load_or_fail_cleanly(tmp_path):
    out = run_tool('tools/analysis_tools/fuzz_checkpoints.py', '--cases',
                   '400', '--seed', '7', '--work-dir', str(tmp_path),
                   timeout=600)
    assert '400 cases' in out and 'unnamed 0, signal 0, timeout 0, ' \
        'payload 0' in out, out
