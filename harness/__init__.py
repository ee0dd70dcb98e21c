"""Budget-sweep evaluation: datasets, sweeps over strategies x budgets, accuracy-vs-compute curves."""
