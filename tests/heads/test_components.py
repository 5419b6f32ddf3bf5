"""Anchors, box coding, IoU, matching, sampling, RoI pooling, NMS and losses against independent
references: hand-computed cases, torchvision's implementations and properties."""

import math

import pytest
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from heads.ops.box_coder import BoxCoder
from heads.ops.box_ops import clip_boxes, pairwise_iou
from heads.ops.fg_bg_sampling import sample_balanced
from heads.ops.losses import box_regression_loss, cross_entropy, smooth_l1
from heads.ops.matcher import Matcher
from heads.ops.nms import nms_per_image
from heads.proposal.anchors import AnchorGenerator, cell_anchors
from heads.roi.poolers import RoIPooler, assign_levels


def test_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 5.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    iou = pairwise_iou(a, b)
    expected = torch.tensor(
        [[25 / 175, 1.0, 0.0], [0.0, 0.0, 0.0]]
    )  # an empty box overlaps nothing
    torch.testing.assert_close(iou, expected)
    # batched leading dims equal the per-image calls, and agree with torchvision
    bb = torch.stack([b, b + 3])
    assert torch.equal(pairwise_iou(a[None], bb)[1], pairwise_iou(a, b + 3))
    torch.testing.assert_close(pairwise_iou(a[:1], b), torchvision.ops.box_iou(a[:1], b))


def test_clip_boxes_per_image():
    boxes = torch.tensor([[[-5.0, -5.0, 50.0, 50.0]], [[-5.0, -5.0, 50.0, 50.0]]])
    out = clip_boxes(boxes, torch.tensor([[20.0], [40.0]]), torch.tensor([[30.0], [45.0]]))
    assert out.tolist() == [[[0.0, 0.0, 30.0, 20.0]], [[0.0, 0.0, 45.0, 40.0]]]


def test_cell_anchors_hand_computed():
    # area 32^2, height/width = ratio; torchvision rounds to whole pixels
    raw = cell_anchors([32.0], [0.5, 1.0, 2.0], round_to_int=False)
    w, h = raw[:, 2] - raw[:, 0], raw[:, 3] - raw[:, 1]
    torch.testing.assert_close(w * h, torch.full((3,), 1024.0))
    torch.testing.assert_close(h / w, torch.tensor([0.5, 1.0, 2.0]))
    assert cell_anchors([32.0], [0.5, 1.0, 2.0], round_to_int=True).tolist() == [
        [-23.0, -11.0, 23.0, 11.0],
        [-16.0, -16.0, 16.0, 16.0],
        [-11.0, -23.0, 11.0, 23.0],
    ]


def test_anchor_grid_matches_torchvision():
    sizes, ratios = ((32,), (64,), (128,)), (0.5, 1.0, 2.0)
    ours = AnchorGenerator(
        sizes=[list(s) for s in sizes],
        aspect_ratios=list(ratios),
        strides=[4, 8, 16],
        round_to_int=True,
        stride_from_image_size=True,
    )
    tv = TVAnchorGenerator(sizes, (ratios,) * 3)
    feats = [torch.zeros(1, 1, 24, 20), torch.zeros(1, 1, 12, 10), torch.zeros(1, 1, 6, 5)]
    expected = tv(ImageList(torch.zeros(1, 3, 96, 80), [(96, 80)]), feats)[0]
    got = torch.cat(ours([f.shape[-2:] for f in feats], (96, 80)))
    assert torch.equal(got, expected)


def test_anchor_grid_offset_and_order():
    gen = AnchorGenerator(sizes=[[8.0, 16.0]], aspect_ratios=[1.0], strides=[16], offset=0.5)
    a = gen([(2, 3)], (32, 48))[0]
    assert a.shape == (2 * 3 * 2, 4)
    # location-major (row by row), then the cell anchors in order
    assert a[0].tolist() == [4.0, 4.0, 12.0, 12.0] and a[1].tolist() == [0.0, 0.0, 16.0, 16.0]
    assert a[2].tolist() == [20.0, 4.0, 28.0, 12.0]  # next column: x + 16
    assert a[6].tolist() == [4.0, 20.0, 12.0, 28.0]  # next row: y + 16


def test_box_coding_hand_case_round_trip_and_clamp():
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    tgt = torch.tensor([[5.0, 5.0, 15.0, 25.0]])
    assert BoxCoder().encode(ref, tgt)[0].tolist() == pytest.approx([0.5, 1.0, 0.0, math.log(2)])
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    assert coder.encode(ref, tgt)[0].tolist() == pytest.approx([5.0, 10.0, 0.0, 5 * math.log(2)])
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    refs = torch.cat((xy, xy + 1 + torch.rand(50, 2, generator=g) * 50), 1)
    xy = torch.rand(50, 2, generator=g) * 100
    tgts = torch.cat((xy, xy + 1 + torch.rand(50, 2, generator=g) * 50), 1)
    torch.testing.assert_close(
        coder.decode(coder.encode(refs, tgts), refs)[:, 0], tgts, atol=1e-3, rtol=1e-5
    )
    # class-specific deltas: (R, K*4) -> (R, K, 4)
    assert coder.decode(torch.zeros(50, 12), refs).shape == (50, 3, 4)
    huge = BoxCoder().decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), ref)[0, 0]
    assert (huge[2] - huge[0]).item() == pytest.approx(10 * 1000 / 16, rel=1e-5)


def test_matcher_labels_and_low_quality_matches():
    # image 0: one object; image 1: one object only partly covered, one nobody
    # overlaps, one padding slot
    gt = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
            [[100.0, 100.0, 110.0, 110.0], [200.0, 200.0, 210.0, 210.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    valid = torch.tensor([[True, False, False], [True, True, False]])
    preds = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 5.0],
            [20.0, 20.0, 30.0, 30.0],
            [0.0, 0.0, 10.0, 2.0],
            [100.0, 100.0, 110.0, 104.0],
            [100.0, 100.0, 110.0, 102.0],
            [0.0, 0.0, 10.0, 10.0],
        ]
    )
    image = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    iou = pairwise_iou(preds[:, None], gt[image])[:, 0].masked_fill(~valid[image], -1.0)
    matched, labels = Matcher(fg_iou=0.7, bg_iou=0.3, allow_low_quality=False)(iou, image, 2)
    # IoUs: 1, 0.5, 0, 0.2 | 0.4, 0.2, 0 (its own image's objects are far away)
    assert labels.tolist() == [1, -1, 0, 0, -1, 0, 0]
    assert matched[0] == 0
    _, labels = Matcher(fg_iou=0.7, bg_iou=0.3, allow_low_quality=True)(iou, image, 2)
    # the best anchor of image 1's first object becomes foreground; the unreachable object adds none
    assert labels.tolist() == [1, -1, 0, 0, 1, 0, 0]
    # no ground truth at all: everything background
    _, labels = Matcher(fg_iou=0.5, bg_iou=0.5, allow_low_quality=True)(torch.zeros(7, 0), image, 2)
    assert labels.tolist() == [0] * 7


def test_sampler_respects_quotas_per_image():
    torch.manual_seed(0)
    labels = torch.cat(
        [torch.ones(10), torch.zeros(100), torch.full((20,), -1.0), torch.zeros(100), torch.ones(2)]
    ).to(torch.int8)
    image = torch.cat([torch.zeros(130), torch.ones(102)]).long()
    fg, bg = sample_balanced(labels, image, 2, per_image=16, positive_fraction=0.25)
    assert fg[image == 0].sum() == 4 and bg[image == 0].sum() == 12
    assert fg[image == 1].sum() == 2 and bg[image == 1].sum() == 14
    assert not (fg & (labels != 1)).any() and not (bg & (labels != 0)).any()
    # sampling is random among candidates, not the first ones
    picks = [
        sample_balanced(labels, image, 2, per_image=16, positive_fraction=0.25)[1][:100]
        .nonzero()
        .max()
        for _ in range(5)
    ]
    assert max(picks) > 50


def test_roi_align_hand_computed_on_a_linear_map():
    # f(y, x) = x + 10 y at cell centres; bilinear sampling of a linear function is exact, so each
    # output bin equals f at the bin centre (aligned: pixel centres at +0.5)
    h, w = 16, 20
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    fmap = (xs + 10 * ys)[None, None]
    pooler = RoIPooler(strides=[1], output_size=2, kind="align", sampling_ratio=2, aligned=True)
    out = pooler([fmap], torch.tensor([[2.0, 4.0, 10.0, 8.0]]), torch.tensor([0]))
    cx = [2.0 - 0.5 + 2.0, 2.0 - 0.5 + 6.0]  # bins 4 px wide
    cy = [4.0 - 0.5 + 1.0, 4.0 - 0.5 + 3.0]  # bins 2 px high
    expected = torch.tensor([[x + 10 * y for x in cx] for y in cy])
    torch.testing.assert_close(out[0, 0], expected)


def test_multilevel_pooler_assigns_fpn_levels():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 224.0, 224.0],
            [0.0, 0.0, 112.0, 112.0],
            [0.0, 0.0, 20.0, 20.0],
            [0.0, 0.0, 900.0, 900.0],
        ]
    )
    # FPN eq. (1): 224 -> level 4, 112 -> 3, tiny -> clamped to 2, huge -> clamped to 5
    assert assign_levels(boxes, 2, 5).tolist() == [2, 1, 0, 3]
    torch.manual_seed(0)
    feats = [torch.randn(2, 3, 64 // s, 64 // s) for s in (1, 2, 4, 8)]
    pooler = RoIPooler(strides=[4, 8, 16, 32], output_size=3, sampling_ratio=2, aligned=False)
    image = torch.tensor([1, 0, 1, 0])
    out = pooler(feats, boxes / 4, image)
    for i, level in enumerate(assign_levels(boxes / 4, 2, 5).tolist()):
        ref = torchvision.ops.roi_align(
            feats[level],
            [torch.zeros(0, 4)] * image[i].item() + [boxes[i : i + 1] / 4],
            3,
            1 / 2 ** (level + 2),
            2,
            False,
        )
        torch.testing.assert_close(out[i], ref[0])


def test_nms_per_image_matches_torchvision_nms():
    g = torch.Generator().manual_seed(1)
    n = 300
    xy = torch.rand(n, 2, generator=g) * 80
    boxes = torch.cat((xy, xy + 5 + torch.rand(n, 2, generator=g) * 30), 1)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 3, (n,), generator=g)
    image = torch.randint(0, 2, (n,), generator=g)
    kept = nms_per_image(boxes, scores, classes, 3, image, 2, 0.5, k=1000)
    expected = []
    for i in range(2):
        for c in range(3):
            idx = ((image == i) & (classes == c)).nonzero()[:, 0]
            expected += idx[torchvision.ops.nms(boxes[idx], scores[idx], 0.5)].tolist()
    assert sorted(kept.tolist()) == sorted(expected)
    # sorted by image, then by score; the top-k cut is per image
    assert image[kept].tolist() == sorted(image[kept].tolist())
    top = nms_per_image(boxes, scores, classes, 3, image, 2, 0.5, k=5)
    for i in range(2):
        mine = kept[image[kept] == i]
        assert (
            top[image[top] == i].tolist()
            == mine[scores[mine].argsort(descending=True)][:5].tolist()
        )


def test_losses_hand_computed():
    pred, target = torch.tensor([[0.05, 1.0, 0.0, -2.0]]), torch.zeros(1, 4)
    # beta 0.1: 0.5 * 0.05^2 / 0.1 + (1 - 0.05) + 0 + (2 - 0.05)
    assert smooth_l1(pred, target, 0.1).item() == pytest.approx(0.0125 + 0.95 + 1.95)
    assert box_regression_loss(pred, target, kind="l1", beta=0.1).item() == pytest.approx(3.05)
    assert smooth_l1(pred, target, 0.0).item() == pytest.approx(3.05)
    empty = torch.zeros(0, 4, requires_grad=True)
    loss = box_regression_loss(empty, torch.zeros(0, 4), kind="smooth_l1", beta=1.0)
    assert loss.item() == 0.0 and loss.requires_grad
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    assert cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(
        -math.log(math.e**2 / (math.e**2 + 2))
    )
