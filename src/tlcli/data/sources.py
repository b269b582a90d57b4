"""``--data``: turn what the user typed into an ``ImageData``."""

from __future__ import annotations

import os
from pathlib import Path

from tlcli.core.config import DataConfig
from tlcli.data.builtin import BUILTIN_NAMES, TORCHVISION_SETS, load_digits_data, load_torchvision_data
from tlcli.data.csvlabels import load_csv_data
from tlcli.data.dataset import ImageData, apply_fold, require_trainable
from tlcli.data.folder import load_folder
from tlcli.data.hfdata import PREFIX as HF_PREFIX, load_hf_data
from tlcli.data.tfrecord import is_tfrecord_source, load_tfrecord_data
from tlcli.core.errors import DataError


def data_root() -> Path:
    """Where named data sets live: ``$TLCLI_DATA_DIR``, else ``./data``."""
    return Path(os.environ.get("TLCLI_DATA_DIR", "data"))


def resolve_folder(source: str) -> Path | None:
    """A path as given, else a name under data/; None when neither exists."""
    as_given = Path(source).expanduser()
    if as_given.exists():
        return as_given
    under_root = data_root() / source
    if under_root.exists():
        return under_root
    return None


def load_data(config: DataConfig, *, judged: bool = True) -> ImageData:
    """The data ``config`` names, refused (``dataset.require_trainable``) when it cannot be
    trained on; ``judged=False`` leaves that to the caller (``tlcli data check``, which decodes
    every image first and then asks ``dataset.problems``, the same rules)."""
    data = _load_source(config)
    if judged:
        require_trainable(data, config.max_bad)
    return apply_fold(data, folds=config.folds, fold=config.fold, seed=config.seed) if config.folds else data


def _missing(source: str) -> DataError:
    return DataError(
        f"no data set '{source}': it is not a folder, not a folder under {data_root()}/, "
        f"not a built-in set ({', '.join(BUILTIN_NAMES)}), TFRecord files, hf:DATASET or a .csv label file"
    )


def _missing_csv(source: str) -> DataError:
    return DataError(f"no CSV label file '{source}': it is not a file, nor a file under {data_root()}/")


def check_source_exists(source: str) -> None:
    """A DataError, before anything else is read or built, when ``source`` names a folder or CSV
    file that is not there (built-in sets, hf: and TFRecord sources are checked as they load)."""
    if source in BUILTIN_NAMES or source.startswith(HF_PREFIX) or resolve_folder(source) is not None or is_tfrecord_source(source):
        return
    if source.lower().endswith(".csv"):
        raise _missing_csv(source)
    raise _missing(source)


def _load_source(config: DataConfig) -> ImageData:
    source = config.source
    if source == "digits":
        return load_digits_data(config)
    if source in TORCHVISION_SETS:
        return load_torchvision_data(source, data_root(), config)
    if source.startswith(HF_PREFIX):
        return load_hf_data(config)
    if source.lower().endswith(".csv"):
        path = resolve_folder(source)
        if path is None:  # anything else there (a pipe, a device) is refused by the bounded read
            raise _missing_csv(source)
        return load_csv_data(path, config)
    if is_tfrecord_source(source):
        return load_tfrecord_data(config)
    folder = resolve_folder(source)
    if folder is None:
        raise _missing(source)
    return load_folder(folder, config)
