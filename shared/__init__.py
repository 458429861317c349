"""Code both the trainer and the server import: API stubs, artifact store, Black-Scholes."""
