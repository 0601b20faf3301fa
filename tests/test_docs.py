"""The README is a front page and the docs site holds the rest: the README stays short and keeps the two set-up
commands CI runs, every page it or mkdocs.yml names exists, the API pages name objects that exist, and the docs'
benchmark table is the one benchmarks/results.json gives. (`mkdocs build --strict` itself runs in CI: `make docs`.)"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
MAX_README_LINES = 300


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def _local_links(markdown: str) -> list[str]:
    """Targets of Markdown links that point into the repository (no URL scheme, no pure #anchor)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move the details to docs/"


def test_readme_keeps_the_two_set_up_commands_that_ci_and_make_run():
    readme = README.read_text(encoding="utf-8")
    block = re.search(r"## Set-up on a fresh machine: two commands\n\n```bash\n(.*?)```", readme, re.S)
    assert block, "README.md: the set-up section with its two commands is missing"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make quickstart", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^quickstart: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "emi-hf quickstart" in makefile.split("\nquickstart:", 1)[1].split("\n\n", 1)[0]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in ci  # the README's test command, as written there
    assert "make docs" in ci and ci.index("make docs") > ci.index("make test")  # the strict docs build, after tests
    assert re.search(r"^docs: .*\n\t.*\$\(BIN\)/mkdocs build --strict$", makefile, re.M)


def test_every_page_linked_from_the_readme_exists():
    links = _local_links(README.read_text(encoding="utf-8"))
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert (ROOT / link.split("#")[0]).is_file(), f"README.md links to {link}, which does not exist"


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    assert MKDOCS["docs_dir"] == "docs"
    nav = _nav_pages(MKDOCS["nav"])
    for page in nav:
        assert (DOCS / page).is_file(), f"mkdocs.yml's nav names docs/{page}, which does not exist"
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, "every page of docs/ is in mkdocs.yml's nav once"
    for page in pages:  # links between pages (anchors are checked by mkdocs build --strict)
        for link in _local_links((DOCS / page).read_text(encoding="utf-8")):
            target = (DOCS / page).parent / link.split("#")[0]
            assert target.is_file(), f"docs/{page} links to {link}, which does not exist"


def test_mkdocstrings_reads_the_sources_statically():
    handler = next(p["mkdocstrings"] for p in MKDOCS["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    assert handler["handlers"]["python"]["paths"] == ["src"]


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _module_file(module: str) -> Path | None:
    base = ROOT / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


API_OBJECTS = sorted({m for page in (DOCS / "api").glob("*.md")
                      for m in re.findall(r"^::: ([\w.]+)$", page.read_text(encoding="utf-8"), re.M)})


def test_the_api_reference_covers_the_public_entry_points():
    names = {path.rsplit(".", 1)[-1] for path in API_OBJECTS}
    assert {"EmiFusionModel", "EmiVisualModel", "EmiAudioModel", "EmiTextModel", "EmiFusionConfig", "EmiVisualConfig",
            "EmiAudioConfig", "EmiTextConfig", "EmiProcessor", "predict_clips", "evaluate_model", "mean_pearson",
            "write_submission", "verify_submission", "EmiStreamer", "EmiTrainingArguments", "train"} <= names


@pytest.mark.parametrize("path", API_OBJECTS)
def test_api_pages_name_objects_that_exist(path):
    # The module paths live in docs/api/ only: when a module moves, this names the line to update.
    module, name = path.rsplit(".", 1)
    source = _module_file(module)
    if source is None:  # `::: package.module` itself
        assert _module_file(path) is not None, f"docs/api: {path} is not a module of src/"
        return
    assert name in _defined_names(source), f"docs/api: {name} is not defined in {source.relative_to(ROOT)}"


def _quickstart_table(text: str) -> str:
    match = re.search(r"^\| visual \| audio \| text \|.*\n\|[-| ]+\|\n(\|.*\|)$", text, re.M)
    assert match, "the quickstart's validation table is missing"
    return match.group(0)


def test_the_quickstart_table_is_the_same_on_the_front_page_and_in_the_docs():
    readme = _quickstart_table(README.read_text(encoding="utf-8"))
    assert readme == _quickstart_table((DOCS / "getting-started.md").read_text(encoding="utf-8"))
    # the figures are the ones benchmarks/quickstart_figures.py wrote (from a quickstart run), and the relations the
    # README states held there
    import json

    figures = json.loads((ROOT / "benchmarks" / "quickstart_figures.json").read_text(encoding="utf-8"))
    columns = ("visual", "audio", "text", "fusion", "fused_equal", "fused_crossfit")
    row = "| " + " | ".join(f"{figures['validation'][c]['mean_pearson']:.4f}" for c in columns) + " |"
    assert row in readme
    assert figures["relations"] and all(figures["relations"].values()), figures["relations"]
    assert figures["commit"] in README.read_text(encoding="utf-8")


def test_the_benchmark_table_of_the_docs_is_generated_from_results_json():
    spec = importlib.util.spec_from_file_location("docs_table", ROOT / "benchmarks" / "docs_table.py")
    docs_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_table)
    assert docs_table.main(["--check"]) == 0, "run python benchmarks/docs_table.py"
    import json

    rows = json.loads(docs_table.RESULTS.read_text(encoding="utf-8"))["rows"]
    page = docs_table.PAGE.read_text(encoding="utf-8")
    for row in rows:  # each row with its date and machine
        assert f"| {row['measured']} | {docs_table.machine_of(row)} |" in page
