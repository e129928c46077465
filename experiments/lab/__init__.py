"""The bandit laboratory of the paper's Section 3.5: config, one row, the sharded runner, tables, figures, findings, the report section."""
