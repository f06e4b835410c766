"""Sentence embeddings of questions (a small pretrained model shipped as a package), as the
teacher-generate stage uses them for the Vendi score."""

import numpy as np
import pytest

from soar.evaluation import embed_questions, vendi_score


def test_embeddings_place_paraphrases_closer_than_unrelated_questions():
    questions = [
        "What is the sum of 17 and 25?",
        "Compute 17 plus 25.",
        "How many ways can 5 people stand in a line?",
    ]
    embeddings = embed_questions(questions)
    assert embeddings.shape == (3, 384)
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[0, 1] > similarity[1, 2] + 0.2
    assert vendi_score(embeddings) < vendi_score(np.eye(3))
