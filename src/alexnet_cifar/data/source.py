"""Where a command's images come from: a CIFAR-10 folder (downloaded when missing and allowed), or
synthetic images for timing. The one place that decides, so every command answers alike."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..errors import UsageError, UserError
from .cifar10 import CIFAR10, has_cifar10, load_cifar10, resolve_data_dir, synthetic_cifar10
from .download import download_cifar10

log = logging.getLogger("alexnet_cifar")


def open_data(
    data_dir: Path | str | None, *, synthetic: bool = False, allow_download: bool = False, hint: str = ""
) -> CIFAR10:
    """CIFAR-10 from `data_dir` (else $CIFAR10_ROOT, else ./data), fetched first if missing and
    `allow_download`; or synthetic images, which take no folder."""
    if synthetic:
        if data_dir is not None:
            raise UsageError("--synthetic uses random images, not a data folder; drop --data-dir or --synthetic")
        return synthetic_cifar10()
    root = resolve_data_dir(data_dir)
    if not has_cifar10(root):
        if not allow_download:  # `hint`: another way the caller offers, such as " or drop --no-download"
            command = f"alexnet-cifar download --data-dir {shlex.quote(str(root))}"
            raise UserError(f"CIFAR-10 is not in {root}; run `{command}`{hint}")
        log.info(f"CIFAR-10 not found in {root}: downloading it")
        download_cifar10(root, log=log.info)
    return load_cifar10(root)


def find_test_data(
    data_dir: Path | None, trained_on: str | None, without: str = "the report has learning curves only"
) -> CIFAR10 | None:
    """The data for a report: `data_dir`, else where the run trained, else the default; None (with a
    notice saying `without` it) when it is not there, since a report can do without."""
    root = resolve_data_dir(data_dir if data_dir is not None else trained_on)
    if not has_cifar10(root):
        log.info(f"CIFAR-10 not found in {root}: {without} (pass --data-dir)")
        return None
    return load_cifar10(root)
