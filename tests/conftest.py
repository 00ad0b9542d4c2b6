"""Shared fixtures: a hand-made catalog and example used by the hand-computed metric tests."""

import pytest

from bench.data.catalog import Catalog, catalog_from_entries
from bench.data.records import Example


@pytest.fixture
def small_catalog() -> Catalog:
    entries = [("Heat", 1995), ("Heat", 1997), ("Up", 2009), ("Up", 2012), ("Alien", 1979), ("Cars", 2006),
               ("Big", 1988)]
    return catalog_from_entries(((title, year, 0) for title, year in entries), "test")


@pytest.fixture
def heat_up_example() -> Example:
    return Example(id="e1", prompt=({"role": "user", "content": "I liked Alien"},),
                   groundtruth=(("Heat", 1995), ("Up", 2009)), seen_titles=("Alien",), dialog_id="d1")
