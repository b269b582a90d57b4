"""tlcli: transfer learning for image classification, as short reproducible commands and as Python.

    import tlcli
    phase1 = tlcli.train("digits", arch="timm:tf_efficientnet_lite0")   # backbone frozen, head fitted
    phase2 = tlcli.finetune(phase1.run_dir, epochs=3)                   # unfrozen, lower learning rate
    tlcli.evaluate(phase2.run_dir).metrics.accuracy
    tlcli.predict(["img.png"], checkpoint=phase2.run_dir)[0].label
    tlcli.export(phase2.run_dir, format="onnx")

The verbs are those of the command line (``tlcli train --help`` ...), with the options as keyword
arguments named as there (``--batch-size 64`` is ``batch_size=64``). Results are the objects the
command line prints, with ``to_dict()``; errors are ``TlcliError`` subclasses (``ConfigError`` for
a bad option, raised before any data is read). ``progress=False`` silences a training verb.
"""

from tlcli.api import Predictions, compare, evaluate, export, finetune, predict, summary, train, train_config
from tlcli.core.errors import CheckpointError, ConfigError, DataError, Interrupted, ModelError, TlcliError, WeightsError
from tlcli.core.version import __version__

__all__ = ["train", "finetune", "evaluate", "predict", "export", "summary", "compare", "train_config", "Predictions",
           "TlcliError", "ConfigError", "DataError", "ModelError", "WeightsError", "CheckpointError", "Interrupted", "__version__"]
