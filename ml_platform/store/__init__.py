"""Where the platform keeps things: the platform database (engine and every table), the lake,
the prediction log, and access to the MLflow registry with its alias and tag names."""
