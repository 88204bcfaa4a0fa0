"""Run logging on rank 0: console/file text log, CSV tables, and TensorBoard when it is installed."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

LOGGER_NAME = "training"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_console(run_dir: Path | None, is_main: bool) -> logging.Logger:
    """Console logging on rank 0 (warnings only elsewhere), plus ``train.log`` in the run folder."""
    logger = get_logger()
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    if run_dir is not None and is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


class CsvLog:
    """Append-only CSV table keyed by ``iter``; on resume, rows after the resumed iteration are dropped so
    the file reads like one uninterrupted run."""

    def __init__(self, path: Path, fields: list[str], resume_from: int | None = None):
        self.path, self.fields = path, fields
        rows: list[dict[str, str]] = []
        if resume_from is not None and path.is_file():
            with open(path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["iter"]) <= resume_from]
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in fields} for r in rows)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.fields).writerow({k: row.get(k, "") for k in self.fields})


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class TensorBoard:
    """Scalars to TensorBoard when ``torch.utils.tensorboard`` works here; silently off otherwise."""

    def __init__(self, folder: Path, enabled: bool):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception as exc:  # tensorboard missing or broken
                get_logger().info("TensorBoard logging off (%s)", exc)
            else:
                self.writer = SummaryWriter(str(folder))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
