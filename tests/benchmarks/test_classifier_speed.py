"""resdet.benchmarks.classifier_speed: both nets timed in interleaved rounds, the ratio of their
rates."""

from __future__ import annotations

import pytest

from resdet.benchmarks.classifier_speed import compare_resnet50


def test_both_nets_timed_and_compared():
    r = compare_resnet50(device="cpu", batch_size=2, image_size=32, rounds=2, warmup=1, depth=18)
    assert r.ours_images_per_s > 0 and r.torchvision_images_per_s > 0
    assert r.ratio == pytest.approx(r.ours_images_per_s / r.torchvision_images_per_s)
    assert (r.batch_size, r.image_size, r.device) == (2, 32, "cpu")
