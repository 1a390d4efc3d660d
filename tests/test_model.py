import pytest
import torch
from torch import nn

from alexnet_cifar.model import AlexNet, count_parameters

# The lesson's printout, verbatim (the lesson shows it on one line; whitespace is compared loosely).
LESSON_PRINTOUT = (
    "AlexNet( (conv1): Sequential( (0): Conv2d(3, 64, kernel_size=(5, 5), stride=(1, 1)) (1): ReLU(inplace=True) ) "
    "(max_pool1): MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False) "
    "(conv2): Sequential( (0): Conv2d(64, 64, kernel_size=(5, 5), stride=(1, 1)) (1): ReLU(inplace=True) ) "
    "(max_pool2): MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False) "
    "(fc1): Sequential( (0): Linear(in_features=1024, out_features=384, bias=True) (1): ReLU(inplace=True) ) "
    "(fc2): Sequential( (0): Linear(in_features=384, out_features=192, bias=True) (1): ReLU(inplace=True) ) "
    "(fc3): Linear(in_features=192, out_features=10, bias=True) )"
)


class LessonAlexNet(nn.Module):
    """A copy of the lesson's class, as written there."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 64, 5), nn.ReLU(True))
        self.max_pool1 = nn.MaxPool2d(3, 2)
        self.conv2 = nn.Sequential(nn.Conv2d(64, 64, 5, 1), nn.ReLU(True))
        self.max_pool2 = nn.MaxPool2d(3, 2)
        self.fc1 = nn.Sequential(nn.Linear(1024, 384), nn.ReLU(True))
        self.fc2 = nn.Sequential(nn.Linear(384, 192), nn.ReLU(True))
        self.fc3 = nn.Linear(192, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.max_pool1(x)
        x = self.conv2(x)
        x = self.max_pool2(x)
        x = x.view(x.shape[0], -1)
        x = self.fc1(x)
        x = self.fc2(x)
        x = self.fc3(x)
        return x


def test_printout_is_the_lessons():
    assert " ".join(str(AlexNet()).split()) == LESSON_PRINTOUT


def test_printout_is_multiline_like_pytorch():
    lines = str(AlexNet()).splitlines()
    assert lines[0] == "AlexNet(" and lines[1] == "  (conv1): Sequential(" and lines[-1] == ")"


def test_parameter_count():
    assert count_parameters(AlexNet()) == 576_778


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_output_shape(n):
    assert AlexNet()(torch.zeros(n, 3, 32, 32)).shape == (n, 10)


def test_state_dict_loads_into_lessons_class_and_computes_the_same():
    ours = AlexNet()
    lesson = LessonAlexNet()
    lesson.load_state_dict(ours.state_dict())  # strict: every key and shape must match
    x = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(lesson(x), ours(x))


def test_channels_last_gives_the_same_output():
    model = AlexNet()
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-5)
