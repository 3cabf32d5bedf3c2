"""KDImageClassifier: the KD loss, the frozen teacher, the teacher's view of
the batch, and checkpoints that hold only the student."""
import copy
import math

import pytest
import torch

pytest.importorskip('mmpretrain')

import mmmobilemamba  # noqa: E402,F401  (registers the modules)
from mmmobilemamba.models.classifiers.kd_classifier import (  # noqa: E402
    KDImageClassifier, _input_size_of, kd_loss)

NUM_CLASSES = 10
STUDENT_PRE = dict(
    num_classes=NUM_CLASSES,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)


def _teacher_cfg(to_rgb=False, crop=40):
    """A narrow stock mmpretrain ResNet with its own normalisation."""
    return dict(
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18, stem_channels=8,
                          base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                      in_channels=64)),
        data_preprocessor=dict(
            num_classes=NUM_CLASSES, mean=[100., 110., 120.],
            std=[50., 60., 70.], to_rgb=to_rgb),
        test_dataloader=dict(dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='ResizeEdge', scale=46, edge='short'),
            dict(type='CenterCrop', crop_size=crop),
            dict(type='PackInputs')
        ])))


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(_teacher_cfg()['model']))
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _kd_model(teacher_ckpt, kd_weight=5.0, tau=1.0, **teacher):
    teacher = dict(dict(config=_teacher_cfg(), checkpoint=teacher_ckpt),
                   **teacher)
    return KDImageClassifier(
        backbone=dict(type='MobileMamba', arch='T2'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='BNLinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=368,
                  loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                            mode='original')),
        train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                                 dict(type='CutMix', alpha=1.0)]),
        data_preprocessor=copy.deepcopy(STUDENT_PRE),
        teacher=teacher,
        kd_weight=kd_weight,
        tau=tau)


def _batch(n=4, size=32, seed=0):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, 3, size, size), generator=g,
                         dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)]
    return dict(inputs=imgs, data_samples=samples)


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    tau = 2.0

    def softmax(row):
        e = [math.exp(v / tau) for v in row]
        return [v / sum(e) for v in e]

    expected = 0.0
    for srow, trow in zip(s.tolist(), t.tolist()):
        ps, pt = softmax(srow), softmax(trow)
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected /= 2
    assert kd_loss(s, t, tau).item() == pytest.approx(expected, rel=1e-6)
    # KL(p || p) = 0 and KL >= 0
    assert kd_loss(t, t, tau).item() == pytest.approx(0.0, abs=1e-7)
    assert kd_loss(s, t, 1.0).item() > 0


def test_kd_loss_rejects_bad_input():
    with pytest.raises(ValueError, match='tau'):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), tau=0)
    with pytest.raises(ValueError, match=r'\(N, C\)'):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_loss_is_ce_plus_weighted_kd_on_the_mixed_batch(teacher_ckpt):
    model = _kd_model(teacher_ckpt, kd_weight=3.0, tau=2.0).train()
    torch.manual_seed(1)
    data = model.data_preprocessor(_batch(), training=True)
    assert 'gt_score' in data['data_samples'][0]  # mixed targets
    # the model's losses, with the BN statistics restored afterwards so
    # that the hand computation sees the same student
    state = copy.deepcopy(model.state_dict())
    losses = model.loss(data['inputs'], data['data_samples'])
    model.load_state_dict(state)
    student = model.head(model.extract_feat(data['inputs']))
    teacher = model.teacher_logits(data['inputs'])
    assert teacher.shape == student.shape == (4, NUM_CLASSES)
    expected_kd = 3.0 * 2.0**2 * kd_loss(student, teacher, 2.0)
    expected_ce = model.head._get_loss(student, data['data_samples'])['loss']
    assert losses['loss_kd'].item() == pytest.approx(expected_kd.item(),
                                                     rel=1e-5)
    assert losses['loss_cls'].item() == pytest.approx(expected_ce.item(),
                                                      rel=1e-5)
    assert set(losses) == {'loss_cls', 'loss_kd'}


def test_teacher_gets_no_gradient_and_never_changes(teacher_ckpt):
    model = _kd_model(teacher_ckpt).train()
    teacher = model.teacher
    before = copy.deepcopy(teacher.state_dict())
    optim = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        data = model.data_preprocessor(_batch(), training=True)
        losses = model.loss(data['inputs'], data['data_samples'])
        (losses['loss_cls'] + losses['loss_kd']).backward()
        optim.step()
        optim.zero_grad()
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None
               for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    # the optimizer holds the student's parameters only
    optimised = {id(p) for g in optim.param_groups for p in g['params']}
    assert not optimised & {id(p) for p in teacher.parameters()}
    # while the student does learn from the KD term alone
    data = model.data_preprocessor(_batch(), training=True)
    model.loss(data['inputs'], data['data_samples'])['loss_kd'].backward()
    grad = model.head.fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_checkpoint_holds_the_student_only(teacher_ckpt):
    from mmpretrain.registry import MODELS
    model = _kd_model(teacher_ckpt)
    plain = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='MobileMamba', arch='T2'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='BNLinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=368),
        data_preprocessor=copy.deepcopy(STUDENT_PRE)))
    state = model.state_dict()
    assert set(state) == set(plain.state_dict())
    assert not [k for k in state if 'teacher' in k]
    plain.load_state_dict(state, strict=True)
    # model.train()/deepcopy (the EMA hook's copy) leave the teacher alone
    model.train()
    assert not model.teacher.training
    assert copy.deepcopy(model).teacher is model.teacher


def test_teacher_sees_its_own_normalisation_and_size(teacher_ckpt):
    model = _kd_model(teacher_ckpt, input_size=32)  # no resize here
    batch = _batch(size=32)
    student_in = model.data_preprocessor(batch, training=False)['inputs']
    teacher_in = model.teacher.data_preprocessor(batch)['inputs']
    # student: RGB, ImageNet stats; teacher: BGR, its own stats
    assert torch.allclose(model._teacher_inputs(student_in), teacher_in,
                          atol=1e-4)
    # resized to the size of the teacher's test pipeline (CenterCrop 40)
    model = _kd_model(teacher_ckpt)
    assert model.teacher_input_size == (40, 40)
    assert model._teacher_inputs(student_in).shape[-2:] == (40, 40)


def test_input_size_comes_from_the_teacher_config():
    from mmengine.config import Config
    assert _input_size_of(Config(_teacher_cfg(crop=56))) == (56, 56)
    assert _input_size_of(Config(dict(model=dict()))) is None


def test_missing_teacher_checkpoint_is_an_error_at_build(tmp_path):
    missing = str(tmp_path / 'no_teacher.pth')
    with pytest.raises(FileNotFoundError, match='no_teacher.pth'):
        _kd_model(missing)


def test_teacher_with_other_classes_is_refused(tmp_path):
    from mmpretrain.registry import MODELS
    cfg = _teacher_cfg()
    cfg['model']['head']['num_classes'] = 7
    path = str(tmp_path / 't7.pth')
    torch.save(MODELS.build(cfg['model']).state_dict(), path)
    with pytest.raises(ValueError, match='7 classes'):
        KDImageClassifier(
            backbone=dict(type='MobileMamba', arch='T2'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='BNLinearClsHead', num_classes=NUM_CLASSES,
                      in_channels=368),
            teacher=dict(config=cfg, checkpoint=path))


def test_wrong_teacher_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': {'x': torch.zeros(1)}}, path)
    with pytest.raises(RuntimeError, match='(?i)missing key'):
        _kd_model(path)


def test_bad_arguments_are_named(teacher_ckpt):
    with pytest.raises(KeyError, match='checkpoint'):
        KDImageClassifier(backbone=dict(type='MobileMamba'),
                          teacher=dict(config=_teacher_cfg()))
    with pytest.raises(ValueError, match='tau'):
        _kd_model(teacher_ckpt, tau=0.0)
    with pytest.raises(ValueError, match='kd_weight'):
        _kd_model(teacher_ckpt, kd_weight=-1.0)
