"""Clustering, label-free and label scores, baselines, and the evaluation across seeds."""
