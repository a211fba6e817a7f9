"""Training: the loop (`loop.train`, used by `python -m ef_keras.train`) and the recipes it runs."""
