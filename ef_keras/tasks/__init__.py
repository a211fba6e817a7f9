"""Dense-prediction tasks on the families' feature pyramids: segmentation, detection, and their composed data."""
