"""Using a trained model: test-set evaluation, predictions on image files, ONNX export."""
