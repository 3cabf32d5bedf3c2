"""Necks: the detection feature pyramid that turns MobileMamba's
stride-16/32/64 maps into the stride-4/8-to-64/128 levels detectors expect.

Needs only torch and mmengine; :mod:`mmmobilemamba.registry` registers the
classes in mmdet's ``MODELS``.
"""
from .deconv_fpn import DeconvFPN

__all__ = ['DeconvFPN']
