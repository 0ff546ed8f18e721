"""Evaluation: ranking metrics and protocols, beyond-accuracy metrics, intervals, per-user analysis, tables and plots."""
