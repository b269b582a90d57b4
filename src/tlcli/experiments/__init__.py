"""Runs about runs: ``compare`` trains a grid of configurations (and folds) and tabulates them;
``sanity`` checks the set-up can overfit two batches; ``lr_find`` is the learning-rate range test."""
