"""The reStructuredText under doc/ parses without errors.

A simple table whose text runs into a column's margin, or a bad indent, renders as an error
block in place of the content: it went unnoticed in three pages until this test. Sphinx's own
roles and directives (``:doc:``, ``:class:``, ``toctree``...) are unknown to bare docutils and
are the only messages allowed.
"""

import io
import pathlib

import docutils.core
import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "doc"
_SPHINX_ONLY = ("Unknown interpreted text role", 'Unknown directive type "toctree"')


@pytest.mark.parametrize("page", sorted(DOC.glob("*.rst")), ids=lambda path: path.name)
def test_the_page_parses_without_errors(page):
    messages = io.StringIO()
    docutils.core.publish_doctree(page.read_text(), source_path=str(page),
                                  settings_overrides={"warning_stream": messages, "report_level": 2,
                                                      "halt_level": 5})
    problems = [line for line in messages.getvalue().splitlines()
                if ("(ERROR/" in line or "(WARNING/" in line or "(SEVERE/" in line)
                and not any(allowed in line for allowed in _SPHINX_ONLY)]
    assert not problems, "\n".join(problems)
