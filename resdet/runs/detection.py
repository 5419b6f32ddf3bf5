"""One detector training run, or an evaluation, from a resolved `Config`: what the command lines
`tools/train_det.py` and `tools/eval_det.py` call.

    datasets = load_datasets(cfg)              # before anything heavy: a missing dataset fails here
    train_detector(cfg, datasets, resume=...)  # on every rank; evaluates on data.test periodically
                                               # and at the end
    eval_only(cfg, datasets.test, CKPT)        # train_det.py --eval-only: evaluate, write eval/
    evaluate_weights(cfg, datasets.test, CKPT) # tools/eval_det.py: evaluate, print the table

An output directory ends up with `config.yaml` (resolved), `class_names.json` (the training set's
classes, also in every checkpoint), `metrics.jsonl`, TensorBoard events,
`last_checkpoint` and the checkpoints it names, `model_final.pth`, `model_best.pth` and
`eval/metrics.json` (training writes `{"iteration", "metrics"}`, `--eval-only` `{"checkpoint",
"metrics"}`; the layout is `resdet.io.run_dir`'s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn
from torch.utils.data import DataLoader

from resdet.build import build_model, load_checkpoint
from resdet.config import Config, ConfigError
from resdet.data.build import build_detection_dataset, build_train_loader
from resdet.data.dataset import DetectionDataset
from resdet.data.errors import DatasetError
from resdet.data.formats import expected_files
from resdet.engine.build import build_trainer, images_per_rank, prepare_model
from resdet.engine.trainer import unwrap
from resdet.evaluation.inference import InferenceRunner, flat_metrics, headline
from resdet.io.checkpoints import checkpoint_class_names
from resdet.io.named_weights import cached_path, is_named
from resdet.io.run_dir import (
    eval_dir,
    read_class_names,
    trained_checkpoint,
    write_class_names,
    write_config,
    write_evaluation,
)
from resdet.runs.claim import check_resume, claim_output_dir, main_process
from resdet.runs.named_weights import produce_named_weights
from resdet.utils.dist import init_distributed
from resdet.utils.paths import dataset_root
from resdet.utils.seed import seed_all


@dataclass
class DetectionDatasets:
    #: None when only evaluating
    train: DetectionDataset | None
    #: None when `data.test` is empty (no evaluation)
    test: DetectionDataset | None


def missing_datasets(cfg: Config, splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    """One line per dataset of `data.<split>` that is not installed: the entry, the file or folder
    expected, and the root it is looked up under (empty when everything is there)."""
    root = dataset_root(cfg.data.root)
    where = (
        f"datasets root {root.absolute()}: data.root, else $RESDET_DATASETS, else ./datasets; "
        "layout in README.md"
    )
    lines = []
    for split in splits:
        for entry in getattr(cfg.data, split):
            for path, is_folder in expected_files(entry, root):
                if not (path.is_dir() if is_folder else path.is_file()):
                    kind = "folder" if is_folder else "file"
                    lines.append(
                        f"{cfg.source}: data.{split} dataset {entry!r} not found: expected "
                        f"{kind} {path.absolute()} ({where})"
                    )
    return lines


def check_datasets_present(cfg: Config, splits: tuple[str, ...] = ("train", "test")) -> None:
    """Raise a one-line `DatasetError`: the first line of `missing_datasets`, if any."""
    missing = missing_datasets(cfg, splits)
    if missing:
        raise DatasetError(missing[0])


def check_weights_present(cfg: Config) -> None:
    """Raise a one-line `ConfigError` when `model.backbone.weights` names a file that does not exist
    or an unknown `resdet:<name>` (`torchvision:<name>` / `timm:<name>` are resolved by
    `backbones.weights.load`; a known `resdet:<name>` is produced by `train_detector`'s first
    step, `resdet.runs.named_weights.produce_named_weights`)."""
    weights = cfg.model.backbone.weights
    if is_named(weights):
        try:
            cached_path(weights)
        except ValueError as e:
            raise ConfigError(f"{cfg.source}: model.backbone.weights: {e}") from None
        return
    if (
        weights
        and not weights.startswith(("torchvision:", "timm:"))
        and not Path(weights).is_file()
    ):
        raise ConfigError(
            f"{cfg.source}: model.backbone.weights {weights!r} not found (looked for "
            f"{Path(weights).absolute()}); a classification checkpoint comes from "
            "tools/pretrain_cls.py (see README.md)"
        )


def load_datasets(cfg: Config, *, train: bool = True) -> DetectionDatasets:
    """Read `data.train` (when `train`) and `data.test`, generating the shapes data on first use.

    A voc_folder test entry without `class_names` gets the classes the training set collected
    from its folder (when training) or those `output_dir/class_names.json` recorded (when only
    evaluating), so labels mean the same classes in both. A missing or invalid dataset raises
    `DatasetError` here, before any model is built; so does a training set without instance masks
    for a mask model (`model.mask_head.enabled`).
    """
    check_datasets_present(cfg, ("train", "test") if train else ("test",))
    train_set = (
        build_detection_dataset(cfg.data, "train", masks=cfg.model.mask_head.enabled)
        if train
        else None
    )
    if train_set is not None:
        collected = any(s.class_names_from_data for s in train_set.sources)
        folder_names = train_set.class_names if collected else None
    else:
        folder_names = read_class_names(cfg.output_dir)
    test_set = (
        build_detection_dataset(cfg.data, "test", folder_class_names=folder_names)
        if cfg.data.test
        else None
    )
    if (
        train_set is not None
        and test_set is not None
        and train_set.class_names != test_set.class_names
    ):
        raise DatasetError(
            f"{cfg.source}: data.train and data.test have different classes "
            f"({train_set.class_names} vs {test_set.class_names})"
        )
    return DetectionDatasets(train_set, test_set)


def _num_classes(cfg: Config, dataset: DetectionDataset) -> int:
    if cfg.model.num_classes is not None and cfg.model.num_classes != dataset.num_classes:
        raise ValueError(
            f"{cfg.source}: model.num_classes={cfg.model.num_classes} but the dataset has "
            f"{dataset.num_classes} classes; leave model.num_classes null to take the dataset's"
        )
    return dataset.num_classes


def _check_best_metric(cfg: Config, names: list[str]) -> None:
    """A `test.best_metric` the test set's evaluator never reports is a `ConfigError` before
    training, not a failure at its first evaluation."""
    name = cfg.test.best_metric
    if name is not None and name not in names:
        summary = [n for n in names if "/" not in n]
        raise ConfigError(
            f"{cfg.source}: test.best_metric {name!r} is not reported by the evaluator of "
            f"data.test (it reports {', '.join(summary)}, and '<metric>/<class>' per class); "
            "VOC-format sets (voc, voc_folder) report mAP50, COCO-format sets AP50"
        )


def train_detector(
    cfg: Config,
    datasets: DetectionDatasets,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    model_fn: Callable[[Config, int], nn.Module] = build_model,
) -> dict[str, float]:
    """Train `cfg` on every rank; returns the final evaluation (flat metrics; `{}` without
    `data.test`). `output_dir` is claimed first (`resdet.runs.claim`): with `resume` the run
    continues from its last checkpoint (from scratch when there is none yet), with `overwrite` a
    run already there is removed first, and with neither such a directory is refused.

    `model_fn(cfg, num_classes)` builds the detector (another implementation with our call
    convention, e.g. `resdet.benchmarks.torchvision_reference.torchvision_detector`, trains through
    the same engine)."""
    if datasets.train is None:
        raise ValueError("train_detector needs the training set: load_datasets(cfg, train=True)")
    produce_named_weights(cfg.model.backbone.weights, progress=progress)
    is_main = main_process()
    with claim_output_dir(cfg.output_dir, resume=resume, overwrite=overwrite, is_main=is_main):
        if resume and is_main:
            check_resume(cfg, datasets.train.class_names)
        return _train(cfg, datasets, resume=resume, progress=progress, model_fn=model_fn)


def _train(
    cfg: Config,
    datasets: DetectionDatasets,
    *,
    resume: bool,
    progress: bool,
    model_fn: Callable[[Config, int], nn.Module],
) -> dict[str, float]:
    dist = init_distributed(timeout_s=cfg.solver.dist_timeout_s)
    seed_all(cfg.seed, dist.rank)
    out = Path(cfg.output_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_config(cfg, out)
        write_class_names(out, datasets.train.class_names)
    model = prepare_model(
        model_fn(cfg, _num_classes(cfg, datasets.train)),
        cfg.solver,
        dist,
        channels_last=cfg.model.input.channels_last is True,
    )

    evaluate_fn = None
    if datasets.test is not None:
        evaluation = InferenceRunner(
            datasets.test,
            cfg.data,
            dist,
            amp=cfg.solver.amp,
            masks=cfg.model.mask_head.enabled,
            coco_backend=cfg.test.coco_backend,
            class_names=datasets.train.class_names,
        )
        _check_best_metric(cfg, evaluation.evaluator.metric_names())

        def evaluate_fn() -> dict[str, float]:
            metrics = evaluation(unwrap(model))
            if metrics is None:
                return {}
            print(f"\n{evaluation.summary(metrics)}", flush=True)
            return flat_metrics(metrics)

    # global images per micro-step; the sampler skips what this rank already consumed on resume
    micro_batch = images_per_rank(cfg.solver, dist.world_size) * dist.world_size
    train_set = datasets.train

    def loader(start: int) -> DataLoader:
        return build_train_loader(
            train_set,
            cfg.data,
            micro_batch,
            seed=cfg.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            start_iter=start,
        )

    trainer = build_trainer(
        cfg,
        model,
        loader,
        dist,
        evaluate_fn=evaluate_fn,
        progress=progress,
        class_names=train_set.class_names,
    )
    trainer.resume_or_load(resume=resume)
    return trainer.train()


def evaluate_weights(
    cfg: Config,
    test_set: DetectionDataset,
    weights: str | Path,
    *,
    detections_path: str | Path | None = None,
) -> dict[str, Any] | None:
    """Load `weights` (any format `resdet.load_checkpoint` reads) into the model `cfg` describes and
    evaluate it on `test_set`, sharded over the ranks. Returns the evaluator's metrics on
    rank 0 (None elsewhere) and, with `detections_path`, writes the detections there in
    the results format. Weights that are missing or do not fit the model are a `ConfigError`."""
    dist = init_distributed(timeout_s=cfg.solver.dist_timeout_s)
    seed_all(cfg.seed, dist.rank)
    num_classes = (
        cfg.model.num_classes if cfg.model.num_classes is not None else test_set.num_classes
    )
    model = build_model(cfg, num_classes, load_weights=False)
    try:
        load_checkpoint(model, weights)
    except (ValueError, FileNotFoundError) as e:  # absent, unsafe, or not this config's model
        raise ConfigError(f"{cfg.source}: {e}") from None
    try:
        evaluation = InferenceRunner(
            test_set,
            cfg.data,
            dist,
            amp=cfg.solver.amp,
            masks=cfg.model.mask_head.enabled,
            coco_backend=cfg.test.coco_backend,
            class_names=checkpoint_class_names(weights),
        )
    except ValueError as e:  # the checkpoint's classes are not the test set's
        raise ConfigError(f"{weights}: {e}") from None
    model.to(dist.device).eval()
    metrics = evaluation(model)
    if metrics is not None:
        print(evaluation.summary(metrics))
        print(headline(metrics))
        if detections_path is not None:
            evaluation.evaluator.write_detections(detections_path)
    return metrics


def eval_only(
    cfg: Config, test_set: DetectionDataset, weights: str | Path | None
) -> dict[str, Any] | None:
    """`train_det.py --eval-only`: evaluate `weights` (default: this run's trained model) and write
    `output_dir/eval/metrics.json` as training does."""
    try:
        checkpoint = Path(weights) if weights is not None else trained_checkpoint(cfg.output_dir)
    except FileNotFoundError as e:
        raise ConfigError(f"{cfg.source}: --eval-only: {e}") from None
    metrics = evaluate_weights(cfg, test_set, checkpoint)
    if metrics is not None:
        write_evaluation(eval_dir(cfg.output_dir), metrics, checkpoint=checkpoint)
    return metrics
