"""Source model (GGUF file or Hugging Face folder) -> verified ONNX model folder."""
