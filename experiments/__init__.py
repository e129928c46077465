"""Runnable experiments (ships as ``murphyjax.experiments``): configs, runners and reports."""
