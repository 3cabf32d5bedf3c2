"""Comparing a deployed dense model's outputs with PyTorch's, with ties
handled on purpose (numpy only).

* Label maps: pixels whose two best class logits are within ``eps`` of
  each other are ties; either class is right there, so they are counted
  apart and not compared.
* Detections: both lists are ordered by score; runs of detections whose
  scores are within ``score_eps`` (a tie group) may come in any order, so
  each group is matched as a set (same label, nearest box). When a list
  was cut at ``max_per_img`` inside a tie group, which members made it is
  arbitrary: that last group is not compared.
"""
from typing import Optional, Tuple

import numpy as np


def label_agreement(ref: np.ndarray, got: np.ndarray,
                    logits: Optional[np.ndarray] = None,
                    eps: float = 1e-4) -> Tuple[int, int, int]:
    """(pixels compared, of them different, ties skipped).

    Args:
        ref, got (ndarray): Label maps of one shape.
        logits (ndarray, optional): PyTorch's class logits (C, ...) of
            ``ref`` (class axis first); without them no pixel is a tie.
        eps (float): Top-2 margin at or below which a pixel is a tie.
    """
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        raise ValueError(f'label maps of shapes {ref.shape} and {got.shape}')
    tie = np.zeros(ref.shape, bool)
    if logits is not None:
        logits = np.asarray(logits, np.float32)
        if logits.shape[0] > 1:
            top2 = -np.partition(-logits, 1, axis=0)[:2]
            tie = (top2[0] - top2[1]) <= eps
        tie = tie.reshape(ref.shape)
    compared = ~tie
    differ = int(((ref != got) & compared).sum())
    return int(compared.sum()), differ, int(tie.sum())


def _groups(scores: np.ndarray, eps: float):
    """[start, end) runs of a descending score list within ``eps``."""
    bounds = [0]
    for i in range(1, len(scores)):
        if scores[i - 1] - scores[i] > eps:
            bounds.append(i)
    bounds.append(len(scores))
    return list(zip(bounds[:-1], bounds[1:]))


def compare_detections(ref_dets: np.ndarray, ref_labels: np.ndarray,
                       got_dets: np.ndarray, got_labels: np.ndarray,
                       max_per_img: int = -1, score_eps: float = 1e-5
                       ) -> dict:
    """Match two detection lists (N, 5) / (N,), see the module docstring.

    Returns:
        dict: ``count`` (ref, got), ``compared`` (detections compared),
        ``unmatched`` (of them without a partner of the same label in the
        tie group), ``box_diff`` and ``score_diff`` (largest absolute
        differences of matched pairs), ``skipped`` (detections of a tie
        group cut by ``max_per_img``).
    """
    rd = np.asarray(ref_dets, np.float64).reshape(-1, 5)
    gd = np.asarray(got_dets, np.float64).reshape(-1, 5)
    rl = np.asarray(ref_labels).reshape(-1)
    gl = np.asarray(got_labels).reshape(-1)
    ro = np.argsort(-rd[:, 4], kind='stable')
    go = np.argsort(-gd[:, 4], kind='stable')
    rd, rl, gd, gl = rd[ro], rl[ro], gd[go], gl[go]
    out = dict(count=(len(rd), len(gd)), compared=0, unmatched=0,
               box_diff=0., score_diff=0., skipped=0)
    n = min(len(rd), len(gd))
    groups = _groups(rd[:n, 4], score_eps)
    cut = max_per_img > 0 and max(len(rd), len(gd)) >= max_per_img
    if groups and cut:
        start, end = groups.pop()
        out['skipped'] = end - start
    for start, end in groups:
        pool = list(range(start, end))
        for i in range(start, end):
            cands = [j for j in pool if gl[j] == rl[i]]
            out['compared'] += 1
            if not cands:
                out['unmatched'] += 1
                continue
            diffs = [np.abs(gd[j, :4] - rd[i, :4]).max() for j in cands]
            j = cands[int(np.argmin(diffs))]
            pool.remove(j)
            out['box_diff'] = max(out['box_diff'], float(min(diffs)))
            out['score_diff'] = max(out['score_diff'],
                                    float(abs(gd[j, 4] - rd[i, 4])))
    return out


def mask_difference(ref_dets: np.ndarray, ref_labels: np.ndarray,
                    ref_masks: np.ndarray, got_dets: np.ndarray,
                    got_labels: np.ndarray, got_masks: np.ndarray
                    ) -> Tuple[int, int]:
    """(mask pixels compared, of them different): each reference detection
    is paired with the detection of the same label and nearest box."""
    compared = differ = 0
    got_dets = np.asarray(got_dets).reshape(-1, 5)
    for det, label, mask in zip(np.asarray(ref_dets).reshape(-1, 5),
                                np.asarray(ref_labels), ref_masks):
        same = np.nonzero(np.asarray(got_labels) == label)[0]
        if len(same) == 0:
            continue
        j = same[np.abs(got_dets[same, :4] - det[:4]).max(1).argmin()]
        compared += mask.size
        differ += int((np.asarray(mask, bool) !=
                       np.asarray(got_masks[j], bool)).sum())
    return compared, differ


def detections_agree(result: dict, box_tol: float = 1e-3,
                     score_tol: float = 1e-4) -> bool:
    """Whether :func:`compare_detections` found the lists equal."""
    ref_n, got_n = result['count']
    counts_ok = ref_n == got_n or result['skipped'] > 0
    return (counts_ok and result['unmatched'] == 0
            and result['box_diff'] <= box_tol
            and result['score_diff'] <= score_tol)


def describe_detections(result: dict) -> str:
    ref_n, got_n = result['count']
    return (f'{got_n} detections (PyTorch {ref_n}); {result["compared"]} '
            f'compared, {result["unmatched"]} without a partner, largest box '
            f'difference {result["box_diff"]:.3g} px, score difference '
            f'{result["score_diff"]:.3g}' +
            (f'; {result["skipped"]} in a tie group cut at max_per_img not '
             'compared' if result['skipped'] else ''))
