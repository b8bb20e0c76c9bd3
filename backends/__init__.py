"""Deployment backends: torch, onnx (ONNX Runtime), tensorrt."""
