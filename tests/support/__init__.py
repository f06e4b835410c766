"""What the test tiers share, each thing once.

- `manifests`: SoarRun manifests (one builder, presets for the runs the tiers use) and what a
  finished run decided, read from its store;
- `models`: a tiny random Llama with a character tokenizer;
- `cluster`: namespaces, the operator installed the way the Helm chart installs it, admin-side
  reads of runs, Jobs and Events, and runs whose stages are the stub;
- `operator_stub`: the stand-in for `soar stage` that those runs execute.

`manifests` imports no ML library and no Kubernetes client, so the unit tier stays fast.
"""
