"""Per-symbol Mamba forecasters of daily returns and volatility: data, features, model, training."""
