"""The physics-informed Black-Scholes pricer: domain, network, training, export, evaluation."""
