"""alexnet-cifar: the AlexNet-style CNN of a classic PyTorch lesson, trained on CIFAR-10."""

__version__ = "0.1.0"
