"""The inference service: FastAPI app serving the model zoo's checkpoints."""
