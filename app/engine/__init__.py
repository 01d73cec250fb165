"""The model side of the service: models on their device, dynamic batching, the model owner."""
