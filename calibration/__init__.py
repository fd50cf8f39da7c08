"""Calibration data and the ONNX precision step (FP16 AutoCast, INT8 Q/DQ)."""
