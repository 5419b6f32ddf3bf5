"""resdet.benchmarks.speed: the synthetic batches both detectors are timed on."""

import math


def test_synthetic_batch_is_height_by_width_with_boxes_inside():
    from resdet.benchmarks.speed import BenchSettings, synthetic_batch

    images, targets = synthetic_batch(
        BenchSettings(image_size=(64, 96), batch_size=3, boxes_per_image=5)
    )
    assert [tuple(i.shape) for i in images] == [(3, 64, 96)] * 3
    for t in targets:
        b = t["boxes"]
        assert b.shape == (5, 4) and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b >= 0).all() and (b[:, 2] <= 96).all() and (b[:, 3] <= 64).all()


def test_synthetic_masks_are_ellipses_in_their_boxes():
    import torch

    from resdet.benchmarks.speed import BenchSettings, synthetic_batch

    _, targets = synthetic_batch(BenchSettings(image_size=(64, 96), batch_size=2, masks=True))
    for t in targets:
        m, b = t["masks"], t["boxes"]
        assert m.shape == (len(b), 64, 96) and m.dtype == torch.uint8
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        # an inscribed ellipse covers pi/4 of its box (pixel-centre sampling: a few % off)
        ratio = m.flatten(1).sum(1) / area
        assert ((ratio - math.pi / 4).abs() < 0.08).all(), ratio
