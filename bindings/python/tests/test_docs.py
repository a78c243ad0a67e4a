"""The runnable snippets of docs/python.md run as written."""

import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "python.md"


def snippet(tag):
    text = DOC.read_text()
    m = re.search(rf"<!-- test: {tag} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"no block tagged {tag} in {DOC}"
    return m.group(1)


def test_recipe_1_training_step(capsys):
    code = snippet("recipe-1")
    exec(compile(code, f"{DOC}:recipe-1", "exec"), {"__name__": "recipe_1"})
    assert "packed 38 tokens for 80 unpacked" in capsys.readouterr().out
