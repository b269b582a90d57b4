"""``finetune``: phase 2, a run that starts from phase 1's best.pt with more of the network
unfrozen; ``phase2_config`` says what it changes of phase 1's configuration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import PHASE2_FALLBACKS, AugmentConfig, FinetuneConfig, TrainConfig
from tlcli.engine.distributed import on_main, process_group
from tlcli.engine.loop import Observer
from tlcli.core.errors import TlcliError
from tlcli.run.build import Start
from tlcli.run.marker import foreign_checkpoint
from tlcli.run.lock import holder as in_use_by
from tlcli.run.locate import default_run_name, resolve_checkpoint
from tlcli.run.result import RunResult
from tlcli.run.story import Run


def finetune(config: FinetuneConfig, *, observer: Observer | None = None) -> RunResult:
    observer = observer or Observer()
    source = resolve_checkpoint(config.source)
    checkpoint = load_checkpoint(source)
    for warning in _source_warnings(source, checkpoint):
        observer.warning(warning)
    train_config = phase2_config(TrainConfig.from_dict(checkpoint["config"]), config)
    run, data, arch = train_config.run, train_config.data, train_config.model.arch
    start = Start(phase=checkpoint["phase"] + 1, checkpoint=checkpoint, freeze="none" if config.unfreeze == "all" else config.unfreeze)
    with process_group(run.device):
        run_dir = on_main(lambda: Path(run.out) if run.out else
                          source.parent.parent / default_run_name(data.source, arch, "-ft"))
        return Run(train_config, run_dir, start=start, parent=str(source), history=list(checkpoint["history"])).execute(observer)


def phase2_config(phase1: TrainConfig, config: FinetuneConfig) -> TrainConfig:
    """Phase 1's configuration as phase 2 changes it: finetune's own settings, then phase 2's
    defaults (config.PHASE2_FALLBACKS: augmentation where phase 1 had none, label smoothing,
    warm-up and patience where it set none), then the overrides."""
    fallbacks: dict[str, dict] = {"augment": {}, "optim": {}, "run": {}}
    for (section, name), value in PHASE2_FALLBACKS.items():
        unset = phase1.augment == AugmentConfig() if section == "augment" else not getattr(getattr(phase1, section), name)
        if unset:
            fallbacks[section][name] = value
    for section, name, value in config.overrides:
        fallbacks[section][name] = value
    optim = replace(phase1.optim, **{"lr": config.lr, "backbone_lr_mult": config.backbone_lr_mult, "ema": config.ema, "wise_ft": config.wise_ft,
                                     **fallbacks["optim"]})
    # Phase 1's cache_features "on" would refuse the unfrozen backbone of phase 2.
    run = replace(phase1.run, **{"epochs": config.epochs, "monitor": config.monitor, "out": config.out, "overwrite": config.overwrite,
                                 "cache_features": "auto", **fallbacks["run"]})
    augment = replace(phase1.augment, **fallbacks["augment"])
    return replace(phase1, model=replace(phase1.model, bn_train=config.bn_train), optim=optim, run=run, augment=augment)


def _source_warnings(source: Path, checkpoint: dict[str, Any]) -> list[str]:
    """Phase 2 refuses a phase 1 still training (its best.pt would change under it) and names a
    source that did not finish its epochs or is another run's checkpoint."""
    holder = in_use_by(source.parent)
    if holder:
        raise TlcliError(f"{source.parent} is still training ({holder}); fine-tune it once it has finished")
    warnings = [foreign] if (foreign := foreign_checkpoint(source, checkpoint)) else []
    last = source.parent / "last.pt"  # best.pt's own progress stops at its epoch, however far the run went
    progress = (load_checkpoint(last) if source != last and last.is_file() else checkpoint)["progress"]
    planned = checkpoint["config"]["run"]["epochs"]
    if progress["epoch"] < planned and not progress["stopped_early"]:
        warnings.append(f"{source} comes from a run that ran {progress['epoch']} of its {planned} epochs (it was stopped or killed): "
                        f"phase 2 starts from that model; finish phase 1 first with tlcli train --resume {source.parent}")
    return warnings
