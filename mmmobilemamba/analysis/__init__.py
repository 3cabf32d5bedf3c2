"""What the analysis tools measure, kept importable so tests can check it.

:mod:`.dense_parts`: the part of a detector or segmentor (backbone + neck +
dense head) that ``get_flops.py`` and ``benchmark.py`` count and time; it
builds mmdet / mmseg models, so it is imported on demand.
:mod:`.erf`: effective receptive field maps (``visualize_erf.py``).
"""
