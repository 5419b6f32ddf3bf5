"""One classification pretraining run (or evaluation) from a resolved `ClsConfig`, for the tool."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from backbones.weights import load_pretrained
from backbones.weights.files import WeightsFileError
from resdet.classification.data import build_datasets
from resdet.classification.evaluate import evaluate_classifier
from resdet.classification.loader import build_test_loader, build_train_loader
from resdet.classification.model import build_classifier
from resdet.classification.objective import ClassificationObjective
from resdet.classification.trainer import build_classification_trainer
from resdet.classification.transforms import PixelNormalize
from resdet.config.classification import ClsConfig
from resdet.engine.build import images_per_rank, prepare_model
from resdet.io.run_dir import FINAL, eval_dir, trained_checkpoint, write_config, write_evaluation
from resdet.runs.claim import check_resume, claim_output_dir, main_process
from resdet.utils.dist import init_distributed
from resdet.utils.seed import seed_all


@dataclass
class PretrainResult:
    #: `top1`, `top5`, `top1_err`, `top5_err` in percent on the test split
    metrics: dict[str, float]
    #: the classifier checkpoint (trained, or the one evaluated)
    checkpoint: Path
    num_test_images: int
    seconds: float


def pretrain(
    cfg: ClsConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    eval_only: bool = False,
    weights: str | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Train `cfg` and evaluate the final model, or with `eval_only` evaluate `weights` (default:
    the run's `model_final.pth`, else its last checkpoint). Training claims `output_dir` first
    (`resdet.runs.claim`: `resume` continues the run there, `overwrite` starts it over)."""
    if eval_only:
        return _run(cfg, resume=False, eval_only=True, weights=weights, progress=progress)
    is_main = main_process()
    with claim_output_dir(cfg.output_dir, resume=resume, overwrite=overwrite, is_main=is_main):
        if resume and is_main:
            check_resume(cfg, None)
        return _run(cfg, resume=resume, eval_only=False, weights=None, progress=progress)


def _run(
    cfg: ClsConfig, *, resume: bool, eval_only: bool, weights: str | None, progress: bool
) -> PretrainResult:
    start = time.perf_counter()
    dist = init_distributed(timeout_s=cfg.solver.dist_timeout_s)
    seed_all(cfg.seed, dist.rank)
    out = Path(cfg.output_dir)
    train_set, test_set = build_datasets(cfg.data, cfg.test.ten_crop)
    net = build_classifier(cfg.model, len(train_set.classes))
    test_batch = max(1, cfg.test.ims_per_batch // dist.world_size)
    test_loader = build_test_loader(
        test_set,
        test_batch,
        num_workers=cfg.data.num_workers,
        rank=dist.rank,
        world_size=dist.world_size,
    )

    if eval_only:
        try:
            checkpoint = Path(weights) if weights is not None else trained_checkpoint(out)
            load_pretrained(net, checkpoint, allow_missing_classifier=False)
        except FileNotFoundError as e:  # bad input to report in one line, as a corrupt file is
            raise WeightsFileError(str(e)) from None
        net.to(dist.device)
        normalize = PixelNormalize(net.pixel_format).to(dist.device)
        metrics = evaluate_classifier(net, test_loader, normalize, dist.device, cfg.solver.amp)
        if dist.is_main:
            write_evaluation(eval_dir(out), metrics, checkpoint=checkpoint)
        return PretrainResult(metrics, checkpoint, len(test_set), time.perf_counter() - start)

    model = prepare_model(
        ClassificationObjective(net, cfg.model.channels_last),
        cfg.solver,
        dist,
        channels_last=cfg.model.channels_last,
    )
    normalize = PixelNormalize(net.pixel_format).to(dist.device)

    def evaluate() -> dict[str, float]:
        return evaluate_classifier(
            net, test_loader, normalize, dist.device, cfg.solver.amp, cfg.model.channels_last
        )

    trainer = build_classification_trainer(
        cfg, model, None, dist, classes=train_set.classes, evaluate_fn=evaluate, progress=progress
    )
    if dist.is_main:
        write_config(cfg, out)
    trainer.resume_or_load(resume)
    # the sampler replays the global batches the resumed run has already consumed
    micro_batch = images_per_rank(cfg.solver, dist.world_size) * dist.world_size
    trainer.data_loader = build_train_loader(
        train_set,
        micro_batch,
        num_workers=cfg.data.num_workers,
        seed=cfg.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        start_batch=trainer.iteration * cfg.solver.grad_accum,
        pad=cfg.data.pad,
        device=dist.device,
    )
    metrics = trainer.train()
    return PretrainResult(metrics, out / FINAL, len(test_set), time.perf_counter() - start)
