"""SOAR: a teacher LLM writes problems, students learn from them, the teacher gains by it."""

__version__ = "0.1.0"
