"""What a run writes, so that a killed run resumes where it stopped: each process appends one JSON line per image
to its own file, after the image file exists, flushed to disk per batch; a batch is done when all its lines are
there. The merge reads every process's file into one results.jsonl in grid order."""
from __future__ import annotations

import json
import os
from pathlib import Path

RUN_FILE = "run.json"
MERGED = "results.jsonl"


def rank_file(out: Path, rank: int) -> Path:
    return out / f"results-rank{rank}.jsonl"


def key_of(line: dict) -> tuple[str, int, str]:
    return line["prompt"], line["seed"], line["method"]


def read_lines(out: Path) -> dict[tuple[str, int, str], dict]:
    """Every finished image of earlier or parallel processes, by (prompt, seed, method). A last line cut off by a
    kill is ignored (its batch is run again)."""
    found = {}
    for path in sorted(out.glob("results-rank*.jsonl")):
        for text in path.read_text().splitlines():
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            found[key_of(line)] = line
    return found


def append_lines(path: Path, lines: list[dict]) -> None:
    """Append and sync; after a kill that cut a line off, start on a new line so the cut line stays alone."""
    cut = path.is_file() and path.stat().st_size and path.read_bytes()[-1:] != b"\n"
    with open(path, "a") as f:
        if cut:
            f.write("\n")
        for line in lines:
            f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())


def check_run_config(out: Path, config: dict) -> None:
    """Write the run's settings on a first start; on a resume refuse other settings (the results would mix)."""
    path = out / RUN_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
        if changed:
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)} differ); resume it with "
                             "the same arguments or give another --out")
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=1))
    tmp.replace(path)


def write_merged(out: Path, lines: list[dict]) -> Path:
    path = out / MERGED
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tmp.replace(path)
    return path
