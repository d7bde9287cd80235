"""Beyond the 12 numbers: precision/recall curves, a confusion matrix, a reliability diagram.

All are read from one `CocoEvaluation`, so they agree with its stats: PR curves are pycocotools'
interpolated precision at the 101 recall points (area "all", largest maxDets). The confusion matrix is class-agnostic box matching per image (greedy by IoU, one
to one, crowd ground truth left out) of detections above a score threshold, with a background row
(detections that found nothing) and column (objects nobody found). PNGs are drawn with matplotlib's
Agg canvas, without pyplot's global state.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from objdet.evaluation.calibration import Calibration, calibration, threshold_index
from objdet.evaluation.coco import CocoEvaluation
from objdet.evaluation.overlap import xywh_to_xyxy, xyxy_iou_pairs
from objdet.evaluation.pairs import group_cross, key_ranges


def pr_curve(ev: CocoEvaluation, iou: float = 0.5, category: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(recall points, interpolated precision) for one category index, or averaged over categories (None).

    Precision is -1 where a category has no ground truth; the average skips those.
    """
    t = threshold_index(ev, iou)
    precision = ev.curves.precision[t, :, :, 0, -1]  # [R, K]
    if category is not None:
        return ev.params.rec_thrs, precision[:, category]
    defined = precision > -1
    mean = np.where(defined.any(axis=1), np.where(defined, precision, 0).sum(axis=1) / np.maximum(defined.sum(axis=1), 1), -1)
    return ev.params.rec_thrs, mean


def confusion_matrix(ev: CocoEvaluation, iou: float = 0.5, score: float = 0.25) -> np.ndarray:
    """[K+1, K+1] counts: row = true class (last: background), column = predicted class (last: background)."""
    n_cat = len(ev.gt.cat_ids)
    matrix = np.zeros((n_cat + 1, n_cat + 1), dtype=np.int64)
    g_rows = np.flatnonzero(~ev.gt.crowd)
    g_rows = g_rows[np.argsort(ev.gt.img[g_rows], kind="stable")]
    d_rows = np.flatnonzero(ev.dt.score >= score)
    d_rows = d_rows[np.lexsort((-ev.dt.score[d_rows], ev.dt.img[d_rows]))]
    det, g = group_cross(*key_ranges(ev.gt.img[g_rows], ev.dt.img[d_rows]))
    overlap = xyxy_iou_pairs(xywh_to_xyxy(ev.dt.bbox[d_rows[det]]), xywh_to_xyxy(ev.gt.bbox[g_rows[g]]))
    keep = overlap >= iou
    det, g, overlap = det[keep], g[keep], overlap[keep]
    det_used = np.zeros(len(d_rows), dtype=bool)
    gt_used = np.zeros(len(g_rows), dtype=bool)
    for i in np.lexsort((det, -overlap)).tolist():  # highest IoU first, then higher-scored detection
        if not det_used[det[i]] and not gt_used[g[i]]:
            det_used[det[i]] = gt_used[g[i]] = True
            matrix[ev.gt.cat[g_rows[g[i]]], ev.dt.cat[d_rows[det[i]]]] += 1
    matrix[:, n_cat] += np.bincount(ev.gt.cat[g_rows[~gt_used]], minlength=n_cat + 1)  # missed objects
    matrix[n_cat, :] += np.bincount(ev.dt.cat[d_rows[~det_used]], minlength=n_cat + 1)  # background detections
    return matrix


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (for pages that embed their pictures)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def pr_figure(ev: CocoEvaluation, category: int | None = None) -> Figure:
    """PR curves at IoU .50 and .75 of one category index, or of the mean over categories (None)."""
    name = "all classes" if category is None else ev.gt.cat_names[category]
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot()
    for iou in (0.5, 0.75):
        recall, precision = pr_curve(ev, iou, category)
        if (precision > -1).any():
            ax.plot(recall, precision, label=f"IoU={iou:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"PR: {name}")
    if ax.lines:
        ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def plot_pr_curves(ev: CocoEvaluation, out_dir: str | Path) -> list[Path]:
    """One PNG per category and one for the mean over categories, each with the IoU .50 and .75 curves."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in [(None, "all classes")] + list(enumerate(ev.gt.cat_names)):
        stem = "pr_all" if k is None else f"pr_{k + 1:03d}_{_slug(name)}"
        paths.append(_save(pr_figure(ev, k), out_dir / f"{stem}.png"))
    return paths


def confusion_figure(matrix: np.ndarray, names: list[str], title: str = "") -> Figure:
    """A confusion matrix (rows true, columns predicted, last of each: background), log-scaled colours."""
    labels = list(names) + ["background"]
    size = max(4.0, 0.35 * len(labels) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(np.log1p(matrix), cmap="Blues")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if len(labels) <= 25:
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], path: str | Path, title: str = "") -> Path:
    """Draw a confusion matrix (rows true, columns predicted, last of each: background) to a PNG."""
    return _save(confusion_figure(matrix, names, title), Path(path))


def reliability_figure(cal: Calibration, title: str = "") -> Figure:
    """Reliability diagram: fraction correct per score bin against the diagonal, bar width = bin."""
    fig = Figure(figsize=(4.5, 4))
    ax = fig.add_subplot()
    filled = cal.count > 0
    lefts, widths = cal.bin_edges[:-1], np.diff(cal.bin_edges)
    ax.bar(lefts[filled], cal.precision[filled], width=widths[filled], align="edge", edgecolor="black",
           color="#4C72B0", label="fraction correct")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="score", ylabel="fraction correct", title=title or f"ECE {cal.ece:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def write_plots(ev: CocoEvaluation, out_dir: str | Path, iou: float = 0.5, score: float = 0.25) -> list[Path]:
    """All PNGs of an evaluation into `out_dir`: PR curves, the confusion matrix, the reliability diagram."""
    paths = plot_pr_curves(ev, out_dir)
    matrix = confusion_matrix(ev, iou, score)
    title = f"IoU >= {iou:g}, score >= {score:g}"
    paths.append(plot_confusion_matrix(matrix, ev.gt.cat_names, Path(out_dir) / "confusion_matrix.png", title))
    paths.append(_save(reliability_figure(calibration(ev, iou)), Path(out_dir) / "reliability.png"))
    return paths
