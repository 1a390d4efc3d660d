import pytest
import torch

from alexnet_cifar.data.loader import Augment, DeviceLoader, Sampling, Shard, random_crop


def split(n: int = 100):
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # tag each image with its index
    return images, torch.arange(n) % 10


def ids(x: torch.Tensor) -> list[int]:
    """Recover the index tag from normalised images."""
    return ((x[:, 0, 0, 0] + 1) * 255 / 2).round().long().tolist()


def test_every_sample_exactly_once_per_epoch_with_short_last_batch():
    images, labels = split(100)
    loader = DeviceLoader(images, labels, batch_size=32, sampling=Sampling(shuffle=True, seed=1))
    batches = list(loader)
    assert [len(y) for _, y in batches] == [32, 32, 32, 4] and len(loader) == 4
    seen = [i for x, _ in batches for i in ids(x)]
    assert sorted(seen) == list(range(100))
    assert seen != list(range(100))  # shuffled
    assert all((y == torch.tensor(ids(x)) % 10).all() for x, y in batches)  # labels travel with images


def test_drop_last():
    loader = DeviceLoader(*split(100), batch_size=32, sampling=Sampling(drop_last=True))
    assert [len(y) for _, y in loader] == [32, 32, 32] and len(loader) == 3


def test_same_seed_same_order_new_epoch_new_order():
    images, labels = split(100)
    a = DeviceLoader(images, labels, 10, sampling=Sampling(shuffle=True, seed=7))
    b = DeviceLoader(images, labels, 10, sampling=Sampling(shuffle=True, seed=7))
    assert a.order().tolist() == b.order().tolist()
    first = a.order().tolist()
    a.set_epoch(1)
    assert a.order().tolist() != first
    a.set_epoch(0)
    assert a.order().tolist() == first
    assert DeviceLoader(images, labels, 10, sampling=Sampling(shuffle=True, seed=8)).order().tolist() != first


def test_no_shuffle_keeps_file_order():
    loader = DeviceLoader(*split(50), batch_size=20)
    assert [i for x, _ in loader for i in ids(x)] == list(range(50))


def test_normalisation_is_the_lessons():
    images = torch.tensor([0, 51, 128, 255], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()
    x, _ = next(iter(DeviceLoader(images, torch.zeros(4, dtype=torch.long), 4)))
    lesson = (torch.tensor([0.0, 51, 128, 255]) / 255 - 0.5) / 0.5
    torch.testing.assert_close(x[:, 0, 0, 0], lesson)


def test_channels_last_batches():
    x, _ = next(iter(DeviceLoader(*split(8), 4, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_augmentation_keeps_shape_and_range_and_changes_images():
    images, labels = split(64)
    plain = torch.cat([x for x, _ in DeviceLoader(images, labels, 64)])
    aug = DeviceLoader(images, labels, 64, sampling=Sampling(augment=Augment(crop_padding=4, flip=True), seed=3))
    x = torch.cat([x for x, _ in aug])
    assert x.shape == plain.shape and x.min() >= -1 and x.max() <= 1
    assert (x != plain).flatten(1).any(1).float().mean() > 0.8
    assert torch.equal(x, torch.cat([x for x, _ in aug]))  # same seed and epoch, same augmentation


def test_flip_is_an_exact_mirror():
    x = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8)
    loader = DeviceLoader(x, torch.zeros(200, dtype=torch.long), 50, sampling=Sampling(augment=Augment(flip=True)))
    out = torch.cat([b for b, _ in loader])
    x = x.float() * (2 / 255) - 1
    flipped = torch.isclose(out, x.flip(3)).flatten(1).all(1)
    same = torch.isclose(out, x).flatten(1).all(1)
    assert (flipped | same).all() and 60 < flipped.sum() < 140


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.randint(1, 256, (50, 3, 32, 32), dtype=torch.uint8)
    shifts = torch.randint(0, 9, (50, 2))
    out = random_crop(x, 4, shifts)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i, (dy, dx) in enumerate(shifts.tolist()):
        assert torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])


def test_batches_from_the_middle_equal_an_unbroken_epoch():
    images, labels = split(100)
    loader = DeviceLoader(
        images, labels, 16, sampling=Sampling(shuffle=True, augment=Augment(crop_padding=2, flip=True), seed=5)
    )
    loader.set_epoch(3)
    whole = list(loader)
    tail = list(loader.batches(start=4))
    assert len(tail) == len(whole) - 4
    for (xa, ya), (xb, yb) in zip(whole[4:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(torch.zeros(4, 3, 32, 32), torch.zeros(4), 2)


def test_rejects_labels_that_do_not_match_the_images():
    with pytest.raises(ValueError, match=r"N labels, got \(4, 3, 32, 32\)"):
        DeviceLoader(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(3), 2)


def test_batches_are_plainly_contiguous_unless_channels_last_is_asked():
    x, _ = next(iter(DeviceLoader(*split(8), 4)))
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)


def test_a_rank_whose_share_of_the_last_global_batch_is_empty_yields_nothing():
    """10 images in global batches of 3 x 5: rank 2's slice starts at image 10, past the end."""
    images, labels = split(10)
    ranks = [DeviceLoader(images, labels, 5, shard=Shard(rank=r, world_size=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [1, 1, 1]
    assert [[ids(x) for x, _ in r] for r in ranks] == [[[0, 1, 2, 3, 4]], [[5, 6, 7, 8, 9]], []]


def documented_plan(n: int, seed: int, epoch: int, augment: Augment):
    """The draws the loader documents, made here independently: one CPU generator keyed by
    seed * 1_000_003 + epoch gives the order, then the crop offsets in 0..2*padding, then the flips;
    alternating flips come per image from the key seed * 1_000_003 - 1, inverted in odd epochs.
    Fixed draws are what lets a published command reproduce its numbers on a later version."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    padding = augment.crop_padding
    shifts = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen) if padding else None
    flips = torch.rand(n, generator=gen) < 0.5 if augment.flip else None
    if augment.alternate_flip:
        per_image = torch.rand(n, generator=torch.Generator().manual_seed(seed * 1_000_003 - 1)) < 0.5
        flips = (per_image ^ bool(epoch % 2))[order]
    return order, shifts, flips


@pytest.mark.parametrize(
    "augment",
    [Augment(0, True), Augment(1, True), Augment(4, False), Augment(4, True), Augment(2, True, alternate_flip=True)],
)
def test_the_epoch_plan_is_the_documented_draws(augment):
    n, seed, epoch = 600, 5, 3
    loader = DeviceLoader(*split(n), 10, sampling=Sampling(True, seed, augment))
    loader.set_epoch(epoch)
    plan, (order, shifts, flips) = loader.plan(), documented_plan(n, seed, epoch, augment)
    assert torch.equal(plan.order, order)
    assert (plan.shifts is None) == (shifts is None) and (plan.flips is None) == (flips is None)
    if shifts is not None:
        assert torch.equal(plan.shifts, shifts)
        assert set(plan.shifts.flatten().tolist()) == set(range(2 * augment.crop_padding + 1))  # both edges
    if flips is not None:
        assert torch.equal(plan.flips, flips)


def test_alternate_flip_without_flip_flips_nothing():
    loader = DeviceLoader(*split(20), 10, sampling=Sampling(True, 0, Augment(alternate_flip=True)))
    assert loader.plan().flips is None


@pytest.mark.parametrize("alternate", [False, True])
def test_batches_stay_on_the_loaders_device(alternate):
    """The meta device stands in for a GPU: a CPU tensor mixed into the arithmetic fails on it."""
    images = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
    sampling = Sampling(shuffle=True, augment=Augment(crop_padding=4, flip=True, alternate_flip=alternate))
    loader = DeviceLoader(images, torch.arange(10), 4, sampling=sampling, device="meta")
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert all(x.device.type == y.device.type == "meta" and x.shape[1:] == (3, 32, 32) for x, y in batches)
    assert all(x.dtype == torch.float32 for x, _ in batches)
    plan = loader.plan()  # drawn on the CPU (the same on every device), then kept where the images are
    assert {t.device.type for t in (plan.order, plan.shifts, plan.flips)} == {"meta"}


def test_alternating_flip_shows_each_image_both_ways_every_two_epochs():
    """Images whose left half is bright: the mirror has a bright right half, so each output tells its flip."""
    n = 200
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    images[..., :16] = 255
    images[:, 1, 0, 0] = torch.arange(n, dtype=torch.uint8)  # the image's number, in a pixel the flip moves
    sampling = Sampling(shuffle=True, augment=Augment(flip=True, alternate_flip=True), seed=4)
    loader = DeviceLoader(images, torch.arange(n), 50, sampling=sampling)

    def flips(epoch: int) -> torch.Tensor:
        loader.set_epoch(epoch)
        x = torch.cat([b for b, _ in loader])
        flipped = x[:, 0, 5, 31] > 0  # bright on the right
        ids = torch.where(flipped, x[:, 1, 0, 31], x[:, 1, 0, 0])
        ids = ((ids + 1) * 255 / 2).round().long()
        by_image = torch.empty(n, dtype=torch.bool)
        by_image[ids] = flipped
        return by_image

    first, second, third = flips(0), flips(1), flips(2)
    assert 70 < first.sum() < 130  # a random half in the first epoch
    assert torch.equal(second, ~first) and torch.equal(third, first)  # then each image alternates
    loader.set_epoch(1)
    assert not torch.equal(loader.order(), (loader.set_epoch(0), loader.order())[1])  # orders still differ


def test_alternating_flip_differs_between_seeds():
    images = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    augment = Augment(flip=True, alternate_flip=True)
    a, b = (DeviceLoader(images, torch.arange(100), 10, sampling=Sampling(augment=augment, seed=s)) for s in (0, 1))
    assert not torch.equal(a.alternating_flips(), b.alternating_flips())
