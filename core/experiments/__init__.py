"""Experiments: run one workload under several plugins of a role and compare them
(``pinnace experiment ...``), with a table, CSV, JSON and a plot as results."""
