"""resdet.benchmarks.transfer: what a weight source changes in a protocol, the protocols as
shipped, and the table over the runs (the tool end to end: tests/tools/test_transfer_bench.py)."""

from __future__ import annotations

import torch

from resdet.benchmarks.transfer import (
    TransferRow,
    protocol_path,
    run_dir_name,
    source_overrides,
    transfer_table,
)
from resdet.config import load_config


def test_random_keeps_trainable_norms_as_they_are():
    cfg = load_config(protocol_path("shapes_r18_fpn"), ["model.backbone.norm=GN"])
    assert source_overrides(cfg, "random") == ["model.backbone.weights=null"]
    assert source_overrides(cfg, "x.pth") == ["model.backbone.weights=x.pth"]
    assert run_dir_name("resdet:shapes_r18", 1) == "resdet_shapes_r18_seed1"


def test_table_mean_and_spread():
    rows = [
        TransferRow("a", 0, {"mAP50": 0.80, "mAP": 0.50, "AP50/x": 0.7}, 10.0),
        TransferRow("a", 1, {"mAP50": 0.70, "mAP": 0.40, "mAP75": 0.3, "AP50/x": 0.6}, 12.0),
        TransferRow("b", 0, {}, 0.0, "cannot read b"),
    ]
    lines = transfer_table(rows).splitlines()
    # no row has the VOC07 11-point AP50: no such column; AP75 from the one seed that has it
    assert lines[0] == "| source | seeds | AP50 | AP | AP75 | AP50/x | minutes |"
    assert lines[2] == "| a | 0,1 | 75.0 ± 10.0 | 45.0 ± 10.0 | 30.0 | 65.0 ± 10.0 | 11.0 |"
    assert lines[3] == "| b | - | failed: cannot read b |"


def test_voc0712_protocol_is_mocos():
    # the values of MoCo's detection/configs/pascal_voc_R_50_C4_24k.yaml and Base-RCNN-C4-BN.yaml
    cfg = load_config(protocol_path("voc0712_r50_c4_24k"))
    m, s = cfg.model, cfg.solver
    assert (m.arch, m.backbone.depth, m.backbone.norm, m.backbone.freeze_at) == (
        "c4",
        50,
        "SyncBN",
        0,
    )
    assert m.roi_heads.res5_extra_norm and cfg.test.precise_bn_iters == 200
    assert m.input.min_size_train == list(range(480, 801, 32)) and m.input.min_size_test == 800
    assert (s.ims_per_batch, s.base_lr, s.max_iter, s.steps, s.warmup_iters) == (
        16,
        0.02,
        24000,
        [18000, 22000],
        100,
    )
    assert (m.rpn.pre_nms_top_n_test, m.rpn.post_nms_top_n_test) == (6000, 1000)
    assert cfg.data.train == ["voc_2007_trainval", "voc_2012_trainval"]
    assert cfg.data.test == ["voc_2007_test"]
    from resdet.build import build_model

    model = build_model(cfg, num_classes=20, load_weights=False)
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen
    assert isinstance(model.roi_heads.box_head.norm, torch.nn.SyncBatchNorm)


def test_weights_in_another_pixel_format_bring_it_along(tmp_path):
    import pickle

    import numpy as np

    cfg = load_config(protocol_path("voc0712_r50_c4_24k"))  # torchvision pixels
    msra = tmp_path / "R-50.pkl"  # MSRA caffe blobs: BGR 0..255, stride in the 1x1
    msra.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.zeros((64, 3, 7, 7), np.float32)}}))
    assert source_overrides(cfg, str(msra)) == [
        f"model.backbone.weights={msra}",
        "model.pixel_format=caffe",
        "model.backbone.stride_in_1x1=true",
    ]
    assert source_overrides(cfg, "torchvision:resnet50") == [
        "model.backbone.weights=torchvision:resnet50"
    ]
    missing = tmp_path / "absent.pth"  # unreadable: the run's row reports it, nothing guessed
    assert source_overrides(cfg, str(missing)) == [f"model.backbone.weights={missing}"]
