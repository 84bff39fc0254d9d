"""Knowledge-base load time and alias lookup throughput on the built KB.

    .venv/bin/python benchmarks/data_kb.py [--kb .mofi/data/kb/kb.jsonl] [--repeat 3]

Prints one JSON line: entities, aliases, best-of-N load wall and CPU seconds, lookups per second
(every alias of the KB looked up once, plus as many misses).
"""

from __future__ import annotations

import argparse
import json
import time

from mofi.kb import KnowledgeBase


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", default=".mofi/data/kb/kb.jsonl")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    wall, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        kb = KnowledgeBase.load(args.kb)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    aliases = list(kb.aliases())
    queries = aliases + [a + " zz" for a in aliases]
    t0 = time.perf_counter()
    hits = sum(1 for q in queries if kb.lookup(q))
    lookup_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "kb": args.kb,
                "entities": len(kb),
                "aliases": len(aliases),
                "load_wall_s": round(min(wall), 3),
                "load_cpu_s": round(min(cpu), 3),
                "lookups_per_s": round(len(queries) / lookup_s),
                "hit_rate": round(hits / len(queries), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
