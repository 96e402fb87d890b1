"""Transcript rendering: a case record (``bot.review.transcript``) as Markdown or as HTML.

Rendering only: reading the record, and auditing who read it, is ``bot.review``'s.
"""

from __future__ import annotations

import html
import json
from typing import Any


def _highlight(text: str, spans: list[tuple[int, int]], open_: str, close: str, esc) -> str:
    out, last = [], 0
    for start, end in spans:
        out += [esc(text[last:start]), open_, esc(text[start:end]), close]
        last = end
    out.append(esc(text[last:]))
    return "".join(out)


def _who(message: dict[str, Any]) -> str:
    if message["direction"] == "in":
        return "client"
    return {"clinician": "clinician", "notice": "notice"}.get(message["kind"], f"bot ({message['kind']})")


def _case_facts(case: dict[str, Any]) -> list[str]:
    """The case's facts at the head of a transcript, as plain text lines."""
    facts = [
        f"Conversation: {case['conversation_id']}",
        f"Categories: {', '.join(case['categories']) or '—'}",
        f"Opened: {case['opened_at']}",
    ]
    if case["claimed_by"]:
        facts.append(f"Claimed by {case['claimed_by']} at {case['claimed_at']}")
    if case["resolved_by"]:
        facts.append(f"Resolved by {case['resolved_by']} at {case['resolved_at']}: {case['outcome']}")
    return facts


def render_markdown(record: dict[str, Any]) -> str:
    """The transcript record as Markdown, the cues the screen paged for between «»."""
    case = record["case"]
    lines = [f"# Case #{case['id']} — {case['priority'].upper()} — {case['status']}", ""]
    lines += [f"- {fact}" for fact in _case_facts(case)]
    if case["duty_to_protect"]:
        lines.append("- DUTY-TO-PROTECT REVIEW")
    lines += ["", "## Messages", ""]
    for m in record["messages"]:
        screening = m.get("screening") or {}
        text = _highlight(m["text"] or "", screening.get("highlight", []), "«", "»", str)
        flag = f" **[screen: {', '.join(screening['categories']) or 'review'}]**" if screening.get("escalate") else ""
        for label in m["labels"]:
            flag += f" [{label['kind']}: {label['label']} by {label['actor']}]"
        body = text.replace("\n", "\n  > ")
        lines.append(f"- `{m['at'][:19]}` {_who(m)} (#{m['id']}){flag}:\n  > {body}")
    lines += ["", "## Case history", ""]
    for e in record["history"]:
        extra = f" — {json.dumps(e['details'], ensure_ascii=False)}" if e["details"] else ""
        lines.append(f"- `{e['at'][:19]}` {e['event']} by {e['actor']} ({e['priority'] or '—'}){extra}")
    lines += ["", "## Alerts", ""]
    for a in record["alerts"]:
        state = f"delivered {a['delivered_at'][:19]}" if a["delivered_at"] else "NOT delivered yet"
        lines.append(f"- `{a['at'][:19]}` {a['priority']} ({a['kind']}): {state}")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:16px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;
background:#f6f7f9;color:#1b1f24;max-width:760px;margin:auto}
h1{font-size:1.25em}h2{font-size:1.05em;margin-top:1.5em}
.meta{background:#fff;border-radius:8px;padding:8px 12px}
.msg{margin:8px 0;padding:8px 12px;border-radius:10px;background:#fff;white-space:pre-wrap;
overflow-wrap:anywhere}
.in{border-left:4px solid #3b6fd8}.out{border-left:4px solid #9aa3ad;background:#fbfbfc}
.risk{border-left-color:#c62828}.clinician{border-left-color:#2e7d32}
.when{color:#5f6b76;font-size:.8em}mark{background:#ffcdd2;color:#7f0000;font-weight:600}
.flag{color:#c62828;font-weight:600;font-size:.85em}li{margin:4px 0}
"""


def render_html(record: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no external resources); all client text escaped."""
    esc = lambda text: html.escape(str(text), quote=True)  # noqa: E731
    case = record["case"]
    meta = [esc(fact) for fact in _case_facts(case)]
    if case["duty_to_protect"]:
        meta.append("<strong>DUTY-TO-PROTECT REVIEW</strong>")
    body = [f"<h1>Case #{case['id']} — {esc(case['priority'].upper())} — {esc(case['status'])}</h1>",
            '<div class="meta">' + "<br>".join(meta) + "</div>", "<h2>Messages</h2>"]
    for m in record["messages"]:
        screening = m.get("screening") or {}
        risky = bool(screening.get("escalate"))
        classes = ["msg", m["direction"]] + (["risk"] if risky else []) + (["clinician"] if m["kind"] == "clinician" else [])
        text = _highlight(m["text"] or "", screening.get("highlight", []), "<mark>", "</mark>", esc)
        flags = f' <span class="flag">screen: {esc(", ".join(screening["categories"]) or "review")}</span>' if risky else ""
        for label in m["labels"]:
            flags += f' <span class="flag">{esc(label["kind"])}: {esc(label["label"])}</span>'
        body.append(f'<div class="{" ".join(classes)}"><div class="when">{esc(m["at"][:19])} · '
                    f'{esc(_who(m))} · #{m["id"]}{flags}</div>{text}</div>')
    body.append("<h2>Case history</h2><ul>")
    for e in record["history"]:
        details = f" — {esc(json.dumps(e['details'], ensure_ascii=False))}" if e["details"] else ""
        body.append(f"<li>{esc(e['at'][:19])} <b>{esc(e['event'])}</b> by {esc(e['actor'])}{details}</li>")
    body.append("</ul><h2>Alerts</h2><ul>")
    for a in record["alerts"]:
        state = f"delivered {esc(a['delivered_at'][:19])}" if a["delivered_at"] else "<b>not delivered yet</b>"
        body.append(f"<li>{esc(a['at'][:19])} {esc(a['priority'])} ({esc(a['kind'])}): {state}</li>")
    body.append("</ul>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>Case #{case['id']}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
