"""Deployments: models running on a backend with replicas, changed at run time."""
