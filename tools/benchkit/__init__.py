"""Workloads and helpers of tools/bench (see its docstring)."""
