"""hubkit: leak-free data, LoRA recipes, verified merges, Hub publishing."""

__version__ = "0.1.0"
