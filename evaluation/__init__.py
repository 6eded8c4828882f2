"""Sample-quality metrics that need no downloaded weights, and sample writers."""
from evaluation.classifier import digit_metrics
from evaluation.distances import frechet_distance, sliced_wasserstein
from evaluation.samples import image_grid, save_samples, scatter_image
from evaluation.toy import toy_metrics

__all__ = ["sliced_wasserstein", "frechet_distance", "digit_metrics", "toy_metrics",
           "save_samples", "image_grid", "scatter_image"]
