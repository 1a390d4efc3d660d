"""Starting weights from the data: a whitening conv1, an identity-like conv2, and conv1 held still at first."""

import pytest
import torch

from alexnet_cifar.config import resolve_config
from alexnet_cifar.data.loader import normalize
from alexnet_cifar.training.initialise import conv1_whitening, patch_moment, whitening_filters
from alexnet_cifar.training.trainer import build_model

from .conftest import tiny_fit


def smooth_images(n: int = 60, seed: int = 0) -> torch.Tensor:
    """uint8 images whose neighbouring pixels are strongly correlated (upsampled noise), like photographs."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=gen)
    fine = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    noise = 0.05 * torch.rand(n, 3, 32, 32, generator=gen)
    return ((fine + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def test_whitened_patches_have_identity_covariance():
    images = smooth_images()
    filters = whitening_filters(images, kernel=5, filters=64, eps=1e-9)
    out = torch.nn.functional.conv2d(normalize(images).double(), filters[:32].double())  # (N, 32, 28, 28)
    flat = out.permute(0, 2, 3, 1).reshape(-1, 32)
    moment = flat.T @ flat / len(flat)  # the patches' second moment seen through the filters
    assert torch.allclose(moment, torch.eye(32, dtype=torch.float64), atol=2e-3)
    assert torch.equal(filters[32:], -filters[:32])  # each filter with its negative, for ReLU
    raw = normalize(images).double()
    raw_moment = torch.nn.functional.unfold(raw, 5).transpose(1, 2).reshape(-1, 75)
    assert (raw_moment.T @ raw_moment / len(raw_moment)).diagonal().std() > 0  # the input was not white


def test_patch_moment_equals_a_direct_computation(monkeypatch):
    from alexnet_cifar.training import initialise

    monkeypatch.setattr(initialise, "CHUNK", 3)  # the sums of several chunks, as on real data
    images = smooth_images(7)
    x = normalize(images).double()
    patches = [x[i, :, r : r + 5, c : c + 5].flatten() for i in range(7) for r in range(28) for c in range(28)]
    p = torch.stack(patches)
    assert torch.allclose(patch_moment(images, 5), p.T @ p / len(p), atol=1e-5)


def test_eps_limits_the_gain_of_weak_directions():
    images = smooth_images()
    sharp, soft = (whitening_filters(images, 5, 64, eps).flatten(1).norm(dim=1) for eps in (1e-9, 1.0))
    assert (soft <= sharp + 1e-6).all() and soft[31] < sharp[31] / 3


def test_too_many_filters_are_refused():
    assert whitening_filters(smooth_images(2), 5, 150, 1e-3).shape == (150, 3, 5, 5)  # every direction, both signs
    with pytest.raises(ValueError, match="at most 150"):
        whitening_filters(smooth_images(2), 5, 152, 1e-3)
    with pytest.raises(ValueError, match="an even number"):
        whitening_filters(smooth_images(2), 5, 63, 1e-3)


def test_build_model_whitens_conv1_and_adds_the_identity_to_conv2():
    images = smooth_images()
    plain = build_model(resolve_config("seed", {"channels_last": False}), torch.device("cpu"))
    cfg = resolve_config("seed", {"channels_last": False, "whiten": True, "dirac": True, "whiten_eps": 0.1})
    model = build_model(cfg, torch.device("cpu"), conv1_whitening(images, 0.1))
    assert torch.allclose(model.conv1[0].weight, whitening_filters(images, 5, 64, 0.1))
    assert not model.conv1[0].bias.any()
    identity = torch.zeros(64, 64, 5, 5)
    identity[range(64), range(64), 2, 2] = 1
    assert torch.allclose(model.conv2[0].weight - plain.conv2[0].weight, identity)
    assert torch.equal(model.fc1[0].weight, plain.fc1[0].weight)  # the rest is the seed's own
    with pytest.raises(ValueError, match="needs the whitening filters"):
        build_model(cfg, torch.device("cpu"))


def test_conv1_stays_still_while_frozen_then_trains(tmp_path):
    _, run = tiny_fit(tmp_path, epochs=3, whiten=True, whiten_freeze_epochs=1.0, threads=1)
    kernels = run.kernel_history()
    assert torch.equal(kernels[-1], kernels[0])  # epoch 0: held
    assert not torch.allclose(kernels[1], kernels[0])  # epoch 1: trained
    first = torch.load(run.best, weights_only=False)  # conv1's bias trained all along
    assert first["model"]["conv1.0.bias"].abs().sum() > 0


def test_whiten_values():
    with pytest.raises(Exception, match="whiten_eps = 0.0 is not allowed"):
        resolve_config("seed", {"whiten_eps": 0.0})
    with pytest.raises(Exception, match="whiten_freeze_epochs = 30.0 is not allowed"):
        resolve_config("seed", {"whiten_freeze_epochs": 30.0})
