from benchmarks._table import format_table, percentile


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0], 100) == 2.0


def test_format_table_is_markdown() -> None:
    text = format_table(["receiver", "MB/s"], [["gazex", 123.456], ["storescp", 0.5]])
    lines = text.splitlines()
    assert lines[0].startswith("| receiver")
    assert "| gazex" in lines[2] and "123" in lines[2]
    assert "0.5" in lines[3]
