"""Benchmarks: speed and memory against torchvision, FLOPs, accuracy side by side, transfer
protocols, and the one timing harness they share."""
