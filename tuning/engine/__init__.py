"""The engine: data, model, training loop, checkpoints and measurements. Needs torch, never Ray or Optuna."""
