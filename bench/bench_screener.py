"""Benchmark the screener — rules and model — and, in the same run, Rasa's NLU parse.

Usage: python bench/bench_screener.py [--rasa-url URL] [--rounds N] [--out FILE]

Loads the screener in this process (load time and resident memory after loading, the respelling's word segmenter included), screens
every message of tests/data/dev_set.jsonl in one warm process and prints messages per second
and the median / p99 per-message latency, for the whole screen (rules + model) and for the
rules alone. Then, for comparison, POSTs the same messages to ``{rasa_url}/model/parse``: at
--rasa-url if given, else through ``bot.servers.RasaStack`` when a trained model is in
models/; otherwise it prints why the comparison was skipped.
Targets (issue 10): median <= 10 ms, p99 <= 30 ms, load <= 3 s, resident memory <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.screening import Screener  # noqa: E402

DEV_SET = ROOT / "tests" / "data" / "dev_set.jsonl"
TARGET_MEDIAN_MS = 10.0
TARGET_P99_MS = 30.0
TARGET_LOAD_S = 3.0
TARGET_RSS_MB = 400.0


def rss_mb() -> float:
    """Resident memory of this process now, in MB (from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_texts() -> list[str]:
    """Return the dev-set messages."""
    with DEV_SET.open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def typed_forms(texts: list[str]) -> list[str]:
    """The short messages retyped the ways bot/screening/respell.py undoes (issue 14)."""
    out = []
    for text in texts:
        words = text.split()
        if len(words) <= 20:
            out += ["".join(words), ".".join(words), "   ".join(" ".join(w) for w in words)]
    return out


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def bench_screener(screener, texts: list[str], rounds: int) -> dict[str, float]:
    """Time the screener per message over ``rounds`` passes after a warm-up pass."""
    for text in texts:  # warm-up
        screener.screen(text)
    latencies: list[float] = []
    clock = time.perf_counter
    start_all = clock()
    for _ in range(rounds):
        for text in texts:
            start = clock()
            screener.screen(text)
            latencies.append((clock() - start) * 1000)
    elapsed = clock() - start_all
    return {"messages": len(latencies), "per_second": len(latencies) / elapsed,
            "median_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies)}


def bench_rasa(url: str, texts: list[str], token: str | None) -> dict[str, float]:
    """Time POST {url}/model/parse per message (one warm-up request first)."""
    import httpx

    latencies: list[float] = []
    params = {"token": token} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=30, params=params) as client:
        client.post("/model/parse", json={"text": "hello"}).raise_for_status()
        for text in texts:
            start = time.perf_counter()
            client.post("/model/parse", json={"text": text}).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)
    return {"messages": len(latencies), "per_second": 1000 * len(latencies) / sum(latencies),
            "median_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 99)}


def rasa_url_or_reason(stack: ExitStack, given: str | None, token: str | None) -> tuple[str | None, str | None, str]:
    """Return (url, token, "") for a usable Rasa server, or (None, None, why it is skipped)."""
    if given:
        return given, token, ""
    try:
        from bot.servers import RasaStack  # written by another part of the project
    except ImportError as exc:
        return None, None, f"bot.servers.RasaStack is not available ({exc}); pass --rasa-url to compare"
    models = ROOT / "models"
    if not any(models.glob("*.tar.gz")):
        return None, None, f"no trained model in {models} (run `rasa train` first) and no --rasa-url given"
    try:
        rasa = stack.enter_context(RasaStack())
    except Exception as exc:  # a server that will not start is a reason to skip, not to fail
        return None, None, f"RasaStack failed to start: {type(exc).__name__}: {exc}"
    return rasa.rasa_url, getattr(rasa, "token", None) or token, ""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rasa-url", help="Rasa server URL to compare against (POST /model/parse)")
    parser.add_argument("--rasa-token", default=os.environ.get("TRIAGE_RASA_TOKEN"),
                        help="Rasa --auth-token, sent as ?token= (default: $TRIAGE_RASA_TOKEN)")
    parser.add_argument("--rounds", type=int, default=5, help="screener passes over the dev set")
    parser.add_argument("--out", type=Path, help="also write the printed results to this file")
    args = parser.parse_args(argv)

    texts = load_texts()
    out: list[str] = [
        f"screener benchmark - {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'}),"
        f" {os.cpu_count()} cores, {len(texts)} dev-set messages x {args.rounds} rounds, one process, warm",
    ]
    before = rss_mb()
    start = time.perf_counter()
    screener = Screener()
    screener.rules.respeller.segmenter()  # loaded here, not on the first joined-up message
    load_s = time.perf_counter() - start
    loaded = rss_mb()
    out.append(f"load       {load_s:.2f} s (rules + model)   resident memory {loaded:.0f} MB "
               f"({loaded - before:+.0f} MB for the screener)")
    s = bench_screener(screener, texts, args.rounds)
    out.append(f"screen     {s['per_second']:>10,.0f} msg/s   median {s['median_ms']:.3f} ms   "
               f"p99 {s['p99_ms']:.3f} ms   max {s['max_ms']:.3f} ms   (rules + model)")
    typed = typed_forms(texts)
    t = bench_screener(screener, typed, 1)
    out.append(f"typed      {t['per_second']:>10,.0f} msg/s   median {t['median_ms']:.3f} ms   "
               f"p99 {t['p99_ms']:.3f} ms   max {t['max_ms']:.3f} ms   ({len(typed)} of the messages retyped "
               "without spaces, with dots, with spaced letters: the respelling's slow path)")
    rules = bench_screener(screener.rules, texts, args.rounds)
    out.append(f"rules      {rules['per_second']:>10,.0f} msg/s   median {rules['median_ms']:.3f} ms   "
               f"p99 {rules['p99_ms']:.3f} ms   (the rules alone, for comparison)")
    peak = rss_mb()
    checks = [("median", s["median_ms"], TARGET_MEDIAN_MS, "ms"), ("p99", s["p99_ms"], TARGET_P99_MS, "ms"),
              ("load", load_s, TARGET_LOAD_S, "s"), ("memory", peak, TARGET_RSS_MB, "MB")]
    out.append("targets    " + "; ".join(f"{name} <= {target:g} {unit}: {'met' if value <= target else 'NOT met'}"
                                          for name, value, target, unit in checks))
    with ExitStack() as stack:
        url, token, reason = rasa_url_or_reason(stack, args.rasa_url, args.rasa_token)
        if url is None:
            out.append(f"rasa NLU   comparison skipped: {reason}")
        else:
            try:
                r = bench_rasa(url, texts, token)
            except Exception as exc:
                out.append(f"rasa NLU   comparison skipped: {url}/model/parse failed: {type(exc).__name__}: {exc}")
            else:
                out.append(f"rasa NLU   {r['per_second']:>10,.0f} msg/s   median {r['median_ms']:.3f} ms   "
                           f"p99 {r['p99_ms']:.3f} ms   ({url}/model/parse, same messages, same run)")
                out.append(f"ratio      the screen's median is {r['median_ms'] / s['median_ms']:.1f}x faster "
                           "than the NLU parse")
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
