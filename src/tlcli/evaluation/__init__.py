"""A trained run measured: ``evaluate`` (accuracy, per-class metrics, the confusion matrix on a
split), and ``report`` (one HTML page of a run or a study)."""
