"""Device choice and the runtime switches that depend on it."""

import pytest
import torch

from alexnet_cifar.device import select_device
from alexnet_cifar.errors import UsageError

from .conftest import tiny_fit


def test_unavailable_device_is_a_usage_error():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="'cuda' is not available"):
            select_device("cuda")


def test_amp_auto_follows_the_device(monkeypatch):
    from alexnet_cifar import device

    cpu = torch.device("cpu")
    assert device.use_amp("on", cpu) and not device.use_amp("off", cpu)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    assert device.use_amp("auto", cpu)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert not device.use_amp("auto", cpu)


def test_amp_in_config_takes_auto_on_off_and_the_old_switch():
    from alexnet_cifar.config import RECIPES, resolve_config

    assert RECIPES["seed"].amp == "off" and RECIPES["fast"].amp == RECIPES["best"].amp == "auto"
    assert resolve_config("seed", {"amp": True}).amp == "on"  # runs and files from before "auto"
    assert resolve_config("seed", {"amp": False}).amp == "off"
    with pytest.raises(UsageError, match="amp = 'maybe' is not allowed; use one of off, on, auto"):
        resolve_config("seed", {"amp": "maybe"})


def test_config_json_records_what_auto_chose(tmp_path, monkeypatch):
    import json

    from alexnet_cifar import device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    _, run = tiny_fit(tmp_path, epochs=1, amp="auto")
    info = json.loads(run.config.read_text())
    assert info["config"]["amp"] == "auto" and info["environment"]["bf16_autocast"] is False
