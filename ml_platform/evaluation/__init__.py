"""Evaluation: the candidate on held-out rows, its gates, intervals, model card and reports."""
