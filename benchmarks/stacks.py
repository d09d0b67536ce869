"""Summarises py-spy raw (collapsed) stacks: where the CPU samples of a thread pool went.

    python -m benchmarks.stacks bench-results/registry-import.collapsed [--top 40] [--match S]

Prints the share of samples in which each function is on the stack (inclusive) and at the
top of the stack (self), over the stacks that contain `--match` (default: the import's
servicer method)."""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    """'name (file.py:123)' -> 'name (file.py)', so lines of one function add up."""
    return _FRAME_LINE.sub(")", frame.strip())


def summarise(path: Path, match: str) -> tuple[int, int, Counter[str], Counter[str]]:
    total = matched = 0
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        found = _LINE.match(line)
        if not found:
            continue
        count = int(found["count"])
        total += count
        if match not in found["stack"]:
            continue
        matched += count
        frames = [_function(f) for f in found["stack"].split(";")[1:]]
        for name in set(frames):
            inclusive[name] += count
        if frames:
            self_time[frames[-1]] += count
    return total, matched, inclusive, self_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="RegistryServicer.ImportSubjects")
    args = parser.parse_args(argv)
    total, matched, inclusive, self_time = summarise(args.path, args.match)
    if not matched:
        print(f"no stack contains {args.match!r}", file=sys.stderr)
        return 1
    print(f"{total:,} active samples; {matched:,} ({matched / total:.0%}) contain {args.match}")
    print(f"\n{'inclusive':>9} {'self':>6}  function (percent of the matching samples)")
    for name, count in inclusive.most_common(args.top):
        print(f"{count / matched:9.1%} {self_time[name] / matched:6.1%}  {name}")
    print(f"\n{'self':>9}  function")
    for name, count in self_time.most_common(args.top // 2):
        print(f"{count / matched:9.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
