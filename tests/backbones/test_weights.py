"""load_pretrained: every source format, the pixel format it records, and its errors."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from backbones.fpn import FPN
from backbones.resnet import ResNet
from backbones.spec import CAFFE_PIXELS, TORCHVISION_PIXELS, PixelFormat
from backbones.weights import load_pretrained


def _torchvision_state(depth: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(depth)
    net = getattr(torchvision.models, f"resnet{depth}")()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


@pytest.fixture(scope="module")
def tv50() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-50 state dict with non-trivial batch-norm statistics."""
    return _torchvision_state(50)


@pytest.fixture(scope="module")
def tv18() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 state dict with non-trivial batch-norm statistics."""
    return _torchvision_state(18)


def _msra_blob_name(key: str) -> str:
    """torchvision name -> MSRA caffe blob name, written from the release's naming scheme."""
    stem = {
        "conv1.weight": "conv1_w",
        "bn1.weight": "res_conv1_bn_s",
        "bn1.bias": "res_conv1_bn_b",
        "fc.weight": "fc1000_w",
        "fc.bias": "fc1000_b",
    }
    if key in stem:
        return stem[key]
    layer, block, module, param = re.match(r"layer(\d)\.(\d+)\.(.+)\.(\w+)$", key).groups()
    branch = {
        "conv1": "branch2a",
        "bn1": "branch2a_bn",
        "conv2": "branch2b",
        "bn2": "branch2b_bn",
        "conv3": "branch2c",
        "bn3": "branch2c_bn",
        "downsample.0": "branch1",
        "downsample.1": "branch1_bn",
    }[module]
    suffix = {"weight": "s" if "bn" in branch else "w", "bias": "b"}[param]
    return f"res{int(layer) + 1}_{block}_{branch}_{suffix}"


def _msra_blobs(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Fold each batch norm into the scale/bias pair the MSRA release stores."""
    blobs = {}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        base = key.rsplit(".", 1)[0]
        if f"{base}.running_var" in state:
            scale = state[f"{base}.weight"] / torch.sqrt(state[f"{base}.running_var"] + 1e-5)
            value = (
                scale
                if key.endswith("weight")
                else state[f"{base}.bias"] - state[f"{base}.running_mean"] * scale
            )
        blobs[_msra_blob_name(key)] = value.numpy().astype(np.float32)
        blobs[_msra_blob_name(key) + "_momentum"] = np.zeros(1, np.float32)  # solver state
    return blobs


def test_caffe_pkl_computes_same_function(tv50, tmp_path):
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": _msra_blobs(tv50)}, f, protocol=4)
    x = torch.randn(1, 3, 32, 32)
    from_tv = ResNet(50, num_classes=1000, stride_in_1x1=True).eval()
    from_tv.load_state_dict(tv50)
    with torch.no_grad():
        want = from_tv(x)
    for norm in ("BN", "FrozenBN"):
        from_pkl = ResNet(50, num_classes=1000, stride_in_1x1=True, norm=norm).eval()
        report = load_pretrained(from_pkl, path)
        assert report.source_format == "caffe" and from_pkl.pixel_format == CAFFE_PIXELS
        with torch.no_grad():
            got = from_pkl(x)
        for k in got:
            assert (got[k] - want[k]).abs().max() <= 1e-4 * max(1.0, float(want[k].abs().max())), k


def test_python2_style_pickle_and_stride_check(tv50, tmp_path):
    stem = {
        k: v
        for k, v in _msra_blobs(tv50).items()
        if not k.startswith(("res2", "res3", "res4", "res5", "fc"))
    }
    path = tmp_path / "stem.pkl"
    path.write_bytes(pickle.dumps(stem, protocol=2))  # arrays as latin-1 strings, as Python 2 did
    net = ResNet(50, out_features=("stem",), stride_in_1x1=True)
    report = load_pretrained(net, path, allow_missing_classifier=False)
    assert set(report.loaded) == {
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    }
    assert np.array_equal(net.conv1.weight.detach().numpy(), stem["conv1_w"])
    with pytest.raises(ValueError, match="stride_in_1x1=True"):
        load_pretrained(ResNet(50, out_features=("stem",)), path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


class _Custom:
    pass


def test_unsafe_files_are_refused(tmp_path):
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"conv1_w": _Exploit()}))
    with pytest.raises(ValueError, match="refusing to load .*evil.pkl"):
        load_pretrained(ResNet(50, stride_in_1x1=True), pkl)
    pth = tmp_path / "evil.pth"
    torch.save({"model": ResNet(18).state_dict(), "extra": _Custom()}, pth)
    with pytest.raises(ValueError, match="refusing to load .*evil.pth.*unsafe"):
        load_pretrained(ResNet(18), pth)


def test_torchvision_name_reads_hub_cache(tmp_path, monkeypatch, image):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "checkpoints").mkdir()
    net = torchvision.models.resnet18().eval()
    torch.save(net.state_dict(), tmp_path / "checkpoints" / os.path.basename(url))
    ours = ResNet(18, num_classes=1000).eval()
    ours.pixel_format = CAFFE_PIXELS
    report = load_pretrained(ours, "torchvision:resnet18")
    assert report.source_format == "torchvision" and ours.pixel_format == TORCHVISION_PIXELS
    with torch.no_grad():
        assert (ours(image)["logits"] - net(image)).abs().max() <= 1e-5


def test_torchvision_name_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(url, dst, progress=True):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = torchvision.models.ResNet101_Weights.IMAGENET1K_V2.url
    with pytest.raises(RuntimeError) as err:
        load_pretrained(ResNet(101), "torchvision:resnet101.IMAGENET1K_V2")
    msg = str(err.value)
    assert url in msg and str(tmp_path / "checkpoints" / os.path.basename(url)) in msg
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        load_pretrained(ResNet(18), "torchvision:resnet18.BOGUS")


def test_timm_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="unknown timm model"):
        load_pretrained(ResNet(50), "timm:not_a_model_xyz")


def test_safetensors_and_wrapped_state_dicts(tv18, tmp_path, image):
    want = ResNet(18).eval()
    want.load_state_dict(tv18, strict=False)
    save_file({k: v.contiguous() for k, v in tv18.items()}, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in tv18.items()}}, tmp_path / "ddp.pth")
    for name in ("w.safetensors", "ddp.pth"):
        got = ResNet(18).eval()
        load_pretrained(got, tmp_path / name)
        with torch.no_grad():
            assert torch.equal(got(image)["res5"], want(image)["res5"]), name


def test_stages_not_built_are_skipped_everything_else_strict(tv18, tmp_path):
    torch.save(tv18, tmp_path / "w.pth")
    report = load_pretrained(ResNet(18, out_features=("res3",)), tmp_path / "w.pth")
    assert report.skipped
    assert all(k.startswith(("layer3.", "layer4.", "fc.")) for k in report.skipped)
    assert not any(k.startswith(("layer3.", "layer4.")) for k in report.loaded)

    broken = dict(tv18)
    del broken["layer2.0.conv2.weight"]
    broken["layer1.0.extra.weight"] = torch.zeros(1)
    broken["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError) as err:
        load_pretrained(ResNet(18), tmp_path / "broken.pth")
    msg = str(err.value)
    assert "missing keys (1): layer2.0.conv2.weight" in msg
    assert "unexpected keys (1): layer1.0.extra.weight" in msg
    assert "layer1.0.conv1.weight: checkpoint (64, 64, 1, 1) vs model (64, 64, 3, 3)" in msg


def test_classifier_may_be_missing_or_resized(tv18, tmp_path):
    no_fc = {k: v for k, v in tv18.items() if not k.startswith("fc.")}
    torch.save(no_fc, tmp_path / "nofc.pth")
    torch.save(tv18, tmp_path / "w.pth")
    net = ResNet(18, num_classes=10)
    fc_before = net.fc.weight.clone()
    for name in ("nofc.pth", "w.pth"):
        report = load_pretrained(net, tmp_path / name)
        assert sorted(report.classifier_not_loaded) == ["fc.bias", "fc.weight"]
    assert torch.equal(net.fc.weight, fc_before)
    for name in ("nofc.pth", "w.pth"):
        with pytest.raises(ValueError, match="fc.weight"):
            load_pretrained(net, tmp_path / name, allow_missing_classifier=False)


def test_resdet_detector_checkpoint_c4_layout(tv18, tmp_path, image):
    model = {
        f"backbone.body.{k}": v for k, v in tv18.items() if not k.startswith(("layer4.", "fc."))
    }
    model.update(
        {
            f"roi_heads.res5.{k[len('layer4.') :]}": v
            for k, v in tv18.items()
            if k.startswith("layer4.")
        }
    )
    model["rpn.head.conv.weight"] = torch.zeros(3)
    torch.save(
        {
            "format": "resdet",
            "kind": "detector",
            "model": model,
            "pixel_format": CAFFE_PIXELS.to_dict(),
            "iteration": 7,
        },
        tmp_path / "det.pth",
    )
    body = ResNet(18, out_features=("res4", "res5"), norm="FrozenBN", freeze_at=2).eval()
    # backbones/ does not know where a detector keeps its backbone; resdet.io.checkpoints does
    with pytest.raises(ValueError, match="detector checkpoint.*prefix"):
        load_pretrained(body, tmp_path / "det.pth")
    from resdet.io.checkpoints import load_backbone_weights

    report = load_backbone_weights(body, tmp_path / "det.pth")
    assert report.source_format == "detector" and body.pixel_format == CAFFE_PIXELS
    want = ResNet(18).eval()
    want.load_state_dict(tv18, strict=False)
    with torch.no_grad():
        a, b = body(image), want(image)
    for k in ("res4", "res5"):
        assert (a[k] - b[k]).abs().max() <= 1e-5 * max(1.0, float(b[k].abs().max()))


def test_resdet_backbone_checkpoint_into_fpn_with_prefix(tv18, tmp_path):
    pixels = PixelFormat("RGB", 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    torch.save(
        {"format": "resdet", "kind": "classifier", "model": tv18, "pixel_format": pixels.to_dict()},
        tmp_path / "cls.pth",
    )
    fpn = FPN(ResNet(18))
    report = load_pretrained(fpn, tmp_path / "cls.pth")
    assert fpn.pixel_format == pixels and report.source_format == "classifier"
    assert torch.equal(fpn.bottom_up.conv1.weight, tv18["conv1.weight"])
    torch.save({"encoder.net." + k: v for k, v in tv18.items()}, tmp_path / "nested.pth")
    net = ResNet(18)
    load_pretrained(net, tmp_path / "nested.pth", prefix="encoder.net.")
    assert torch.equal(net.layer4[1].conv2.weight, tv18["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match="prefix"):
        load_pretrained(net, tmp_path / "nested.pth", prefix="backbone.")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(ResNet(18), tmp_path / "nope.pth")


def _detectron2_name(key: str) -> str:
    """torchvision name -> detectron2 ResNet name, as detectron2's conversion script writes it."""
    key = re.sub(r"^conv1\.", "stem.conv1.", key)
    key = re.sub(r"^bn1\.", "stem.conv1.norm.", key)
    key = re.sub(r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}.", key)
    key = re.sub(r"\.bn(\d)\.", r".conv\1.norm.", key)
    key = key.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
    return re.sub(r"^fc\.", "linear.", key)


def test_detectron2_pkl(tv18, tmp_path, image):
    model = {
        _detectron2_name(k): v.numpy()
        for k, v in tv18.items()
        if not k.endswith("num_batches_tracked")
    }
    assert "res3.0.shortcut.norm.running_var" in model and "stem.conv1.norm.bias" in model
    (tmp_path / "r18.pkl").write_bytes(
        pickle.dumps({"model": model, "__author__": "torchvision", "matching_heuristics": True})
    )
    (tmp_path / "det.pkl").write_bytes(
        pickle.dumps(
            {
                "model": {
                    f"backbone.bottom_up.{k}": v
                    for k, v in model.items()
                    if not k.startswith("linear.")
                }
            }
        )
    )
    want = ResNet(18).eval()
    want.load_state_dict(tv18, strict=False)
    with torch.no_grad():
        ref = want(image)
    for name, pixels in (("r18.pkl", TORCHVISION_PIXELS), ("det.pkl", CAFFE_PIXELS)):
        net = ResNet(18, norm="FrozenBN").eval()
        report = load_pretrained(net, tmp_path / name)
        assert report.source_format == "detectron2" and net.pixel_format == pixels
        with torch.no_grad():
            got = net(image)
        for k in ref:
            assert (got[k] - ref[k]).abs().max() <= 1e-5 * max(1.0, float(ref[k].abs().max()))


def test_fpn_state_dict_loads_its_body(tv18, tmp_path):
    source = FPN(ResNet(18))
    source.bottom_up.load_state_dict(tv18, strict=False)
    torch.save(source.state_dict(), tmp_path / "fpn.pth")
    net = ResNet(18)
    report = load_pretrained(net, tmp_path / "fpn.pth")
    assert torch.equal(net.layer3[0].downsample[0].weight, tv18["layer3.0.downsample.0.weight"])
    assert report.skipped and all(
        k.startswith(("lateral_convs.", "output_convs.")) for k in report.skipped
    )
