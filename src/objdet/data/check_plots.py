"""The PNG plots of `objdet data check --plots DIR`: objects per class, box sizes with COCO's bands, aspect
ratios, where box centres fall in the image, and anchor coverage per class when a model was given."""

from __future__ import annotations

import math
from pathlib import Path

from objdet.data.check import LARGE, SMALL, CheckReport


def write_plots(report: CheckReport, out: str | Path) -> list[Path]:
    """Write the report's plots into folder `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig: plt.Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.3 * max(1, len(report.classes))))
    ax.barh(report.classes[::-1], [report.objects[c] for c in report.classes[::-1]], color="tab:blue")
    ax.set_xlabel("objects")
    ax.set_title(f"objects per class ({report.images} images, {report.empty_images} empty)")
    save(fig, "classes.png")

    if report.sides:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        low, high = max(1.0, min(report.sides)), max(report.sides) * 1.01
        bins = [low * (high / low) ** (k / 40) for k in range(41)] if high > low else 10
        ax.hist(report.sides, bins=bins, color="tab:blue")
        ax.set_xscale("log")
        for edge, text in ((math.sqrt(SMALL), "small | medium"), (math.sqrt(LARGE), "medium | large")):
            ax.axvline(edge, color="tab:red", linestyle="--")
            ax.text(edge, ax.get_ylim()[1] * 0.95, f" {text}", color="tab:red", fontsize=8, va="top")
        ax.set_xlabel("box side sqrt(w * h), image pixels")
        ax.set_ylabel("boxes")
        ax.set_title("box sizes: " + ", ".join(f"{b} {report.bands[b]}" for b in ("small", "medium", "large")))
        save(fig, "box_sizes.png")

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist([math.log2(a) for a in report.aspects], bins=40, color="tab:green")
        ax.set_xlabel("log2(width / height): 0 square, 1 twice as wide, -1 twice as tall")
        ax.set_ylabel("boxes")
        ax.set_title("box aspect ratios")
        save(fig, "aspect_ratios.png")

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.hist2d([c[0] for c in report.centres], [c[1] for c in report.centres], bins=20,
                  range=[[0, 1], [0, 1]], cmap="viridis")
        ax.invert_yaxis()
        ax.set_xlabel("centre x / image width")
        ax.set_ylabel("centre y / image height")
        ax.set_title("where boxes are")
        save(fig, "box_centres.png")

    if report.coverage and report.coverage["per_class"]:
        rows = report.coverage["per_class"]
        fig, ax = plt.subplots(figsize=(6, 0.8 + 0.3 * len(rows)))
        names = list(rows)[::-1]
        shares = [100 * rows[n]["uncovered"] for n in names]
        ax.barh(names, shares, color="tab:orange")
        for y, share in enumerate(shares):
            ax.text(share + 1, y, f"{share:.1f}% of {rows[names[y]]['boxes']}", va="center", fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"% of boxes whose best anchor IoU < {report.coverage['threshold']}")
        ax.set_title(f"anchor coverage: {report.coverage.get('model', '')}")
        save(fig, "anchor_coverage.png")
    return written
