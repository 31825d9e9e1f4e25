"""gream-verl: GREAM generative reasoning recommendation on verl and LLaMA-Factory."""

__version__ = "0.1.0"
