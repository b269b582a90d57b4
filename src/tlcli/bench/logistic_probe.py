"""The independent reference of the quality target: scikit-learn's ``LogisticRegression`` on the
features a run's backbone gives, over the same train/val/test split as the run.

Run as ``python -m tlcli.bench.logistic_probe CHECKPOINT`` (prints one JSON object). The features are
what enters the checkpoint's head, computed in plain eval mode; the regularisation ``C`` is
chosen on the validation split from a grid, as a practitioner would, and the model is refitted
on train alone so the test split stays untouched.
"""

from __future__ import annotations

import argparse
import json

# C of scikit-learn's LogisticRegression (inverse L2 strength), chosen on the validation split.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def split_features(checkpoint_path: str, *, batch_size: int = 64) -> dict[str, tuple]:
    """{split: (features as a numpy array, labels)} for the run's train, val and test splits."""
    import numpy as np
    import torch

    from tlcli.run.checkpoint import load_checkpoint, model_from_checkpoint
    from tlcli.core.config import TrainConfig
    from tlcli.data.loading import TransformedImages, make_loader
    from tlcli.data.sources import load_data
    from tlcli.data.transforms import build_transform

    checkpoint = load_checkpoint(checkpoint_path)
    data = load_data(TrainConfig.from_dict(checkpoint["config"]).data)
    built = model_from_checkpoint(checkpoint)
    model = built.model.eval()
    captured: list[torch.Tensor] = []
    model.get_submodule(built.head_name).register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    result = {}
    for split, images in data.splits.items():
        if not len(images):
            continue
        loader = make_loader(TransformedImages(images, build_transform(built.preprocess), draft_size=built.preprocess.resize_size),
                             batch_size=batch_size, shuffle=False, workers=0, seed=0, persistent=False)
        features, labels = [], []
        with torch.no_grad():
            for batch in loader:
                model(batch.images)
                features.append(captured.pop())
                labels.append(batch.labels)
        result[split] = (torch.cat(features).numpy().astype(np.float64), torch.cat(labels).numpy())
    return result


def probe(features: dict[str, tuple]) -> dict:
    """Accuracy of the validation-chosen logistic regression on each split."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = features["train"]

    def fitted(c: float):
        return LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train)

    scores = {c: fitted(c).score(*features["val"]) for c in C_GRID}
    best_c = max(C_GRID, key=lambda c: (scores[c], -abs(c - 1.0)))  # ties: the C nearest scikit-learn's default
    model = fitted(best_c)
    return {"C": best_c, "val_by_C": {str(c): s for c, s in scores.items()},
            **{f"{split}_acc": float(model.score(x, y)) for split, (x, y) in features.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    print(json.dumps(probe(split_features(parser.parse_args().checkpoint))))


if __name__ == "__main__":
    main()
