"""Benchmark the screener (and, when a Rasa server is available, Rasa's NLU parse).

Usage: python bench/bench_screener.py [--rasa-url URL] [--rounds N] [--out FILE]

Screens every message of tests/data/dev_set.jsonl in one warm process and prints messages per
second and the median / p99 per-message latency. Then, for comparison, POSTs the same
messages to ``{rasa_url}/model/parse``: at --rasa-url if given, else through
``bot.servers.RasaStack`` when that module and a trained model in models/ exist; otherwise it
prints why the comparison was skipped. Targets (issue 3): median < 0.5 ms, >= 30x faster
than the NLU parse.
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

from bot.screening import get_screener  # noqa: E402

DEV_SET = ROOT / "tests" / "data" / "dev_set.jsonl"
TARGET_MEDIAN_MS = 0.5
TARGET_SPEEDUP = 30.0


def load_texts() -> list[str]:
    """Return the dev-set messages."""
    with DEV_SET.open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def bench_screener(texts: list[str], rounds: int) -> dict[str, float]:
    """Time the screener per message over ``rounds`` passes after a warm-up pass."""
    screener = get_screener()
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
    parser.add_argument("--rounds", type=int, default=20, help="screener passes over the dev set")
    parser.add_argument("--out", type=Path, help="also write the printed results to this file")
    args = parser.parse_args(argv)

    texts = load_texts()
    out: list[str] = [
        f"screener benchmark - {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"python {platform.python_version()} on {platform.machine()} ({platform.processor() or 'cpu'}),"
        f" {len(texts)} dev-set messages x {args.rounds} rounds, one process, warm",
    ]
    s = bench_screener(texts, args.rounds)
    out.append(f"screener   {s['per_second']:>10,.0f} msg/s   median {s['median_ms']:.3f} ms   "
               f"p99 {s['p99_ms']:.3f} ms   max {s['max_ms']:.3f} ms")
    out.append(f"target     median < {TARGET_MEDIAN_MS} ms: "
               f"{'met' if s['median_ms'] < TARGET_MEDIAN_MS else 'NOT met'}")
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
                speedup = r["median_ms"] / s["median_ms"]
                out.append(f"rasa NLU   {r['per_second']:>10,.0f} msg/s   median {r['median_ms']:.3f} ms   "
                           f"p99 {r['p99_ms']:.3f} ms   ({url}/model/parse)")
                out.append(f"speed-up   {speedup:.0f}x on the median (target >= {TARGET_SPEEDUP:.0f}x: "
                           f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'})")
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
