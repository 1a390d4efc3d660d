"""The throughput benchmark (`alexnet-cifar bench`): the lesson's pipeline against ours, side by side."""
