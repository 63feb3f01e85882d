"""Data layer: the EvalRS schema, loaders, download, synthetic data and folds."""
