"""Generated gRPC stubs of proto/pricing/v1/pricing.proto (regenerate with `make proto`)."""
