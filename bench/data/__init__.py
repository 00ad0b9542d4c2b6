"""Data: the record contract, datasets by name or path, catalogs, JSONL files, and the shipped ReDial files."""
