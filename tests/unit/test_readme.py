from pathlib import Path

from fl_runtime.config import reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_is_current() -> None:
    assert reference_markdown() in README.read_text(), "run `fl config docs` and update README"


def _module_map() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### The `fl_runtime` package")
    return text[start : text.index("Public API", start)]


def test_readme_module_map_names_every_package_and_module() -> None:
    # Prepare: every package and module of fl_runtime, as the map spells them
    package = README.parent / "fl_runtime"
    names = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or parts[0] == "cli":
            continue  # the map lists cli/ by subcommand
        names.add(".".join(parts) if len(parts) > 1 else parts[0])
    # Execute
    table = _module_map()
    # Assert: a module is listed as `pkg.mod`, as `pkg/` with its modules, or by name
    missing = {
        n
        for n in names
        if f"`{n}`" not in table
        and f"`{n}/`" not in table
        and f"`{n.rsplit('.', 1)[-1]}`" not in table
    }
    assert not missing, f"README module map lacks: {sorted(missing)}"
