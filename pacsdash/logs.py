"""Logging set-up shared by the server and its worker processes."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path


def configure_logging(folder: Path, name: str = "pacsdash", verbose: bool = False) -> None:
    """Log to ``folder/NAME.log`` (rotated) and to standard error."""
    folder.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    formatter = logging.Formatter(f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(folder / f"{name}.log", maxBytes=10_000_000, backupCount=5)
    file_handler.setFormatter(formatter)
    stream = logging.StreamHandler()
    stream.setFormatter(formatter)
    stream.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.handlers[:] = [file_handler, stream]
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("bokeh").setLevel(logging.WARNING)
