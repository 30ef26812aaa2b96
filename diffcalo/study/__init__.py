"""Design studies: configs, the objective, runner and sweeps, executors, the journal, reports."""
