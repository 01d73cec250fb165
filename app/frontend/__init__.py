"""The HTTP side of the service: routes, upload parsing, decoding and preprocessing."""
