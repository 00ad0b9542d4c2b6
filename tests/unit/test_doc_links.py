"""Every relative link in the repository's Markdown points at a file or folder that is committed.

READMEs and reports back each claim with a path (a record, a report, a procedure); a renamed or moved folder must not
leave a reader at a dead link. Links to the web and in-page anchors are not checked; fenced code is skipped (commands,
not links). Files are the ones git tracks, so an untracked local folder can neither satisfy nor break the check."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def tracked_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(listed.splitlines())


def dead_links(markdown: Path, root: Path, tracked: set[str]) -> list[str]:
    """One line per relative link of `markdown` (a file under `root`) whose target is no file of `tracked` (paths
    relative to `root`) and no folder holding one."""
    text = FENCED.sub("", markdown.read_text(encoding="utf-8"))
    name = markdown.relative_to(root).as_posix()
    dead = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        resolved = (markdown.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(root):
            dead.append(f"{name}: {target} (outside the repository)")
            continue
        relative = resolved.relative_to(root).as_posix()
        if relative not in tracked and not any(path.startswith(relative + "/") for path in tracked):
            dead.append(f"{name}: {target}")
    return dead


def test_every_relative_link_in_the_committed_markdown_resolves() -> None:
    tracked = tracked_files()
    markdown = sorted(ROOT / name for name in tracked if name.endswith(".md"))
    assert markdown
    dead = [line for path in markdown for line in dead_links(path, ROOT.resolve(), tracked)]
    assert not dead, "\n".join(dead)


def test_the_check_names_a_dead_link_and_one_outside_the_repository_but_not_a_live_one(tmp_path: Path) -> None:
    root = tmp_path.resolve() / "repo"
    (root / "docs").mkdir(parents=True)
    note = root / "docs" / "note.md"
    note.write_text("[live](other.md) [folder](../results/) [web](https://example.org) [anchor](#x) "
                    "[dead](gone.md) [live with anchor](other.md#part)\n[outside](../../elsewhere.md)\n"
                    "```\n[in code](nothing.md)\n```\n", encoding="utf-8")
    tracked = {"docs/note.md", "docs/other.md", "results/runs/a/spec.json"}
    assert dead_links(note, root, tracked) == ["docs/note.md: gone.md",
                                               "docs/note.md: ../../elsewhere.md (outside the repository)"]
