"""Whole runs from a resolved config: detector training and evaluation, classification
pretraining, finished runs reused by benchmarks, and named backbone weights produced on demand."""
