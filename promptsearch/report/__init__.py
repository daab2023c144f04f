"""Leaderboards across runs and one-page reports of a single run."""
