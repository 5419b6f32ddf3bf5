"""Faster R-CNN heads: anchors, box coding, matching, RPN, RoI heads and the detector."""
