#!/usr/bin/python3
"""Trains the small SentencePiece model of the spmllama test model
(sentencepiece's own trainer; needs the sentencepiece package, which the
device machine has): byte-fallback BPE, 480 pieces, on this repository's
README and man pages. Writes tests/refs/hf/spm.tokenizer.model."""
import glob
import io
import os

import sentencepiece as spm

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "..", "..")
text = []
for p in sorted(glob.glob(os.path.join(root, "README.md")) + glob.glob(os.path.join(root, "man", "*.1"))):
    text += [l.strip() for l in open(p, encoding="utf-8") if l.strip()]
out = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=out, vocab_size=480, model_type="bpe",
                               byte_fallback=True, user_defined_symbols=["<|pad|>", "<extra>"],
                               character_coverage=1.0, num_threads=1)
open(os.path.join(here, "spm.tokenizer.model"), "wb").write(out.getvalue())
