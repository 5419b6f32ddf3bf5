"""Whole detectors: the R-CNN that wires backbone -> RPN -> RoI heads, and its preprocessing."""
