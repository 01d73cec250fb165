"""Upload bytes -> MNIST-style 28x28 digits: decoding and the preprocessing steps."""
