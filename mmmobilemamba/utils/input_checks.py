"""Name the file, and what to do, when a dataset file cannot be read.

Left alone, a truncated image fails as ``AssertionError: failed to load
image`` (or ``'NoneType' object has no attribute 'squeeze'`` for an mmseg
label map) inside a dataloader worker, and a COCO annotation file that is
not JSON as a ``TypeError`` about ``JSONDecodeError.__init__`` arguments.
:func:`install` (called by :mod:`mmmobilemamba.registry`) replaces the three
readers with subclasses that raise :class:`BadInputFileError` naming the
file:

* ``LoadImageFromFile`` (mmcv; used by every toolbox's pipelines),
* mmseg's ``LoadAnnotations`` (label maps),
* mmdet's ``CocoDataset.COCOAPI`` (the annotation file).

Images are also checked before they are decoded (:func:`check_image_file`):
an empty file is named as such, and one whose header declares more pixels
than :func:`max_image_pixels` is refused, before a decoder or a resize
allocates for it (a 10000x10000 PNG of a few kB makes mmseg's test pipeline
ask for tens of GB). mmpretrain's inferencer reads images with its own
``imread``; :func:`checked_imread` stands in for it.

Behaviour on readable files within the limit is unchanged.
"""
import functools
import json
import os
import os.path as osp

#: Environment variable overriding the pixel limit of :func:`max_image_pixels`.
MAX_PIXELS_ENV = 'MMMOBILEMAMBA_MAX_IMAGE_PIXELS'


class BadInputFileError(ValueError):
    """A dataset file is truncated, damaged or in the wrong format."""


def _public(cls):
    """Give a class built on demand a module-level name (pickle finds it
    through the module's ``__getattr__``, e.g. in spawned workers)."""
    cls.__module__ = __name__
    cls.__qualname__ = cls.__name__
    return cls


def __getattr__(name: str):
    builders = dict(LoadImageFromFile=_load_image_class,
                    LoadAnnotations=_seg_annotations_class,
                    CheckedCOCO=_coco_api_class)
    if name in builders:
        return builders[name]()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _size(path) -> str:
    try:
        return f'{osp.getsize(path)} bytes'
    except (OSError, TypeError):
        return 'size unknown'


def unreadable(path, what: str, err: BaseException) -> BadInputFileError:
    """The error for a dataset file that could not be decoded."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else ''
    return BadInputFileError(
        f'cannot read {what} {path} ({_size(path)}): {type(err).__name__}'
        f'{": " + reason if reason else ""}. The file is truncated, damaged '
        'or not in a supported format. Replace it with an intact copy '
        '(re-extract or re-download the dataset), or remove it together '
        'with its entry in the annotations.')


def max_image_pixels() -> int:
    """The most pixels (width x height) an input image may declare:
    ``MMMOBILEMAMBA_MAX_IMAGE_PIXELS`` if set, else Pillow's
    decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89.5 M)."""
    text = os.environ.get(MAX_PIXELS_ENV, '').strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f'{MAX_PIXELS_ENV}={text!r} is not an integer'
                             ) from None
        if value < 1:
            raise ValueError(f'{MAX_PIXELS_ENV} must be >= 1, got {value}')
        return value
    from PIL import Image
    return int(Image.MAX_IMAGE_PIXELS or 89478485)


def check_image_file(path, what: str = 'image') -> None:
    """Refuse an empty local image file, or one whose header declares more
    than :func:`max_image_pixels` pixels, naming the file. Reads only the
    header (Pillow); formats Pillow does not know are left to the decoder.

    Raises:
        BadInputFileError: Empty, or above the pixel limit.
    """
    if not isinstance(path, (str, os.PathLike)) or not osp.isfile(path):
        return  # remote, in memory or missing: the reader names it
    if osp.getsize(path) == 0:
        raise unreadable(path, what, EOFError('the file is empty'))
    import warnings

    from PIL import Image, UnidentifiedImageError
    limit = max_image_pixels()
    try:
        # Pillow warns on large images; the message below says more
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(path) as img:
                width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return
    if width * height > limit:
        raise BadInputFileError(
            f'{what} {path} declares {width}x{height} = {width * height} '
            f'pixels, above the limit of {limit} (Pillow\'s decompression-'
            f'bomb convention). Resize it, or raise the limit with '
            f'{MAX_PIXELS_ENV}=N if you trust the file.')


def checked_imread(img, *args, **kwargs):
    """mmcv's ``imread`` for mmpretrain's inferencer: a file is checked
    first (:func:`check_image_file`), and one that cannot be decoded is
    named instead of returning None."""
    from mmcv.image import imread
    check_image_file(img)
    try:
        result = imread(img, *args, **kwargs)
    except Exception as err:  # noqa: BLE001  (cv2 assertions and the like)
        raise unreadable(img, 'image', err) from None
    if result is None:
        raise unreadable(img, 'image', ValueError('no decoder could read it'))
    return result


@functools.lru_cache(maxsize=None)
def _load_image_class():
    from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile

    class LoadImageFromFile(MMCVLoadImageFromFile):
        """mmcv's ``LoadImageFromFile`` that names an undecodable file."""

        def transform(self, results: dict):
            check_image_file(results.get('img_path'))
            try:
                return super().transform(results)
            except Exception as err:  # noqa: BLE001  (cv2, PIL, assert)
                raise unreadable(results.get('img_path'), 'image',
                                 err) from None

    return _public(LoadImageFromFile)


@functools.lru_cache(maxsize=None)
def _seg_annotations_class():
    from mmseg.datasets.transforms import LoadAnnotations as SegLoad

    class LoadAnnotations(SegLoad):
        """mmseg's ``LoadAnnotations`` that names an undecodable label
        map."""

        def _load_seg_map(self, results: dict) -> None:
            try:
                super()._load_seg_map(results)
            except Exception as err:  # noqa: BLE001
                raise unreadable(results.get('seg_map_path'),
                                 'segmentation label map', err) from None

    return _public(LoadAnnotations)


@functools.lru_cache(maxsize=None)
def _coco_api_class():
    from mmdet.datasets.api_wrappers import COCO

    class CheckedCOCO(COCO):
        """mmdet's COCO API that names an annotation file that is not
        JSON."""

        def __init__(self, annotation_file=None) -> None:
            try:
                super().__init__(annotation_file)
            except (ValueError, UnicodeDecodeError) as err:
                detail = (f'{err.msg} at line {err.lineno} column '
                          f'{err.colno}' if isinstance(
                              err, json.JSONDecodeError) else str(err))
                raise BadInputFileError(
                    f'COCO annotation file {annotation_file} '
                    f'({_size(annotation_file)}) is not valid JSON: '
                    f'{detail}. It is probably truncated (an interrupted '
                    'download or copy): fetch or regenerate it, e.g. '
                    'python tools/dataset_converters/make_coco.py ROOT for '
                    'a small generated dataset.') from None

    return _public(CheckedCOCO)


def install(scope: str) -> None:
    """Put the checked readers into the registries of toolbox ``scope``
    ('mmpretrain', 'mmdet' or 'mmseg'); mmcv's is installed with any."""
    from mmcv.transforms.builder import TRANSFORMS as MMCV_TRANSFORMS
    load_image = _load_image_class()
    MMCV_TRANSFORMS.register_module(module=load_image, force=True)
    if scope == 'mmpretrain':
        # mmpretrain registers mmcv's class in its own registry too
        from mmpretrain.registry import TRANSFORMS
        TRANSFORMS.import_from_location()  # else it re-registers later
        TRANSFORMS.register_module(module=load_image, force=True)
    elif scope == 'mmseg':
        from mmseg.registry import TRANSFORMS
        TRANSFORMS.import_from_location()
        TRANSFORMS.register_module(module=_seg_annotations_class(),
                                   force=True)
    elif scope == 'mmdet':
        from mmdet.datasets import CocoDataset
        if CocoDataset.COCOAPI.__name__ != 'CheckedCOCO':
            CocoDataset.COCOAPI = _coco_api_class()
