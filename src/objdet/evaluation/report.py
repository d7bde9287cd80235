"""One self-contained HTML page that explains an evaluation: it opens offline, every picture is embedded.

Per result file: the COCO table, a sortable per-class table (AP, AP50, AR, objects, detections), PR
curves, the confusion matrix, TIDE's error breakdown (overall and per class), calibration with best-F1
thresholds, and galleries of the worst false positives and of missed objects on their images. With two
result files, the paired bootstrap comparison comes first. `write_report` is what `objdet report`,
`objdet eval --report` and the trainer call.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from objdet import __version__
from objdet.errors import EvaluationError
from objdet.evaluation.calibration import best_f1, calibration
from objdet.evaluation.coco import CocoEvaluation, evaluate
from objdet.evaluation.compare import Comparison, compare_evaluations
from objdet.evaluation.errors import ERROR_KEYS, MAIN_ERRORS, analyse_errors
from objdet.evaluation.gallery import ImageReader, ImageSource, Tile, missed_objects, worst_false_positives
from objdet.evaluation.plots import confusion_figure, confusion_matrix, png_bytes, pr_figure, reliability_figure
from objdet.evaluation.records import load_ground_truth, read_json
from objdet.io import save_text

MAX_PR_CLASSES = 12  # per-class PR curves drawn for the classes with the most objects

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
table.sortable th{cursor:pointer;user-select:none}table.sortable th[data-dir=asc]::after{content:" \\25B2"}
table.sortable th[data-dir=desc]::after{content:" \\25BC"}
.bar{display:inline-block;height:.8em;background:#d62728;vertical-align:middle}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{margin:0;width:330px}
figcaption{font-size:.8em;color:#555}.clear{font-weight:bold;color:#1a7f37}.note{color:#666;font-size:.9em}
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "desc" ? "asc" : "desc";
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var body = table.tBodies[0];
      var key = function (row) {
        var cell = row.cells[col], v = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
        var n = parseFloat(v);
        return isNaN(n) ? v.toLowerCase() : n;
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return dir === "asc" ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _num(value: float, digits: int = 3, signed: bool = False) -> str:
    """A table cell whose sort key is the number; undefined (nan, or -1 unless `signed`) shows a dash."""
    if np.isnan(value) or (not signed and value == -1):
        return '<td data-value="-1">&ndash;</td>'
    return f'<td data-value="{float(value)!r}">{value:{"+" if signed else ""}.{digits}f}</td>'


def _table(head: list[str], rows: list[list[str]], sortable: bool = False, table_id: str = "") -> str:
    attrs = (' class="sortable"' if sortable else "") + (f' id="{table_id}"' if table_id else "")
    out = [f"<table{attrs}><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(row) + "</tr>" for row in rows]
    return "\n".join(out + ["</tbody></table>"])


def _per_class_rows(ev: CocoEvaluation) -> list[list[str]]:
    per = ev.per_class()
    recall = ev.curves.recall[:, :, 0, -1]  # [T, K], area all, largest maxDets
    objects = np.bincount(ev.gt.cat[~ev.gt.crowd], minlength=len(ev.gt.cat_ids))
    dets = np.bincount(ev.dt.cat, minlength=len(ev.gt.cat_ids))
    rows = []
    for k, name in enumerate(ev.gt.cat_names):
        ar = float(recall[:, k].mean()) if (recall[:, k] > -1).all() else -1.0
        rows.append([f"<td>{_e(name)}</td>", _num(per[name]["AP"]), _num(per[name]["AP50"]), _num(ar),
                     f'<td data-value="{objects[k]}">{objects[k]}</td>', f'<td data-value="{dets[k]}">{dets[k]}</td>'])
    return rows


def _errors_section(ev: CocoEvaluation, reader: ImageReader | None, tag: str) -> str:
    if ev.params.iou_type not in ("bbox", "segm"):
        return "<p class='note'>The error breakdown is defined for boxes and masks, not keypoints.</p>"
    errors = analyse_errors(ev.gt, ev.dt, ev.params.iou_type)
    top = max([abs(v) for v in errors.errors.values()] + [1e-9])
    rows = [[f"<td>{_e(k)}</td>", _num(errors.errors[k], signed=True), f"<td>{errors.counts.get(k, '')}</td>",
             f'<td style="text-align:left"><span class="bar" style="width:{200 * max(errors.errors[k], 0) / top:.0f}px">'
             "</span></td>"] for k in ERROR_KEYS]
    parts = [f"<p>TIDE's AP at IoU 0.5 is {errors.ap:.3f}; dAP is the AP each kind of error costs "
             "(tidecv's definitions: see docs/architecture.md).</p>",
             _table(["error", "dAP", "count", ""], rows)]
    class_rows = [[f"<td>{_e(name)}</td>", _num(row["AP"])] + [_num(row[k], 4, signed=True) for k in MAIN_ERRORS]
                  for name, row in errors.per_class.items()]
    parts += ["<h3>Per class (AP change when that error is fixed)</h3>",
              "<p class='note'>Measured against the same ranking rebuilt with nothing fixed, as tidecv "
              "rebuilds it for each fix; with tied scores this baseline can differ slightly from the AP "
              "above, so class numbers need not average to the overall ones.</p>",
              _table(["class", "AP@.5"] + list(MAIN_ERRORS), class_rows, sortable=True, table_id=f"errors-{tag}")]
    if reader is None:
        parts.append("<p class='note'>No images given (--images DIR): galleries left out.</p>")
        return "\n".join(parts)
    for title, tiles in (("Worst false positives (red; objects in green)", worst_false_positives(ev, errors, reader)),
                         ("Missed objects (orange)", missed_objects(ev, errors, reader))):
        parts.append(f"<h3>{_e(title)}</h3>" + _gallery(tiles))
    return "\n".join(parts)


def _gallery(tiles: list[Tile]) -> str:
    if not tiles:
        return "<p class='note'>none</p>"
    figures = [f'<figure><img alt="{_e(t.caption)}" src="{t.uri}"><figcaption>{_e(t.caption)}</figcaption></figure>'
               for t in tiles]
    return '<div class="grid">' + "".join(figures) + "</div>"


def _model_section(ev: CocoEvaluation, name: str, tag: str, reader: ImageReader | None) -> str:
    parts = [f"<h2>{_e(name)}</h2>", "<h3>Per class</h3>",
             _table(["class", "AP", "AP50", "AR", "objects", "detections"], _per_class_rows(ev), sortable=True,
                    table_id=f"classes-{tag}"),
             "<h3>Precision/recall</h3><div class='grid'>" + _img(png_bytes(pr_figure(ev)), "PR curve, all classes")]
    objects = np.bincount(ev.gt.cat[~ev.gt.crowd], minlength=len(ev.gt.cat_ids))
    shown = [k for k in np.argsort(-objects, kind="stable")[:MAX_PR_CLASSES] if objects[k] > 0]
    parts += [_img(png_bytes(pr_figure(ev, int(k))), f"PR curve, {ev.gt.cat_names[k]}") for k in shown]
    parts.append("</div>")
    if len(shown) < len(ev.gt.cat_ids):
        parts.append(f"<p class='note'>Per-class curves for the {len(shown)} classes with the most objects.</p>")
    if ev.params.iou_type != "keypoints":
        matrix = confusion_matrix(ev, 0.5, 0.25)
        parts += ["<h3>Confusion matrix</h3>",
                  _img(png_bytes(confusion_figure(matrix, ev.gt.cat_names, "IoU >= 0.5, score >= 0.25")),
                       "confusion matrix")]
    parts += ["<h3>Error breakdown</h3>", _errors_section(ev, reader, tag)]
    cal = calibration(ev)
    f1_rows = [[f"<td>{_e(n)}</td>", _num(r["score"]), _num(r["f1"]), _num(r["precision"]), _num(r["recall"])]
               for n, r in best_f1(ev).items()]
    parts += ["<h3>Calibration</h3>",
              f"<p>Expected calibration error at IoU 0.5: <b>{cal.ece:.4f}</b> (10 equal-width score bins).</p>",
              _img(png_bytes(reliability_figure(cal)), "reliability diagram"),
              "<h3>Best-F1 score threshold per class (IoU 0.5)</h3>",
              _table(["class", "keep score >=", "F1", "precision", "recall"], f1_rows, sortable=True,
                     table_id=f"f1-{tag}")]
    return "\n".join(parts)


def _comparison_section(result: Comparison) -> str:
    pct = f"{result.level:.0%}"
    rows = []
    for group, deltas in (("", result.stats), ("AP ", result.per_class)):
        for name, d in deltas.items():
            mark = "<td class='clear'>yes</td>" if d.clear else "<td>no</td>"
            rows.append([f"<td>{_e(group + name)}</td>", _num(d.a), _num(d.b), _num(d.delta, signed=True),
                         f"<td>[{d.low:+.3f}, {d.high:+.3f}]</td>", mark])
    return "\n".join([
        "<h2>Comparison: B - A</h2>",
        f"<p>A = {_e(result.names[0])}, B = {_e(result.names[1])}. Paired bootstrap over images: "
        f"{result.n_boot} draws, seed {result.seed}. A difference stands clear of the noise when its {pct} "
        "interval excludes zero.</p>",
        _table(["metric", "A", "B", "B - A", f"{pct} interval", "clear of noise?"], rows, sortable=True,
               table_id="comparison")])


def write_report(gt: Any, dts: Sequence[Any], out: str | os.PathLike, images: ImageSource | None = None,
                 names: Sequence[str] | None = None, iou_type: str = "bbox", n_boot: int = 1000, seed: int = 0,
                 title: str = "objdet evaluation report") -> Path:
    """Write the report for one or two result sets (paths or lists) on the ground truth `gt` (dict or path).

    `images`: a folder holding the ground truth's `file_name`s, or a function of an image record
    returning a PIL image (or None); without it the galleries are left out. Written atomically.
    """
    if not 1 <= len(dts) <= 2:
        raise EvaluationError(f"a report takes one or two detection files, got {len(dts)}")
    names = list(names) if names else [str(d) if isinstance(d, (str, os.PathLike)) else f"results {i + 1}"
                                      for i, d in enumerate(dts)]
    data, path = read_json(gt, "ground truth")
    truth = load_ground_truth(data, iou_type, path=path)
    evaluations = [evaluate(truth, dt, iou_type) for dt in dts]
    records = {im.get("id"): im for im in data["images"] if isinstance(im, dict)}
    reader = ImageReader(images, records) if images is not None else None

    body = [f"<h1>{_e(title)}</h1>",
            f"<p class='note'>objdet {__version__}; ground truth: {_e(gt if isinstance(gt, (str, os.PathLike)) else 'given')}"
            f"; {len(truth.img_ids)} images, {len(truth.cat_ids)} classes, {int((~truth.crowd).sum())} objects; "
            f"iou type {iou_type}.</p>"]
    if len(evaluations) == 2:
        comparison = compare_evaluations(evaluations[0], evaluations[1], (names[0], names[1]), n_boot, seed)
        body.append(_comparison_section(comparison))
    stat_names = list(evaluations[0].stats)
    body += ["<h2>COCO summary</h2>",
             _table(["metric"] + names, [[f"<td>{_e(s)}</td>"] + [_num(ev.stats[s]) for ev in evaluations]
                                         for s in stat_names])]
    for i, (ev, name) in enumerate(zip(evaluations, names)):
        body.append(_model_section(ev, name if len(names) == 1 else f"{'AB'[i]}: {name}", "ab"[i], reader))
    if reader is not None and reader.failed:
        body.append(f"<p class='note'>{len(reader.failed)} pictures could not be read: "
                    + _e("; ".join(reader.failed[:5])) + "</p>")
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body)
            + f"\n<script>{_SCRIPT}</script></body></html>\n")
    return save_text(page, out)
