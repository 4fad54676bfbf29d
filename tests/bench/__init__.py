"""Benchmarks against the design budgets; ``make bench`` runs them all."""
