"""The serving core: the models being served, and answering a prediction request with them.

Knows no HTTP (the frontend's adapters translate) and no torch (the engine runs the models).
"""
