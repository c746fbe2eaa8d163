"""Songbird's controller: the Kubernetes adapter, traffic routers, reconciler, scheduler, leader election,
status and events, its own metrics, and the CLI. It imports `analysis` and `config`; never the reverse."""
