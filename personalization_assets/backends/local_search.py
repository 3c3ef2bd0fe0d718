"""The embedded search backend: Okapi BM25 over the approved corpus, with an audience filter.

Azure AI Search ranks full-text queries with BM25 too (k1 = 1.2, b = 0.75 by default), so the
embedded backend and the Azure backend order documents by the same idea.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from personalization_assets.content.retrieval import SearchHit

BACKEND = "local-bm25"
TOKEN = re.compile(r"[a-z0-9]+")
# Words that carry no topic: dropping them keeps short documents from winning on "the" and "our".
STOPWORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or our that the their them they this
    to we with you your who what when where which will can all any more most than into about over new""".split()
)
BM25_K1 = 1.2
BM25_B = 0.75



def tokenize(text: str) -> list[str]:
    return [t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS and len(t) > 1]


def document_text(corpus: pd.DataFrame) -> pd.Series:
    """The searchable text of each document: title, keywords and body, as Azure's searchable fields."""
    return corpus["title"] + " " + corpus["keywords"].str.replace(",", " ") + " " + corpus["content"]


class BM25Index:
    """An in-memory BM25 index; small corpora (thousands of documents) fit easily."""

    def __init__(self, corpus: pd.DataFrame):
        self.document_ids = corpus["document_id"].to_numpy(dtype=object)
        self.audiences = corpus["audience"].to_numpy(dtype=object)
        tokenized = [tokenize(text) for text in document_text(corpus)]
        self.lengths = np.array([len(tokens) for tokens in tokenized], dtype=float)
        self.average_length = float(self.lengths.mean()) if len(self.lengths) else 0.0
        self.term_counts = [Counter(tokens) for tokens in tokenized]
        document_frequency = Counter(term for counts in self.term_counts for term in counts)
        n = len(tokenized)
        # The "plus one" IDF of Lucene/Azure: always positive, so common terms still count a little.
        self.idf = {term: float(np.log(1 + (n - df + 0.5) / (df + 0.5))) for term, df in document_frequency.items()}

    def scores(self, query: str) -> np.ndarray:
        scores = np.zeros(len(self.document_ids))
        length_norm = BM25_K1 * (1 - BM25_B + BM25_B * self.lengths / max(self.average_length, 1e-9))
        for term in set(tokenize(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([counts.get(term, 0) for counts in self.term_counts], dtype=float)
            scores += idf * tf * (BM25_K1 + 1) / (tf + length_norm)
        return scores

    def search(self, query: str, audiences: Sequence[str], top_k: int) -> list[SearchHit]:
        """The top_k documents whose audience is allowed, best first; ties broken by document id."""
        scores = self.scores(query)
        allowed = np.isin(self.audiences, list(audiences))
        candidates = np.flatnonzero(allowed)
        order = sorted(candidates, key=lambda i: (-scores[i], self.document_ids[i]))[:top_k]
        return [SearchHit(str(self.document_ids[i]), round(float(scores[i]), 6), rank) for rank, i in enumerate(order, 1)]
