"""Ablation studies: the tables as data, the FLOP counter against closed forms, the Markdown layout and the
direction check against hand-made results, and a whole (tiny) study trained, saved, resumed and rendered."""

import dataclasses
import json
import re

import pytest
import torch
from torch import nn

from objdet import cli
from objdet.ablation import cost, runner
from objdet.ablation.runner import RunResult, open_data, run_study, run_variant
from objdet.ablation.studies import STUDIES, Study, Variant, get_study
from objdet.ablation.table import beyond_noise, direction, render_table
from objdet.errors import ConfigError
from objdet.zoo import build


@pytest.fixture(autouse=True)
def one_thread():
    """These tests train and build detectors: one thread each is fastest on a CPU shared by test workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the studies as data ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STUDIES))
def test_rows_differ_only_in_the_varied_fields(name):
    study = STUDIES[name]
    configs = [study.config(v) for v in study.variants]
    varied = set().union(*(v.overrides for v in study.variants))
    for config in configs:
        assert {k: v for k, v in config.items() if k not in varied} == {k: v for k, v in study.base.items()
                                                                      if k not in varied}
    # every row sets every varied field, so no row silently inherits a value another row changes
    assert all(set(v.overrides) == varied for v in study.variants)
    frozen = [tuple(sorted((k, repr(c[k])) for k in varied)) for c in configs]
    assert len(set(frozen)) == len(frozen), "two rows of the study are the same run"
    assert study.variant(study.reference).name == study.reference
    assert study.metrics[0].split("/")[0] in ("bbox", "segm")


@pytest.mark.parametrize("name", list(STUDIES))
def test_varied_fields_reach_the_built_model(name):
    """Build the reference row and one other: the model's config holds each row's value for every field."""
    study = STUDIES[name]
    rows = [study.variant(study.reference), next(v for v in study.variants if v.name != study.reference)]
    for row in rows:
        model = build(study.model, num_classes=5, **study.config(row))
        built = dataclasses.asdict(model.config)
        for key, value in study.config(row).items():
            assert built[key] == (list(value) if isinstance(value, tuple) and isinstance(built[key], list) else value)


def test_roi_study_rows_change_the_pooling_operator():
    study = STUDIES["roi"]
    kinds = {v.name: build(study.model, num_classes=5, **study.config(v)).box_stage.pooler.kind for v in study.variants}
    assert kinds == {"RoIPool (max)": "pool", "RoIWarp (max)": "warp", "RoIWarp (avg)": "warp_avg",
                     "RoIAlign (max)": "align_max", "RoIAlign (avg)": "align"}


def test_seed_rows_are_the_lecture_tables():
    """Spot checks against the seed (Mask R-CNN Table 2, Focal Loss Table 1, EfficientDet Table 5)."""
    assert STUDIES["roi"].variant("RoIAlign (avg)").seed["segm/AP"] == 30.3
    assert STUDIES["mask-loss"].variant("softmax").seed["segm/AP"] == 24.8
    assert STUDIES["loss"].variant("CE alpha=.25").seed["bbox/AP"] == 10.8
    assert STUDIES["anchors"].variant("2 scales, 3 ratios").seed["bbox/AP"] == 34.2
    assert STUDIES["bifpn"].variant("Repeated FPN+PANet").seed["bbox/AP"] == 44.08
    assert [v.name for v in STUDIES["anchors"].variants] == [
        "1 scale, 1 ratio", "2 scales, 1 ratio", "3 scales, 1 ratio",
        "1 scale, 3 ratios", "2 scales, 3 ratios", "3 scales, 3 ratios"]


def test_unknown_study_and_row_are_config_errors():
    with pytest.raises(ConfigError, match="known"):
        get_study("nope")
    with pytest.raises(ConfigError, match="no row"):
        STUDIES["roi"].variant("RoIMagic")


# --- cost ------------------------------------------------------------------------------------------------


def test_flops_and_parameters_match_closed_forms():
    h, w = 10, 14
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1, stride=2), nn.Flatten(),
                        nn.Linear(4 * 5 * 7, 6))
    macs = h * w * 8 * 3 * 9 + 5 * 7 * 4 * 8 + 4 * 5 * 7 * 6
    params = (8 * 3 * 9 + 8) + (4 * 8 + 4) + (4 * 5 * 7 * 6 + 6)
    assert cost.count_flops(net, torch.rand(1, 3, h, w)) == macs
    assert cost.count_flops(net, torch.rand(2, 3, h, w)) == 2 * macs
    assert cost.count_parameters(net) == params
    assert net.training, "counting must leave the module's mode as it was"


def test_bifpn_costs_more_than_nothing_and_panet_more_than_fpn():
    """PANet adds a bottom-up pass to the top-down one, so it has more parameters and multiply-adds."""
    study = STUDIES["bifpn"]
    image = torch.rand(3, 64, 64)
    counts = {}
    for name in ("Repeated top-down FPN", "Repeated FPN+PANet"):
        model = build(study.model, num_classes=5, **{**study.config(study.variant(name)), "image_size": 64})
        counts[name] = (cost.count_parameters(model), cost.count_flops(model, [image]))
    assert all(a < b for a, b in zip(counts["Repeated top-down FPN"], counts["Repeated FPN+PANet"]))


# --- tables ----------------------------------------------------------------------------------------------


def _results(study: Study, value) -> list[RunResult]:
    return [RunResult(study.name, v.name, seed, 7, 4, 60.0, {m: value(v, m, seed) for m in study.metrics}, 10**6, None,
                      study.config(v)) for v in study.variants for seed in (0, 1)]


def _rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


@pytest.mark.parametrize("name", ["roi", "loss", "bifpn"])
def test_table_has_the_seed_rows_in_order_and_checks_directions(name):
    study = STUDIES[name]
    primary = study.metrics[0]
    seed_ref = study.variant(study.reference).seed[primary]

    # ours = the seed's numbers shifted: every direction must agree
    follow = render_table(study, _results(study, lambda v, m, s: (v.seed or {}).get(m, seed_ref) - 5.0 + s))
    header, _, *rows = _rows(follow)
    assert [r[0].replace(" (reference)", "") for r in rows] == [v.name for v in study.variants]
    verdicts = [r[header.index("seed direction matches?")] for r in rows]
    assert verdicts == ["(reference)" if v.name == study.reference else "yes" if v.seed and primary in v.seed
                        else "—" for v in study.variants]
    seed_col = header.index(f"seed {'mask' if primary.startswith('segm') else 'box'} AP")
    for row, v in zip(rows, study.variants):
        assert row[seed_col] == (f"{v.seed[primary]:.1f}" if v.seed and primary in v.seed else "—")
        assert row[header.index("seeds")] == "2"
        # mean ± std over the two seeds (values s and s + 1 apart: std = 1/sqrt(2))
        assert row[1].endswith("± 0.7")
    # seeds 0 and 1 differ by 1 in every row (s.e. of a difference 0.71): clear of noise beyond 1.41 points
    noise = [r[header.index("Δ > 2 s.e.?")] for r in rows]
    assert noise == ["—" if v.name == study.reference else "yes" if abs((v.seed or {}).get(primary, seed_ref)
                                                                       - seed_ref) > 2 * 0.5 ** 0.5 else "no"
                     for v in study.variants]

    # ours = the seed's numbers mirrored around the reference: every comparable direction must disagree
    against = render_table(study, _results(study, lambda v, m, s: 2 * seed_ref - (v.seed or {}).get(m, seed_ref)))
    header, _, *rows = _rows(against)
    verdicts = [r[header.index("seed direction matches?")] for r in rows]
    assert "yes" not in verdicts
    comparable = sum(1 for v in study.variants if v.name != study.reference and v.seed and primary in v.seed
                     and v.seed[primary] != seed_ref)
    assert verdicts.count("no") == comparable
    assert f"reproduced in 0 of {comparable} comparable rows" in against


def test_cost_columns_give_ratios_to_the_first_row():
    study = STUDIES["bifpn"]
    results = [RunResult(study.name, v.name, 0, 1, 4, 1.0, {"bbox/AP": 1.0}, 1_000_000 * (i + 1), 2 * 10**9 * (i + 1),
                         {}) for i, v in enumerate(study.variants)]
    header, _, *rows = _rows(render_table(study, results))
    assert [r[header.index("params ratio")] for r in rows] == [f"{i + 1:.2f}x" for i in range(len(rows))]
    assert [r[header.index("GMACs")] for r in rows] == [f"{2 * (i + 1):.3f}" for i in range(len(rows))]


def test_beyond_noise_is_welch_two_standard_errors():
    # means 0 and 3, each with variance 1 over 2 seeds: s.e. of the difference = 1, so 3 > 2 s.e.
    assert beyond_noise([-0.7071, 0.7071], [3 - 0.7071, 3 + 0.7071]) == "yes"
    assert beyond_noise([-0.7071, 0.7071], [1.9, 2.1]) == "yes"  # 2.0 > 2 * sqrt(0.5 + 0.01)
    assert beyond_noise([-0.7071, 0.7071], [1.0, 1.2]) == "no"
    assert beyond_noise([1.0], [5.0, 6.0]) == "—"


def test_direction():
    assert direction(1.0, 2.0) == "yes" and direction(-1.0, -0.1) == "yes"
    assert direction(1.0, -2.0) == "no" and direction(0.0, 1.0) == "tie" and direction(0.0, 0.0) == "yes"
    assert direction(None, 1.0) == "—" and direction(1.0, None) == "—"


# --- a whole study on a tiny budget ----------------------------------------------------------------------

TINY = Study(
    "tiny", "tiny focal loss study", "test", "retinanet_r18_fpn",
    dict(min_size=64, max_size=64, fpn_channels=16, head_depth=1, backbone_norm="GN", trainable_layers=5,
         detections_per_img=20, candidates=50),
    (Variant("CE", {"gamma": 0.0}, {"bbox/AP": 1.0}), Variant("FL", {"gamma": 2.0}, {"bbox/AP": 2.0})),
    "FL", ("bbox/AP", "bbox/AP50"), train={"batch_size": 2},
)


def test_run_study_trains_saves_reuses_and_renders(tmp_path):
    logs = []
    results = run_study(TINY, steps=2, out=tmp_path, val_images=2, log=logs.append)
    assert [(r.variant, r.seed, r.steps, r.batch_size) for r in results] == [("CE", 0, 2, 2), ("FL", 0, 2, 2)]
    for r in results:
        assert set(TINY.metrics) <= set(r.stats) and all(0.0 <= r.stats[m] <= 100.0 for m in TINY.metrics)
        saved = json.loads((tmp_path / "tiny" / f"{r.variant.lower()}-seed0.json").read_text())
        assert saved["config"]["gamma"] == {"CE": 0.0, "FL": 2.0}[r.variant] and saved["steps"] == 2
        assert (tmp_path / "tiny" / f"{r.variant.lower()}-seed0" / "last.pt").exists()
    assert sum("training 2 steps" in line for line in logs) == 2

    # a second call finds both runs and trains nothing; a different step count retrains
    logs.clear()
    again = run_study(TINY, steps=2, out=tmp_path, val_images=2, log=logs.append)
    assert [r.stats for r in again] == [r.stats for r in results]
    assert sum("reusing" in line for line in logs) == 2 and not any("training" in line for line in logs)

    table = render_table(TINY, results, "objdet ablate tiny --steps 2")
    header, _, *rows = _rows(table)
    assert [r[0] for r in rows] == ["CE", "FL (reference)"]
    assert "`objdet ablate tiny --steps 2`" in table and "2 images per step" in table


def test_plan_steps_splits_the_budget(monkeypatch):
    """With a clock that advances one second per reading, a training step and an evaluation batch each take
    1 s: a 1-minute budget for TINY's 2 rows leaves 30 s per run, 1 s of it to score 2 held-out images (one
    batch); two seeds halve that."""
    readings = iter(range(10**6))
    monkeypatch.setattr(runner.time, "perf_counter", lambda: float(next(readings)))
    train, val = open_data("shapes", None, 2, val_images=2)
    assert runner.plan_steps(TINY, 1.0, 1, train, val) == 29
    assert runner.plan_steps(TINY, 3.0, 1, train, val) == 89
    assert runner.plan_steps(TINY, 1.0, 2, train, val) == 14


def test_plan_steps_times_every_row(monkeypatch):
    """A row whose steps cost 3 s beside one of 1 s: 120 s less 2 s of scoring leave 118 / 4 = 29 steps."""
    monkeypatch.setattr(runner, "_time_row", lambda study, v, *a: (3.0 if v.name == "CE" else 1.0, 1.0))
    train, val = open_data("shapes", None, 2, val_images=2)
    assert runner.plan_steps(TINY, 2.0, 1, train, val) == 29


def test_same_seed_same_run(tmp_path):
    """Rows share everything but the varied field: the same row trained twice from one seed is identical."""
    train, val = open_data("shapes", None, 4, val_images=2)
    a = run_variant(TINY, TINY.variants[1], 3, 2, train, val, tmp_path / "a")
    b = run_variant(TINY, TINY.variants[1], 3, 2, train, val, tmp_path / "b")
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.stats == b.stats


def test_coco_training_data_needs_held_out_data():
    with pytest.raises(ConfigError, match="--val-data"):
        open_data("coco:ann.json:images", None, 4)


def test_cli_ablate_runs_a_study_and_writes_its_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(STUDIES, "tiny", TINY)
    code = cli.main(["ablate", "tiny", "--steps", "1", "--val-images", "2", "--out", str(tmp_path), "--threads", "1"])
    assert code == 0
    table = (tmp_path / "tiny.md").read_text()
    assert re.search(r"^\| CE \|", table, re.M) and "objdet ablate tiny --data shapes --steps 1" in table
    assert table.strip() in capsys.readouterr().out
    assert cli.main(["ablate", "tiny", "--steps", "0", "--out", str(tmp_path)]) == 2
