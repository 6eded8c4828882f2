"""Sample-quality metrics that need no downloaded weights."""
from evaluation.distances import sliced_wasserstein

__all__ = ["sliced_wasserstein"]
