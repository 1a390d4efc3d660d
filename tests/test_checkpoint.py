import pytest
import torch

from alexnet_cifar.artifacts.checkpoint import load_checkpoint, save_weights
from alexnet_cifar.errors import UserError
from alexnet_cifar.model import AlexNet


def test_plain_state_dict_is_accepted(tmp_path):
    model = AlexNet()
    save_weights(tmp_path / "model.pt", model)
    state = load_checkpoint(tmp_path / "model.pt")
    torch.testing.assert_close(state["model"]["fc3.bias"], model.fc3.bias.detach())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a checkpoint"), "not a readable checkpoint"),
        (lambda p: (save_weights(p, AlexNet()), p.write_bytes(p.read_bytes()[:1000])), "not a readable checkpoint"),
        (lambda p: torch.save({"weight": torch.zeros(3)}, p), "another network"),
        (lambda p: None, "does not exist"),
    ],
)
def test_bad_checkpoints(tmp_path, make, message):
    path = tmp_path / "x.pt"
    make(path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)
