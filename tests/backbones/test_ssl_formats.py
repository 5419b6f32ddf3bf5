"""load_pretrained on the checkpoint layouts of self-supervised training: MoCo v1/v2/v3, DINO,
SwAV and BYOL-style files, built here in each layout from seeded torchvision ResNet-18 weights."""

from __future__ import annotations

import argparse

import pytest
import torch
import torchvision
from torch import Tensor, nn

from backbones.resnet import ResNet
from backbones.spec import TORCHVISION_PIXELS
from backbones.weights import load_pretrained

State = dict[str, Tensor]


def _resnet18(seed: int) -> State:
    """A torchvision ResNet-18 state dict without ``fc``, with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(seed)
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


@pytest.fixture(scope="module")
def query() -> State:
    """The encoder a loader must take (MoCo's query encoder, DINO's teacher, ...)."""
    return _resnet18(1)


@pytest.fixture(scope="module")
def other() -> State:
    """The encoder a loader must ignore (MoCo's momentum encoder, DINO's student)."""
    return _resnet18(2)


@pytest.fixture(autouse=True)
def torch_load_is_weights_only(monkeypatch):
    """Every file these tests read goes through ``torch.load(..., weights_only=True)``."""
    real = torch.load

    def load(*args, **kwargs):
        assert kwargs.get("weights_only") is True
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)


def _head(*layers: nn.Module) -> State:
    return nn.Sequential(*layers).state_dict()


def _prefixed(prefix: str, state: State) -> State:
    return {prefix + k: v for k, v in state.items()}


def _optimizer() -> dict:
    return {
        "state": {0: {"momentum_buffer": torch.zeros(3)}},
        "param_groups": [{"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4, "params": [0]}],
    }


def _assert_loaded(net: ResNet, want: State) -> None:
    got = net.state_dict()
    assert set(got) - {k for k in got if k.startswith("fc.")} == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize(
    "version, fc",
    [
        ("moco_v1", nn.Linear(512, 128).state_dict()),
        ("moco_v2", _head(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))),
    ],
)
def test_moco_v1_v2_take_the_query_encoder(version, fc, query, other, tmp_path):
    state = {
        **_prefixed("module.encoder_q.", {**query, **_prefixed("fc.", fc)}),
        **_prefixed("module.encoder_k.", {**other, **_prefixed("fc.", fc)}),
        "module.queue": torch.randn(128, 64),
        "module.queue_ptr": torch.zeros(1, dtype=torch.long),
    }
    path = tmp_path / "checkpoint_0199.pth.tar"
    torch.save(
        {"epoch": 200, "arch": "resnet18", "state_dict": state, "optimizer": _optimizer()}, path
    )
    net = ResNet(18)
    report = load_pretrained(net, path)
    _assert_loaded(net, query)
    assert not torch.equal(query["conv1.weight"], other["conv1.weight"])
    assert report.source_format == version and net.pixel_format == TORCHVISION_PIXELS
    assert sorted(report.dropped) == sorted(_prefixed("encoder_q.fc.", fc))
    assert len(report.dropped) == len(fc)
    assert "queue" in report.ignored and "queue_ptr" in report.ignored
    assert sum(k.startswith("encoder_k.") for k in report.ignored) == len(other) + len(fc)


def test_moco_v3_drops_projector_and_predictor(query, other, tmp_path):
    def projector() -> State:  # MoCo v3's _build_mlp: Linear, BN, ReLU, Linear, BN without affine
        return _head(
            nn.Linear(512, 64, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Linear(64, 32, bias=False),
            nn.BatchNorm1d(32, affine=False),
        )

    predictor = _head(
        nn.Linear(32, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32, bias=False)
    )
    fc = projector()
    state = {
        **_prefixed("module.base_encoder.", {**query, **_prefixed("fc.", fc)}),
        **_prefixed("module.momentum_encoder.", {**other, **_prefixed("fc.", projector())}),
        **_prefixed("module.predictor.", predictor),
    }
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "_growth_tracker": 7}
    torch.save(
        {
            "epoch": 100,
            "arch": "resnet18",
            "state_dict": state,
            "optimizer": _optimizer(),
            "scaler": scaler,
        },
        tmp_path / "r-50-100ep.pth.tar",
    )
    net = ResNet(18, out_features=("res4", "res5"), norm="FrozenBN")
    report = load_pretrained(net, tmp_path / "r-50-100ep.pth.tar")
    _assert_loaded(net, {k: v for k, v in query.items() if not k.endswith("num_batches_tracked")})
    assert report.source_format == "moco_v3"
    want = {*_prefixed("base_encoder.fc.", fc), *_prefixed("predictor.", predictor)}
    assert set(report.dropped) == want and len(report.dropped) == 17
    assert all(k.startswith("momentum_encoder.") for k in report.ignored if "num_batches" not in k)


def _dino_head() -> State:
    """DINOHead: an MLP, then a weight-normalised last layer (``weight_g``, ``weight_v``)."""
    mlp = _head(nn.Linear(512, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 16))
    return {
        **_prefixed("mlp.", mlp),
        "last_layer.weight_g": torch.ones(128, 1),
        "last_layer.weight_v": torch.randn(128, 16),
    }


@pytest.mark.parametrize("student_ddp, teacher_ddp", [(True, True), (True, False)])
def test_dino_takes_the_teacher(student_ddp, teacher_ddp, query, other, tmp_path):
    def network(backbone: State, ddp: bool) -> State:
        return _prefixed(
            "module." if ddp else "",
            {**_prefixed("backbone.", backbone), **_prefixed("head.", _dino_head())},
        )

    torch.save(
        {
            "student": network(other, student_ddp),
            "teacher": network(query, teacher_ddp),
            "optimizer": _optimizer(),
            "epoch": 800,
            "dino_loss": {"center": torch.zeros(1, 128)},
            # DINO's main_dino.py saves its command line too
            "args": argparse.Namespace(arch="resnet50", out_dim=128, teacher_temp=0.04),
        },
        tmp_path / "checkpoint.pth",
    )
    net = ResNet(18)
    report = load_pretrained(net, tmp_path / "checkpoint.pth")
    _assert_loaded(net, query)
    assert report.source_format == "dino(teacher)"
    assert sorted(report.dropped) == sorted(_prefixed("teacher.head.", _dino_head()))
    assert len(report.dropped) == 8
    assert sum(k.startswith("student.") for k in report.ignored) == len(other) + 8

    student = ResNet(18)
    report = load_pretrained(student, tmp_path / "checkpoint.pth", prefix="student.backbone.")
    _assert_loaded(student, other)
    assert report.source_format == "state_dict" and not report.dropped


def test_dino_released_backbone_is_a_plain_state_dict(query, tmp_path):
    torch.save(query, tmp_path / "dino_resnet50_pretrain.pth")
    net = ResNet(18)
    report = load_pretrained(net, tmp_path / "dino_resnet50_pretrain.pth")
    _assert_loaded(net, query)
    assert report.source_format == "state_dict" and not report.dropped


@pytest.mark.parametrize("wrapped", [True, False])
def test_swav_drops_projection_head_and_prototypes(wrapped, query, tmp_path):
    heads = {
        **_prefixed(
            "projection_head.",
            _head(nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16)),
        ),
        "prototypes.weight": torch.randn(30, 16),
    }
    state = {**query, **heads}
    if wrapped:  # SwAV's training checkpoint; its released weights are the bare DDP state dict
        obj = {"epoch": 800, "state_dict": _prefixed("module.", state), "optimizer": _optimizer()}
    else:
        obj = _prefixed("module.", state)
    torch.save(obj, tmp_path / "swav_800ep_pretrain.pth.tar")
    net = ResNet(18)
    report = load_pretrained(net, tmp_path / "swav_800ep_pretrain.pth.tar")
    _assert_loaded(net, query)
    assert report.source_format == "swav"
    assert sorted(report.dropped) == sorted(heads) and len(report.dropped) == 10


def _byol(query: State, projector: str, predictor: str) -> tuple[State, State]:
    """(a BYOL-style state dict with a 1000-way ``fc``, its projector and predictor tensors)."""
    mlp = _head(nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 16))
    heads = {**_prefixed(f"{projector}.net.", mlp), **_prefixed(f"{predictor}.net.", mlp)}
    torch.manual_seed(3)
    fc = nn.Linear(512, 1000).state_dict()
    return {**query, **_prefixed("fc.", fc), **heads}, heads


@pytest.mark.parametrize(
    "projector, predictor", [("projector", "predictor"), ("online_projector", "online_predictor")]
)
def test_byol_drops_heads_and_an_fc_the_target_cannot_use(projector, predictor, query, tmp_path):
    state, heads = _byol(query, projector, predictor)
    torch.save({"state_dict": state}, tmp_path / "byol.pth")

    backbone = ResNet(18)  # a detection backbone: no classifier, so the fc is a dropped head
    report = load_pretrained(backbone, tmp_path / "byol.pth")
    _assert_loaded(backbone, query)
    assert report.source_format == "byol"
    assert sorted(report.dropped) == sorted([*heads, "fc.weight", "fc.bias"])
    assert len(report.dropped) == len(heads) + 2 == 20

    classifier = ResNet(18, num_classes=1000)  # the same 1000-way classifier: loaded
    report = load_pretrained(classifier, tmp_path / "byol.pth")
    assert torch.equal(classifier.fc.weight, state["fc.weight"])
    assert sorted(report.dropped) == sorted(heads) and "fc.bias" in report.loaded

    ten = ResNet(18, num_classes=10)  # another class count: dropped, the classifier left as built
    report = load_pretrained(ten, tmp_path / "byol.pth")
    assert len(report.dropped) == 20
    assert sorted(report.classifier_not_loaded) == ["fc.bias", "fc.weight"]


def test_load_backbone_weights_reads_the_layouts_too(query, other, tmp_path):
    from resdet.io.checkpoints import load_backbone_weights

    state = {
        **_prefixed("module.encoder_q.", query),
        **_prefixed("module.encoder_k.", other),
        "module.encoder_q.fc.weight": torch.randn(128, 512),
        "module.queue": torch.randn(128, 8),
    }
    torch.save({"arch": "resnet18", "state_dict": state}, tmp_path / "moco.pth")
    net = ResNet(18, out_features=("res5",), norm="FrozenBN")
    report = load_backbone_weights(net, tmp_path / "moco.pth")
    assert report.source_format == "moco_v1" and report.dropped == ["encoder_q.fc.weight"]
    assert torch.equal(net.layer4[1].conv2.weight, query["layer4.1.conv2.weight"])


def test_unknown_layout_lists_top_level_keys_and_known_formats(query, tmp_path):
    torch.save(
        {"epoch": 3, "state_dict": _prefixed("module.encoder_x.", query)}, tmp_path / "a.pth"
    )
    torch.save({"epoch": 3, "weights": query, "note": "ours"}, tmp_path / "b.pth")
    for name, found in (("a.pth", f"encoder_x.* ({len(query)})"), ("b.pth", "epoch, weights")):
        with pytest.raises(ValueError) as err:
            load_pretrained(ResNet(18), tmp_path / name)
        msg = str(err.value)
        assert "unknown checkpoint layout" in msg and name in msg and found in msg, msg
        for fmt in ("torchvision", "caffe", "moco_v2", "moco_v3", "dino(teacher)", "swav", "byol"):
            assert fmt in msg, fmt
