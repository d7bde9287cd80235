"""`objdet ablate`: rerun one of the seed's ablation tables, one training run per row."""

from __future__ import annotations

import argparse
from pathlib import Path

from objdet.errors import ConfigError


def add(sub: argparse._SubParsersAction) -> None:
    from objdet.ablation.studies import STUDIES

    p = sub.add_parser("ablate", help="rerun one of the seed's ablation tables (one training run per row)",
                       description="Train every row of a seed ablation table with the same seed, data and "
                                   "number of steps, score it on held-out data and print a Markdown table "
                                   "beside the seed's numbers. Finished runs are saved under --out and reused.")
    p.add_argument("study", choices=[*STUDIES, "all"], help="the table to reproduce")
    p.add_argument("--data", default="shapes", help="training data SPEC (default: the built-in shapes)")
    p.add_argument("--val-data", help="held-out data SPEC (default: the spec's `val` split)")
    p.add_argument("--budget", type=float, default=60.0, help="minutes for the whole study (sets the steps per run)")
    p.add_argument("--steps", type=int, help="training steps per run (overrides --budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds; each row runs once per seed")
    p.add_argument("--out", default="runs/ablate", help="folder for the runs and the tables")
    p.add_argument("--val-images", type=int, default=64, help="held-out shapes images each run is scored on")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a CPU shared with other jobs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from objdet.ablation.runner import run_study
    from objdet.ablation.studies import STUDIES
    from objdet.ablation.table import render_table

    if args.steps is not None and args.steps < 1 or args.budget <= 0:
        raise ConfigError("--steps and --budget must be positive")
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    names = list(STUDIES) if args.study == "all" else [args.study]
    for name in names:
        study = STUDIES[name]
        budget = args.budget / len(names)
        results = run_study(study, args.data, args.val_data, budget, args.seeds, args.steps, args.out,
                            args.val_images)
        steps = results[0].steps
        command = (f"objdet ablate {name} --data {args.data} --steps {steps} --seeds {' '.join(map(str, args.seeds))}"
                   + (f" --val-data {args.val_data}" if args.val_data else f" --val-images {args.val_images}")
                   + (f" --threads {args.threads}" if args.threads else ""))
        table = render_table(study, results, command)
        path = Path(args.out) / f"{name}.md"
        path.write_text(table + "\n", encoding="utf-8")
        print(table)
        print(f"\n(table written to {path})")
    return 0
