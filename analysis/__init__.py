"""Songbird's judgement: PromQL builders, the Prometheus adapter, verdicts, statistics, and the decision
state machine. Everything but `analysis.prometheus` is pure."""
