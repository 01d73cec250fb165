"""Model zoo: four classic CNN families for MNIST, registered by name."""

from models.registry import InputSpec, get_input_spec, get_model, list_models, register_model

__all__ = ["InputSpec", "get_input_spec", "get_model", "list_models", "register_model"]
