"""Training: data discovery, splits, the loop and its metrics. Uses the model, never export code."""
