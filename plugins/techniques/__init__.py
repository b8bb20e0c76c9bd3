"""Built-in compression techniques (distillation, pruning, quantization), each a plugin subpackage."""
