"""The training engine: device and precision set-up, optimisers, and the loop itself."""
