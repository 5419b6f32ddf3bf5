"""Proposal generation: anchors and the region proposal network."""
