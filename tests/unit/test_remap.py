"""Remap: titles onto a hand-made catalog through each stage (exact, normalised, fuzzy, miss)."""

import pytest

from baselines.remap import Remapper
from bench.data.catalog import Catalog, catalog_from_entries


@pytest.fixture
def catalog() -> Catalog:
    entries = [("The Matrix", 1999, 50), ("Heat", 1995, 30), ("Heat", 1997, 40), ("Up", 2009, 20),
               ("Alien", 1979, 10), ("Se7en", 1995, 5), ("Terminator 2: Judgment Day", 1991, 8)]
    return catalog_from_entries(entries, "test")


def test_exact_title_and_year(catalog: Catalog) -> None:
    result = Remapper(catalog).remap("The Matrix", 1999)
    assert (result.item, result.stage, result.score) == (("The Matrix", 1999), "exact", 100.0)


def test_case_and_whitespace_are_normalised(catalog: Catalog) -> None:
    result = Remapper(catalog).remap("  the   MATRIX ", 1999)
    assert (result.item, result.stage) == (("The Matrix", 1999), "normalised")


def test_year_off_by_one_or_two_takes_the_nearest_year(catalog: Catalog) -> None:
    remapper = Remapper(catalog)
    assert remapper.remap("Alien", 1980).item == ("Alien", 1979)
    assert remapper.remap("Alien", 1981).stage == "normalised"
    assert remapper.remap("heat", 1998).item == ("Heat", 1997)
    assert remapper.remap("Heat", 1996).item == ("Heat", 1995)
    assert remapper.remap("Alien", 1982).stage == "miss"


def test_without_a_year_the_most_mentioned_item_is_taken(catalog: Catalog) -> None:
    assert Remapper(catalog).remap("Heat").item == ("Heat", 1997)


def test_a_typo_above_the_threshold_is_a_fuzzy_hit(catalog: Catalog) -> None:
    result = Remapper(catalog).remap("The Matrx", 1999)
    assert (result.item, result.stage) == (("The Matrix", 1999), "fuzzy")
    assert 90 <= result.score < 100
    typo_and_year = Remapper(catalog).remap("Terminator 2: Judgement Day", 1992)
    assert typo_and_year.item == ("Terminator 2: Judgment Day", 1991) and typo_and_year.stage == "fuzzy"


def test_the_threshold_is_a_parameter(catalog: Catalog) -> None:
    result = Remapper(catalog, fuzzy_threshold=99.0).remap("The Matrx", 1999)
    assert result.item is None and result.stage == "miss" and 90 <= result.score < 99


def test_an_unrelated_title_or_a_far_year_is_a_miss(catalog: Catalog) -> None:
    remapper = Remapper(catalog)
    assert remapper.remap("Pride and Prejudice", 1999).stage == "miss"
    assert remapper.remap("Pride and Prejudice", 1999).item is None
    assert remapper.remap("The Matrx", 2010).stage == "miss"
    assert remapper.remap("Upp", 2009).stage == "miss"
    assert remapper.remap("", 1999).stage == "miss"
