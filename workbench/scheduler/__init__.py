"""Scheduled headless runs of promoted notebooks on the procrastinate job queue."""
