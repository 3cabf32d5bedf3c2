"""Classification heads (need mmpretrain).

Nothing is imported here so that ``mmmobilemamba.models`` stays importable
without mmpretrain; use ``mmmobilemamba.models.heads.bn_linear_head``.
"""
