"""Knowledge distillation, the "†" strategy (docs/architecture.md#training).

:class:`KDImageClassifier` is mmpretrain's ``ImageClassifier`` (the
student: backbone, neck, head, data preprocessor, batch augments) plus a
frozen teacher built from any mmpretrain model config and checkpoint. The
training loss on a (Mixup/CutMix-) mixed batch is::

    loss_cls = head loss of the student on the mixed targets (CE, with the
               head's label smoothing)
    loss_kd  = kd_weight * tau^2 * KL(softmax(t / tau) || softmax(s / tau))

where ``t`` are the teacher's logits on the same mixed images, resized to
the teacher's resolution and normalised the teacher's way, and the KL is
summed over classes and averaged over the batch (:func:`kd_loss`).

The teacher is deliberately *not* a submodule: it is invisible to
``state_dict()`` (never saved, so a KD checkpoint loads into the plain
classifier config), to ``parameters()`` (the optimizer never sees it), to
``init_weights()`` (its loaded weights stay), to ``train()`` (it stays in
eval mode) and to the EMA hook's deep copy (one teacher is shared instead of
copied). It follows the student's device on first use. This module needs
mmpretrain and is registered only there.
"""
import copy
import itertools
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.structures import DataSample

from ...config_sizes import test_crop_size

_TEACHER_KEYS = ('config', 'checkpoint', 'input_size', 'resize_mode')


def kd_loss(student_logits: torch.Tensor,
            teacher_logits: torch.Tensor,
            tau: float = 1.0) -> torch.Tensor:
    """KL(softmax(t / tau) || softmax(s / tau)), summed over classes and
    averaged over samples (without the tau^2 factor).

    Computed in float32 whatever the logits' dtype (AMP), since the
    difference of two log-softmaxes loses precision in half.

    Args:
        student_logits (Tensor): (N, C) logits of the student.
        teacher_logits (Tensor): (N, C) logits of the teacher.
        tau (float): Softmax temperature, > 0. Defaults to 1.

    Returns:
        Tensor: A scalar.
    """
    if student_logits.shape != teacher_logits.shape or \
            student_logits.dim() != 2:
        raise ValueError(f'student and teacher logits must both be (N, C); '
                         f'got {tuple(student_logits.shape)} and '
                         f'{tuple(teacher_logits.shape)}')
    if not tau > 0:
        raise ValueError(f'tau must be > 0, got {tau}')
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


def _load_teacher_config(config: Union[str, dict, Config]) -> Config:
    """A Config from a path, an ``mmpretrain::`` path, a model name or a
    dict."""
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if isinstance(config, dict):
        return Config(copy.deepcopy(dict(config)))
    if not isinstance(config, str):
        raise TypeError(f'teacher config must be a path, a model name or a '
                        f'dict, got {type(config).__name__}')
    if '::' in config:
        from mmengine.utils import get_installed_path
        package, rel_path = config.split('::', 1)
        path = osp.join(get_installed_path(package), '.mim', 'configs',
                        rel_path)
        if not osp.isfile(path):
            raise FileNotFoundError(f'teacher config {config} not found '
                                    f'(looked for {path})')
        return Config.fromfile(path)
    if config.endswith('.py'):
        if not osp.isfile(config):
            raise FileNotFoundError(f'teacher config {config} not found')
        return Config.fromfile(config)
    from mmpretrain.apis import ModelHub
    return ModelHub.get(config).config  # ValueError names unknown models


def _input_size_of(cfg: Config) -> Optional[Tuple[int, int]]:
    """(H, W) the teacher is tested at: its test crop, else its test
    pipeline's first Resize, None when the config does not say."""
    crop = test_crop_size(cfg)
    if crop is not None:
        return crop
    try:
        pipeline = cfg.test_dataloader.dataset.pipeline
    except AttributeError:
        return None
    for transform in pipeline:
        kind = str(transform.get('type', '')).split('.')[-1]
        if kind in ('Resize', 'RandomResizedCrop') and \
                transform.get('scale') is not None:
            return _as_hw(transform['scale'])
    return None


def _as_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        hw = (size, size)
    else:
        hw = tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f'teacher input_size must be an int or (H, W) of '
                         f'positive ints, got {size!r}')
    return hw


class _FrozenTeacher:
    """Holds the teacher outside the student's module tree.

    ``copy.deepcopy`` returns the same holder, so that copies of the
    distiller (the EMA hook keeps one) share one frozen teacher instead of
    each carrying its own.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __deepcopy__(self, memo) -> '_FrozenTeacher':
        return self


class KDImageClassifier(ImageClassifier):
    """An image classifier trained with soft knowledge distillation.

    Construction, keys and inference are those of mmpretrain's
    ``ImageClassifier``; only :meth:`loss` differs. A checkpoint holds the
    student alone, so it loads into the same config with
    ``type='ImageClassifier'`` for testing and deployment.

    Args:
        backbone (dict): The student's backbone config.
        teacher (dict): The teacher:

            - ``config`` (str | dict): an mmpretrain model config file, an
              ``mmpretrain::`` config, a model name of ``mmpretrain``'s
              model zoo, or a config dict. Its ``model`` (and top-level
              ``data_preprocessor``) build the teacher.
            - ``checkpoint`` (str): weights, loaded strictly; a missing file
              is an error here, before any training.
            - ``input_size`` (int | (H, W), optional): the resolution the
              teacher sees; None takes it from the teacher config's test
              pipeline (its CenterCrop), or keeps the student's size when
              the config names none.
            - ``resize_mode`` (str): ``F.interpolate`` mode for that resize.
              Defaults to 'bilinear' (antialiased when shrinking).
        kd_weight (float): lambda, the weight of the KD term. Defaults to 5.
        tau (float): Softmax temperature. Defaults to 1.
        neck (dict, optional): The student's neck. Defaults to None.
        head (dict): The student's head, an mmpretrain ``ClsHead``
            (its ``_get_loss`` computes the loss on the mixed targets).
        pretrained (str, optional): Student weights to start from.
        train_cfg (dict, optional): ``augments`` (Mixup, CutMix) applied by
            the data preprocessor; the teacher sees the mixed images.
        data_preprocessor (dict, optional): The student's preprocessor.
        init_cfg (dict, optional): The student's initialisation.
    """

    def __init__(self,
                 backbone: dict,
                 teacher: dict,
                 kd_weight: float = 5.0,
                 tau: float = 1.0,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if not isinstance(teacher, dict):
            raise TypeError(f'teacher must be a dict with keys '
                            f'{_TEACHER_KEYS}, got {type(teacher).__name__}')
        unknown = set(teacher) - set(_TEACHER_KEYS)
        missing = {'config', 'checkpoint'} - set(teacher)
        if unknown or missing:
            raise KeyError(f'teacher dict: missing {sorted(missing)}, '
                           f'unknown {sorted(unknown)}; allowed keys are '
                           f'{_TEACHER_KEYS}')
        if not kd_weight >= 0:
            raise ValueError(f'kd_weight must be >= 0, got {kd_weight}')
        if not tau > 0:
            raise ValueError(f'tau must be > 0, got {tau}')
        checkpoint = teacher['checkpoint']
        # fail now, not when the first batch reaches the teacher
        if not isinstance(checkpoint, str) or not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'teacher checkpoint {checkpoint!r} not found; set '
                'model.teacher.checkpoint to the weights of the teacher '
                'named by model.teacher.config')
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            train_cfg=train_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if not hasattr(self.head, '_get_loss'):
            raise TypeError(f'KDImageClassifier needs an mmpretrain ClsHead '
                            f'(with _get_loss); got '
                            f'{type(self.head).__name__}')
        self.kd_weight = float(kd_weight)
        self.tau = float(tau)
        self.resize_mode = teacher.get('resize_mode', 'bilinear')
        self._teacher = _FrozenTeacher(
            self._build_teacher(teacher['config'], checkpoint,
                                teacher.get('input_size')))

    def _build_teacher(self, config: Union[str, dict], checkpoint: str,
                       input_size) -> nn.Module:
        from mmengine.registry import DefaultScope
        from mmengine.runner import load_checkpoint
        from mmpretrain.registry import MODELS
        logger = MMLogger.get_current_instance()
        cfg = _load_teacher_config(config)
        if 'model' not in cfg:
            raise KeyError(f'teacher config {config} has no `model`')
        model_cfg = copy.deepcopy(cfg.model)
        # the teacher only infers: no batch augments, no pretrained init
        model_cfg.pop('train_cfg', None)
        model_cfg.pop('init_cfg', None)
        model_cfg.setdefault('data_preprocessor',
                             cfg.get('data_preprocessor', None))
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = MODELS.build(model_cfg)
        # strict: a wrong checkpoint must not leave a random teacher
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
        model.eval().requires_grad_(False)

        student_classes = getattr(self.head, 'num_classes', None)
        teacher_classes = getattr(getattr(model, 'head', None),
                                  'num_classes', None)
        if None not in (student_classes, teacher_classes) and \
                student_classes != teacher_classes:
            raise ValueError(f'teacher {config} predicts {teacher_classes} '
                             f'classes, the student {student_classes}')
        if input_size is None:
            self.teacher_input_size = _input_size_of(cfg)
        else:
            self.teacher_input_size = _as_hw(input_size)
        logger.info(
            f'KD teacher: {config} from {checkpoint}, input size '
            f'{self.teacher_input_size or "same as the student"}, '
            f'kd_weight {self.kd_weight}, tau {self.tau}')
        return model

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (not a submodule; see the module docstring)."""
        return self._teacher.model

    def _teacher_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The student's normalised batch, as the teacher's preprocessor
        would have made it from the same pixels, at the teacher's size."""
        student_pre = self.data_preprocessor
        teacher_pre = self.teacher.data_preprocessor
        x = inputs
        if getattr(student_pre, '_enable_normalize', False):
            x = x * student_pre.std + student_pre.mean
        # both preprocessors start from BGR images; flip if only one of
        # them converted to RGB
        if bool(getattr(student_pre, 'to_rgb', False)) != bool(
                getattr(teacher_pre, 'to_rgb', False)) and x.size(1) == 3:
            x = x.flip(1)
        if getattr(teacher_pre, '_enable_normalize', False):
            x = (x - teacher_pre.mean) / teacher_pre.std
        size = self.teacher_input_size
        if size is not None and tuple(x.shape[-2:]) != size:
            shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            kwargs = {}
            if self.resize_mode in ('bilinear', 'bicubic'):
                kwargs = dict(align_corners=False, antialias=shrink)
            x = F.interpolate(x, size=size, mode=self.resize_mode, **kwargs)
        return x

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of the frozen teacher for the student's batch."""
        teacher = self.teacher
        # not a submodule, so model.to(device) did not move it
        first = next(itertools.chain(teacher.parameters(), teacher.buffers()),
                     None)
        if first is not None and first.device != inputs.device:
            teacher.to(inputs.device)
        logits = teacher(self._teacher_inputs(inputs), mode='tensor')
        if isinstance(logits, (tuple, list)):
            logits = logits[-1]
        return logits

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> dict:
        """Student loss on the mixed targets plus the KD term.

        Args:
            inputs (Tensor): The preprocessed (normalised, mixed) batch.
            data_samples (list[DataSample]): Targets (``gt_score`` after
                Mixup/CutMix).

        Returns:
            dict: ``loss_cls`` (the head's loss) and ``loss_kd``; mmengine
            logs their sum as ``loss`` and back-propagates it.
        """
        feats = self.extract_feat(inputs)
        # one head forward: calling head.loss() and head() would update the
        # head's BatchNorm statistics twice per batch
        student_logits = self.head(feats)
        losses = self.head._get_loss(student_logits, data_samples)
        # the head calls its loss 'loss', which is also the name mmengine
        # logs the total under (and would then hide)
        losses['loss_cls'] = losses.pop('loss')
        if self.kd_weight > 0:
            teacher_logits = self.teacher_logits(inputs)
            losses['loss_kd'] = self.kd_weight * self.tau**2 * kd_loss(
                student_logits, teacher_logits, self.tau)
        return losses
