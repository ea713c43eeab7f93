"""What the benchmarks share: percentiles and the side-by-side table they print."""

from __future__ import annotations

import math


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (with under 100 samples, p99 is the slowest one)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns 2 to 4 hold figures (right-aligned); a rule separates scenarios."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        aligned = [
            cell.rjust(width) if 2 <= i <= 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return " | ".join(aligned).rstrip()

    rule = "-+-".join("-" * width for width in widths)
    out, previous = [line(header), rule], rows[0][0]
    for row in rows:
        if row[0] != previous:
            out.append(rule)
            previous = row[0]
        out.append(line(row))
    return "\n".join(out)


def print_problems(problems: list[str]) -> None:
    """The distinct errors a run met, the first ten, each cut to a line's worth."""
    if problems:
        print("\nErrors:")
        for problem in sorted(set(problems))[:10]:
            print(f"  {problem[:300]}")
