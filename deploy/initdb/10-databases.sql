-- The stores besides Dagster's: MLflow's tracking and registry, and the platform database
-- (audit trail, approvals, prediction log, outcomes).
CREATE DATABASE mlflow OWNER platform;
CREATE DATABASE platform OWNER platform;
