"""Offline training of the PINN pricer and the Mamba forecasters, exported to ONNX."""
