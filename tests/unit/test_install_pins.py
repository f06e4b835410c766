"""The test environment runs the ML stack the worker image ships: `make install` constrains the
packages named in the Makefile's IMAGE_PINS to their versions in images/constraints-worker.txt."""

import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def image_pins() -> dict[str, str]:
    names = re.search(r"^IMAGE_PINS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert names, "Makefile: IMAGE_PINS is gone"
    lock = (ROOT / "images" / "constraints-worker.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", lock, re.M))
    return {name: pins[name] for name in names.group(1).split("|")}


def test_the_ml_stack_is_the_worker_images():
    pins = image_pins()
    assert {"torch", "transformers", "peft"} <= pins.keys()
    installed = {name: version(name) for name in pins}
    assert installed == pins, "run `make install` (a changed lock reinstalls the environment)"
