"""What a run leaves on disk: the run directory (which owns every file name), checkpoints, atomic writes,
and loading a trained model back from a .pt or .onnx file."""
