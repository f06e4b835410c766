"""The stages: each unit of work of a run, `soar stage <name> --run <uri> --step <t> [--index i]`.

- `outer_step`: one outer step of SOAR, top to bottom (teacher-generate, baseline, student,
  teacher-update), calling the families below;
- `prepare`, `teacher`, `students`, `evaluate`: the stage bodies by family;
- `runner`: the registry of stage names and the runner that writes completion manifests.

Imports go one way: runner -> outer_step -> families -> the algorithm modules and
`soar.runstate` (docs/design.md, "Layers").
"""
