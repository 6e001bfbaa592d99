from pathlib import Path

from fl_runtime.config import reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_is_current() -> None:
    assert reference_markdown() in README.read_text(), "run `fl config docs` and update README"
