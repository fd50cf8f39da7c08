"""Inference backends behind one interface: PyTorch, ONNX Runtime, TensorRT."""
