"""A trained model as a bundle, its atomic checkpoints, and background retrain jobs."""
