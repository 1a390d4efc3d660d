"""CIFAR-10 in: the files read into uint8 tensors, the download, and the device loader (the only normalisation)."""
