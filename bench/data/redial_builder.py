"""Reproducible builder of the shipped `redial` dataset from the raw ReDial files (CC BY 4.0).

Li et al., "Towards Deep Conversational Recommendations", NeurIPS 2018. Input: `test_data.jsonl` (dialogues) and
`movies_with_mentions.csv` (movie list). Output, in the data contract: `train/validation/test.jsonl.gz`,
`catalog.csv`, `ATTRIBUTION.md` and `build_info.json`.

One sample per recommender turn (message) that introduces at least one movie not
mentioned earlier in the dialogue and has some dialogue before it. Prompt: our instruction plus the dialogue so far,
speakers named, `@id` mentions replaced by `Title (Year)`. Ground truth: the newly introduced movies with years.
Seen: titles mentioned before. Splits by dialogue, about 80/10/10, in conversationId order (a time proxy).
"""

import csv
import gzip
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.data.catalog import catalog_from_entries, write_catalog_csv
from bench.data.prompts import recommendation_prompt
from bench.data.records import ContextItem, Example, Item
from bench.errors import DataError

MENTION = re.compile(r"@(\d+)")
NAME_WITH_YEAR = re.compile(r"^(?P<title>.*\S)\s*\((?P<year>\d{4})\)\s*$")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
ATTRIBUTION = """# ReDial (processed for bench)

These files are derived from the ReDial dataset: Raymond Li, Samira Kahou, Hannes Schulz, Vincent Michalski,
Laurent Charlin and Chris Pal, "Towards Deep Conversational Recommendations", NeurIPS 2018.
License: Creative Commons Attribution 4.0 International (CC BY 4.0), http://creativecommons.org/licenses/by/4.0

Changes: only the official ReDial test split (1,342 dialogues) was available; it was re-split by dialogue into
train/validation/test in conversationId order; one sample per recommender turn that introduces a new movie; movie
names had doubled spaces collapsed; movies without a release year were left out of the catalog.
Rebuild with: `bench data build redial --source DIR` (DIR holds test_data.jsonl and movies_with_mentions.csv).
"""


@dataclass(frozen=True)
class Movie:
    """One entry of the ReDial movie list after cleaning; year None when the name carries none."""

    title: str
    year: int | None
    mentions: int

    @property
    def display(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title


def clean_movie_name(name: str) -> tuple[str, int | None]:
    """Collapse doubled spaces and split off a trailing `(Year)`."""
    cleaned = " ".join(name.split())
    match = NAME_WITH_YEAR.match(cleaned)
    if match is None:
        return cleaned, None
    return match.group("title"), int(match.group("year"))


def read_movies(path: Path) -> dict[str, Movie]:
    """movieId -> Movie from `movies_with_mentions.csv` (columns movieId,movieName,nbMentions)."""
    movies: dict[str, Movie] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"movieId", "movieName"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected columns movieId,movieName,nbMentions")
        for line_number, row in enumerate(reader, start=2):
            if not row["movieId"] or not row["movieName"]:
                raise DataError(f"{path}: line {line_number}: empty movieId or movieName")
            title, year = clean_movie_name(row["movieName"])
            count = row.get("nbMentions") or "0"
            movies[row["movieId"]] = Movie(title, year, int(count) if count.isdigit() else 0)
    return movies


def _movie(movie_id: str, movies: dict[str, Movie], dialogue: dict) -> Movie | None:
    if movie_id in movies:
        return movies[movie_id]
    name = dialogue.get("movieMentions", {}).get(movie_id)
    if isinstance(name, str) and name.strip():
        title, year = clean_movie_name(name)
        return Movie(title, year, 0)
    return None


def _render(text: str, movies: dict[str, Movie], dialogue: dict) -> str:
    def replace(match: re.Match[str]) -> str:
        movie = _movie(match.group(1), movies, dialogue)
        return movie.display if movie else match.group(0)

    return " ".join(MENTION.sub(replace, text).split())


def _liked(dialogue: dict, movie_id: str) -> bool | None:
    questions = dialogue.get("initiatorQuestions")
    answer = questions.get(movie_id) if isinstance(questions, dict) else None
    if not isinstance(answer, dict):
        return None
    return {1: True, 0: False}.get(answer.get("liked"))


def dialogue_examples(dialogue: dict, movies: dict[str, Movie]) -> list[Example]:
    """All samples of one dialogue, one per recommender message that introduces a movie with a year."""
    recommender = dialogue["respondentWorkerId"]
    conversation: list[str] = []
    mentioned: list[str] = []
    examples: list[Example] = []
    for turn_index, message in enumerate(dialogue["messages"]):
        sender, text = message["senderWorkerId"], message["text"]
        ids_in_turn = MENTION.findall(text)
        if sender == recommender and conversation:
            new_ids = list(dict.fromkeys(m for m in ids_in_turn if m not in mentioned))
            groundtruth: list[Item] = []
            for movie_id in new_ids:
                movie = _movie(movie_id, movies, dialogue)
                if movie is not None and movie.year is not None:
                    groundtruth.append((movie.title, movie.year))
            if groundtruth:
                seen_movies = [movie for m in mentioned if (movie := _movie(m, movies, dialogue)) is not None]
                context = tuple(ContextItem(movie.title, movie.year, _liked(dialogue, m))
                                for m in mentioned if (movie := _movie(m, movies, dialogue)) and movie.year)
                examples.append(Example(
                    id=f"redial-{dialogue['conversationId']}-{turn_index}",
                    prompt=tuple(recommendation_prompt("\n".join(conversation))),
                    groundtruth=tuple(groundtruth),
                    seen_titles=tuple(dict.fromkeys(movie.title for movie in seen_movies)),
                    dialog_id=str(dialogue["conversationId"]),
                    context_items=context,
                ))
        speaker = "Recommender" if sender == recommender else "User"
        conversation.append(f"{speaker}: {_render(text, movies, dialogue)}")
        mentioned.extend(m for m in ids_in_turn if m not in mentioned)
    return examples


def read_dialogues(path: Path) -> list[dict]:
    """Dialogues sorted by numeric conversationId; a bad line is a DataError naming it."""
    dialogues: list[dict] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                dialogue = json.loads(line)
                int(dialogue["conversationId"])
                dialogue["messages"], dialogue["respondentWorkerId"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: line {line_number}: not a ReDial dialogue ({exc!r})") from None
            dialogues.append(dialogue)
    return sorted(dialogues, key=lambda d: int(d["conversationId"]))


def split_dialogues(dialogues: list[dict]) -> dict[str, list[dict]]:
    """Contiguous 80/10/10 split in conversationId order, so no dialogue is in two splits."""
    n = len(dialogues)
    n_train = round(n * SPLIT_FRACTIONS[0])
    n_validation = round(n * SPLIT_FRACTIONS[1])
    return {"train": dialogues[:n_train], "validation": dialogues[n_train:n_train + n_validation],
            "test": dialogues[n_train + n_validation:]}


def _write_gzip_jsonl(path: Path, examples: list[Example]) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
        for example in examples:
            handle.write((json.dumps(example.to_json(), ensure_ascii=False) + "\n").encode("utf-8"))


def build_redial(source: Path, out: Path) -> dict[str, object]:
    """Build the processed dataset from `source` into `out` atomically; returns the build summary."""
    dialogues_path, movies_path = source / "test_data.jsonl", source / "movies_with_mentions.csv"
    for required in (dialogues_path, movies_path):
        if not required.is_file():
            raise DataError(f"{required}: missing (the ReDial source directory needs test_data.jsonl and "
                            "movies_with_mentions.csv)")
    movies = read_movies(movies_path)
    with_year = [movie for movie in movies.values() if movie.year is not None]
    catalog = catalog_from_entries(((m.title, m.year, m.mentions) for m in with_year), str(movies_path))
    splits = split_dialogues(read_dialogues(dialogues_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".redial-build-", dir=out.parent))
    staging.chmod(0o755)
    try:
        counts: dict[str, dict[str, int]] = {}
        for split, dialogues in splits.items():
            examples = [example for dialogue in dialogues for example in dialogue_examples(dialogue, movies)]
            _write_gzip_jsonl(staging / f"{split}.jsonl.gz", examples)
            counts[split] = {"dialogues": len(dialogues), "samples": len(examples)}
        write_catalog_csv(catalog, staging / "catalog.csv")
        (staging / "ATTRIBUTION.md").write_text(ATTRIBUTION, encoding="utf-8")
        summary: dict[str, object] = {"splits": counts, "catalog_items": len(catalog),
                                      "movies_without_year_left_out": len(movies) - len(with_year),
                                      "catalog_duplicates_merged": len(with_year) - len(catalog)}
        (staging / "build_info.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return summary
