"""The gRPC pricing service over onnxruntime; never imports TensorFlow."""
