"""Training: the versioned training set, the model pipeline, and registration in MLflow."""
