"""The SoarRun operator: runs each planned stage of a SoarRun as a Kubernetes Job and mirrors the
run's progress into its status, Events and metrics. It knows no ML: stages are `soar stage`
command lines, the same ones the local executor runs."""
