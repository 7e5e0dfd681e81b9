"""Deployment files (Docker, compose, Kubernetes, Prometheus, Grafana) and their offline checker.

A package only so that ``deploy/check.py`` and its tests can share ``deploy.dashboard``; nothing
here is installed with ttc-gateway.
"""
