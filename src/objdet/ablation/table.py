"""A study's results as a Markdown table in the seed's layout: its rows in the seed's order, our numbers
beside the seed's, and whether each row moves away from the seed's chosen design in the seed's direction."""

from __future__ import annotations

import statistics
from typing import Sequence

from objdet.ablation.runner import DEFAULT_TRAIN, RunResult
from objdet.ablation.studies import Study

_KIND = {"segm": "mask", "bbox": "box", "keypoints": "kp"}


def metric_label(metric: str) -> str:
    """'segm/AP75' -> 'mask AP75'."""
    kind, _, stat = metric.partition("/")
    return f"{_KIND.get(kind, kind)} {stat}"


def cell_values(results: Sequence[RunResult], variant: str, metric: str) -> list[float]:
    """The metric of every run (one per seed) of one row."""
    return [r.stats[metric] for r in results if r.variant == variant and metric in r.stats]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}"


def direction(ours: float | None, seed: float | None) -> str:
    """'yes' when our change from the reference row has the seed's sign, 'tie' when ours is exactly zero and
    the seed's is not, 'no' when the signs differ, '—' when either side has no number."""
    if ours is None or seed is None:
        return "—"
    sign = lambda x: (x > 0) - (x < 0)  # noqa: E731
    if sign(ours) == sign(seed):
        return "yes"
    return "tie" if ours == 0 else "no"


def beyond_noise(values: list[float], reference: list[float]) -> str:
    """'yes' when the two rows' means differ by more than twice the standard error of that difference over
    seeds (Welch), 'no' when not, '—' when either row has fewer than two seeds (no spread to compare with)."""
    if len(values) < 2 or len(reference) < 2:
        return "—"
    se = (statistics.variance(values) / len(values) + statistics.variance(reference) / len(reference)) ** 0.5
    return "yes" if abs(statistics.fmean(values) - statistics.fmean(reference)) > 2 * se else "no"


def render_table(study: Study, results: Sequence[RunResult], command: str | None = None) -> str:
    """Markdown for `study`: a heading, the command and shared settings, then one row per variant with our
    metrics (mean ± std over seeds), the seed's, the change from the reference row on both sides, whether
    the directions agree, the seeds, steps and minutes behind each row (and cost columns where asked)."""
    primary = study.metrics[0]
    seed_metrics = [m for m in study.metrics if any(v.seed and m in v.seed for v in study.variants)]
    ref = study.variant(study.reference)
    ref_values = cell_values(results, ref.name, primary)
    ours_ref = _mean(ref_values)
    seed_ref = (ref.seed or {}).get(primary)
    header = ["", *(metric_label(m) for m in study.metrics), *(f"seed {metric_label(m)}" for m in seed_metrics)]
    if study.cost:
        header += ["params (M)", "GMACs", "params ratio", "MACs ratio"]
    header += [f"Δ {metric_label(primary)} (ours)", "Δ (seed)", "seed direction matches?", "Δ > 2 s.e.?", "seeds",
               "steps", "min/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_cost = next((r for r in results if r.variant == study.variants[0].name), None)
    matches = comparable = clear = 0
    for v in study.variants:
        runs = [r for r in results if r.variant == v.name]
        row = [v.name + (" (reference)" if v.name == ref.name else "")]
        row += [_cell(cell_values(results, v.name, m)) for m in study.metrics]
        row += [f"{v.seed[m]:.1f}" if v.seed and m in v.seed else "—" for m in seed_metrics]
        if study.cost:
            run = runs[0] if runs else None
            row += [f"{run.parameters / 1e6:.2f}" if run else "—",
                    f"{run.flops / 1e9:.3f}" if run and run.flops is not None else "—"]
            row += [f"{run.parameters / base_cost.parameters:.2f}x" if run and base_cost else "—",
                    f"{run.flops / base_cost.flops:.2f}x" if run and base_cost and run.flops and base_cost.flops
                    else "—"]
        if v.name == ref.name:
            row += ["0", "0", "(reference)", "—"]
        else:
            values = cell_values(results, v.name, primary)
            ours = _mean(values)
            d_ours = None if ours is None or ours_ref is None else ours - ours_ref
            seed_value = (v.seed or {}).get(primary)
            d_seed = None if seed_value is None or seed_ref is None else seed_value - seed_ref
            verdict = direction(d_ours, d_seed)
            noise = beyond_noise(values, ref_values)
            comparable += verdict in ("yes", "no")
            matches += verdict == "yes"
            clear += verdict == "yes" and noise == "yes"
            row += [_signed(d_ours), _signed(d_seed), verdict, noise]
        row += [str(len({r.seed for r in runs})), "/".join(sorted({str(r.steps) for r in runs})) or "—",
                f"{statistics.fmean(r.seconds for r in runs) / 60:.1f}" if runs else "—"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([*_preamble(study, results, command), "", *lines, "",
                      f"Direction of the seed's result reproduced in {matches} of {comparable} comparable rows "
                      f"({metric_label(primary)}, change from the reference row; exact ties not counted)"
                      + (f", {clear} of them by more than twice the standard error over seeds."
                         if len(ref_values) > 1 else "; one seed per cell, so no row is shown clear of seed noise.")])


def _preamble(study: Study, results: Sequence[RunResult], command: str | None) -> list[str]:
    settings = {**DEFAULT_TRAIN, **study.train}
    seeds = sorted({r.seed for r in results})
    shared = ", ".join(f"{k}={v}" for k, v in study.base.items())
    lines = [f"### {study.title}", "", f"Seed: {study.source}."]
    if command:
        lines += ["", f"`{command}`"]
    lines += ["", f"Model `{study.model}` ({shared}); every row trains from the same seed "
                  f"(seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds)) or '—'}) on the same batches: "
                  f"{settings['optimizer']} lr {settings['lr']}, {settings['schedule']} schedule, "
                  f"{settings['batch_size']} images per step"
                  + (", bfloat16 autocast" if settings.get("amp") else "") + ". AP in % on held-out data"
                  + (f" ({results[0].data})." if results and results[0].data else ".")]
    if study.note:
        lines += ["", f"Note: {study.note}."]
    return lines
