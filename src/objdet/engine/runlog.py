"""What a run shows and keeps on rank 0: the progress bar, TensorBoard scalars and `log.jsonl`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class RunLog:
    """Rank-0 outputs of a run: tqdm bar, TensorBoard scalars and `log.jsonl` in the run folder.

    On other ranks (`enabled=False`) every method does nothing, so the loop calls them unconditionally.
    """

    def __init__(self, out: Path, enabled: bool, progress: bool, total_steps: int, start_step: int):
        self.enabled = enabled
        self.bar = None
        self.writer = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step or None)
        except ImportError:
            self.writer = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Numbers under `prefix` ("train", "val"): TensorBoard tags `prefix/key` and one log.jsonl line."""
        if not self.enabled:
            return
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.record(prefix, step, values)

    def record(self, kind: str, step: int, fields: dict[str, Any]) -> None:
        """One log.jsonl line of `kind` (numbers or text, such as why training stopped)."""
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"kind": kind, "step": step, "time": time.time(), **fields}) + "\n")
        self.jsonl.flush()

    def progress(self, epoch: int, loss: float, lr: float) -> None:
        """Advance the bar one step, showing epoch, loss and learning rate."""
        if self.bar is not None:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            self.bar.update(1)

    def message(self, text: str) -> None:
        """Print a line (above the bar when there is one)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Close the bar, the TensorBoard writer and the log file."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.jsonl.close()
