"""Classification metrics: top-k counts, 10-crop averaging, and the constant warm-up schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones.spec import PixelFormat
from resdet.classification.evaluate import evaluate_classifier
from resdet.classification.metrics import topk_correct
from resdet.classification.objective import ClassificationObjective
from resdet.classification.trainer import ConstantWarmupSchedule
from resdet.classification.transforms import PixelNormalize

UNIT = PixelNormalize(PixelFormat(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))  # uint8 -> 0..1


def test_topk_by_hand():
    scores = torch.tensor(
        [
            [0.1, 0.5, 0.4],  # label 2 is second best
            [0.9, 0.05, 0.05],  # label 0 is best
            [0.2, 0.3, 0.5],
        ]
    )  # label 0 is last
    labels = torch.tensor([2, 0, 0])
    assert topk_correct(scores, labels, (1, 2, 3, 5)) == {1: 1, 2: 2, 3: 3, 5: 3}
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        topk_correct(scores[0], labels)


class MeanColourNet(nn.Module):
    """logits = the mean of each input channel: class c wins where channel c is brightest."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x.mean(dim=(2, 3))}


def test_ten_crop_averages_softmax_over_crops():
    # image 0: 6 crops say class 0 weakly, 4 crops say class 1 strongly -> averaging probabilities
    # (not voting) decides; computed independently below
    crops = torch.zeros(2, 10, 3, 4, 4, dtype=torch.uint8)
    crops[0, :6, 0] = 60
    crops[0, 6:, 1] = 255
    crops[1, :, 2] = 200
    labels = torch.tensor([1, 2])
    logits = crops.float().div(255).mean(dim=(3, 4))  # (2, 10, 3), identity normalisation
    expected = logits.softmax(-1).mean(1)
    assert expected.argmax(1).tolist() == [1, 2]  # the strong minority wins, unlike a majority vote
    loader = [(crops, labels)]
    metrics = evaluate_classifier(MeanColourNet(), loader, UNIT, torch.device("cpu"))
    assert metrics["top1"] == 100.0 and metrics["top1_err"] == 0.0
    # single crops: image 0 is judged on its first crop alone (class 0) -> wrong
    single = [(crops[:, 0], labels)]
    metrics = evaluate_classifier(MeanColourNet(), single, UNIT, torch.device("cpu"))
    assert metrics["top1"] == 50.0 and metrics["top5"] == 100.0


def test_constant_warmup_schedule():
    # ResNet-110 style: 0.1 * 0.1 = 0.01 for the first 3 iterations, then 0.1, divided by 10 at 5
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = ConstantWarmupSchedule(opt, max_iter=8, steps=[5], warmup_iters=3, warmup_factor=0.1)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.01])


def test_objective_loss_train_error_and_plain_state_dict():
    net = MeanColourNet()
    net.pixel_format = PixelFormat(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    net.scale = nn.Parameter(torch.ones(()))  # something for the state dict to hold
    objective = ClassificationObjective(net)
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 0] = 255  # every image predicts class 0
    labels = torch.tensor([0, 0, 1, 2])
    losses = objective([images], [{"labels": labels}])
    expected = nn.functional.cross_entropy(torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3), labels)
    torch.testing.assert_close(losses["loss_cls"], expected)
    objective([images[:2]], [{"labels": labels[:2]}])  # two more, both right
    assert objective.pop_train_error() == pytest.approx(100 * 2 / 6)
    assert list(objective.state_dict()) == ["scale"]
