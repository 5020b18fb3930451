"""Build a tiny, randomly initialised Argos Translate package, so the argos engine's loading code runs for real.

No argos language package ships on PyPI. This writes one in the published
layout (``metadata.json``, ``sentencepiece.model``, a CTranslate2 ``model/``)
with a one-layer transformer of random weights: the translations are nonsense,
but every step of installing, loading and running a package is the real one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

D_MODEL, FFN, HEADS = 32, 64, 2
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "an old fox cannot learn any trade",
    "please tell me your account number",
    "thank you for calling how can I help you today",
] * 25


def build_argos_package(out_dir: Path, source: str = "de", target: str = "en") -> Path:
    import ctranslate2
    import sentencepiece as spm
    from ctranslate2.specs import transformer_spec

    work = out_dir / f"translate-{source}_{target}"
    (work / "model").mkdir(parents=True)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(TEXT))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "sentencepiece"),
        vocab_size=48,
        model_type="unigram",
        bos_id=-1,
        eos_id=2,
        unk_id=1,
        pad_id=0,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(work / "sentencepiece.model"))
    vocab = ["<blank>", "<unk>", "</s>", "<s>"] + [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]

    spec = transformer_spec.TransformerSpec.from_config(num_layers=(1, 1), num_heads=HEADS)
    rng = np.random.default_rng(0)
    v = len(vocab)
    shapes = {
        "embeddings.0.weight": (v, D_MODEL),
        "embeddings.weight": (v, D_MODEL),
        "projection.weight": (v, D_MODEL),
        "self_attention.linear.0.weight": (3 * D_MODEL, D_MODEL),
        "self_attention.linear.1.weight": (D_MODEL, D_MODEL),
        "attention.linear.0.weight": (D_MODEL, D_MODEL),
        "attention.linear.1.weight": (2 * D_MODEL, D_MODEL),
        "attention.linear.2.weight": (D_MODEL, D_MODEL),
        "ffn.linear_0.weight": (FFN, D_MODEL),
        "ffn.linear_1.weight": (D_MODEL, FFN),
    }

    def fill(obj, prefix=""):
        for name, value in list(vars(obj).items()):
            path = prefix + name
            if type(value).__module__.startswith("ctranslate2"):
                fill(value, path + ".")
            elif isinstance(value, list) and value and type(value[0]).__module__.startswith("ctranslate2"):
                for i, item in enumerate(value):
                    fill(item, f"{path}.{i}.")
            elif value is None and name in ("gamma", "beta"):
                setattr(obj, name, np.ones(D_MODEL, np.float32) if name == "gamma" else np.zeros(D_MODEL, np.float32))
            elif value is None and name == "weight":
                shape = next(s for suffix, s in shapes.items() if path.endswith(suffix))
                setattr(obj, name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    fill(spec.encoder, "encoder.")
    fill(spec.decoder, "decoder.")
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)

    class _Random(ctranslate2.converters.Converter):
        def _load(self):
            return spec

    _Random().convert(str(work / "model"), force=True)
    (work / "metadata.json").write_text(
        json.dumps(
            {
                "package_version": "0.0.1",
                "argos_version": "1.0",
                "from_code": source,
                "from_name": source,
                "to_code": target,
                "to_name": target,
                "type": "translate",
                "name": f"{source}-{target} test",
            }
        )
    )
    package = out_dir / f"translate-{source}_{target}.argosmodel"
    with zipfile.ZipFile(package, "w") as z:
        for f in work.rglob("*"):
            z.write(f, f.relative_to(out_dir))
    return package
