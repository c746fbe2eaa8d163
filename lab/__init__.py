"""The local lab: a whole canary release on one machine (`songbird lab`, `make demo`).

`lab.run.Lab` orchestrates it (and `lab.cli` is its command line): kmock's Kubernetes emulator
(`lab.apiserver`) holding the scenario (`lab.scenarios`), the data plane below, a real Prometheus
(`lab.prometheus`) scraping nginx and the controller, the real controller as a `songbird run` process, and
the load; `lab.timeline` measures what happened and `lab.report` writes timeline.json and report.png.
With ``--kubeconfig`` the same rollout, load and timeline run on a real cluster's seed objects instead, read
and written through `lab.cluster` (the lab's only use of the ``kubernetes`` client). `lab.odds` simulates
many runs with the controller's own judge: the chances behind the lab's policy and rates (`lab.scenarios`).

The data plane, a real nginx playing ingress-nginx; pieces, each usable alone:

- `lab.translator` (pure): Ingress objects + local endpoints -> `lab.model.RoutingModel`, with ingress-nginx's
  canary semantics; `lab.model.decide` is the same decision in Python, for tests and explanations;
- `lab.render` (pure): a `RoutingModel` -> an nginx configuration string (Lua routing and metrics);
- `lab.nginx`: runs nginx as a plain process in a temporary directory and applies models by graceful reload;
- `lab.backend` / `lab.replicas`: local HTTP backends answering with their version, one process per replica;
- `lab.load`: a bounded load generator that reports which version answered, per time bucket;
- `lab.sync`: a thread that keeps backends, Deployment status and nginx in step with a cluster view.

Everything binds to 127.0.0.1, lives in temporary directories and stops the processes it started.
"""
