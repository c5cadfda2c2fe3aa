"""botfleet model serving: a BentoML service for one bot's NLU intent classification."""

from __future__ import annotations

__all__ = ["load_classifier", "train_model", "evaluate"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy: importing the package must not import torch (the service module imports it itself).
    if name == "load_classifier":
        from .classifier import load_classifier

        return load_classifier
    if name == "train_model":
        from .train import train_model

        return train_model
    if name == "evaluate":
        from .evaluate import evaluate

        return evaluate
    raise AttributeError(name)
