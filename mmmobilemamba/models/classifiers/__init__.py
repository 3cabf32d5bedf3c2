"""Classifiers (need mmpretrain).

Nothing is imported here so that ``mmmobilemamba.models`` stays importable
without mmpretrain; use ``mmmobilemamba.models.classifiers.kd_classifier``.
"""
