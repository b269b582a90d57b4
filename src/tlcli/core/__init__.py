"""Layer 0, what every other layer uses and which imports nothing of tlcli's above it: errors,
every option's default and choices (``config``), atomic file writes, process tuning, caches'
places, termination signals, metrics and figures."""
