"""The seed's worked example: cosine user similarity and similarity-weighted rating prediction.

Definitions used (the seed's formulas, applied exactly):

- ``sim(u, v) = r_u · r_v / (|r_u| |r_v|)`` over the full rating rows, unrated cells counting
  as 0 (so they take part in the norms);
- ``pred(u, i) = Σ_v sim(u, v) · r_vi / Σ_v |sim(u, v)|`` over the other users ``v`` who
  rated item ``i``.

The seed's printed matrix and predictions differ from what these formulas give; the values
asserted here are the formulas' own, worked by hand for a few cells.
"""

import math

import numpy as np
import pytest

from recommender.strategies.demographic import cosine_user_similarity, predict_ratings

RATINGS = np.array([
    [5, 0, 4, 0, 5],
    [0, 4, 0, 5, 0],
    [4, 5, 0, 4, 5],
    [5, 0, 5, 4, 0],
    [0, 5, 4, 5, 0],
    [4, 4, 5, 0, 5],
    [5, 5, 0, 0, 4],
    [0, 4, 5, 5, 4],
    [4, 5, 4, 0, 5],
    [5, 4, 5, 4, 5],
])

# Squared norms by hand: u1 = 25+16+25 = 66, u3 = 16+25+16+25 = 82, u10 = 25+16+25+16+25 = 107.
NORM2_U1, NORM2_U3, NORM2_U10 = 66, 82, 107


def test_similarity_of_users_with_no_common_item_is_zero():
    """u1 and u2 rated disjoint items: r1 · r2 = 0, so sim = 0."""
    assert cosine_user_similarity(RATINGS)[0, 1] == 0.0


def test_similarity_u1_u3_by_hand():
    """sim(u1, u3) = (5·4 + 5·5) / sqrt(66 · 82) = 45 / 73.566 ≈ 0.6117."""
    expected = (5 * 4 + 5 * 5) / math.sqrt(NORM2_U1 * NORM2_U3)
    assert cosine_user_similarity(RATINGS)[0, 2] == pytest.approx(expected)
    assert expected == pytest.approx(0.6117, abs=1e-4)


def test_similarity_u1_u10_by_hand():
    """sim(u1, u10) = (25 + 20 + 25) / sqrt(66 · 107) ≈ 0.8330."""
    expected = 70 / math.sqrt(NORM2_U1 * NORM2_U10)
    assert cosine_user_similarity(RATINGS)[0, 9] == pytest.approx(expected)
    assert expected == pytest.approx(0.8330, abs=1e-4)


def test_similarity_matrix_is_symmetric_with_unit_diagonal():
    """Cosine is symmetric and every user is identical to themselves."""
    similarity = cosine_user_similarity(RATINGS)
    np.testing.assert_allclose(similarity, similarity.T)
    np.testing.assert_allclose(np.diag(similarity), 1.0)


def test_prediction_user1_item2_by_hand():
    """pred(u1, item 2) over the 8 users who rated item 2 is ≈ 4.5113."""
    root = math.sqrt
    # (sim(u1, v), r_v,item2) for v = u2, u3, u5, u6, u7, u8, u9, u10 (dot products by hand).
    neighbours = [
        (0 / root(66 * 41), 4),     # u2: no common item
        (45 / root(66 * 82), 5),    # u3
        (16 / root(66 * 66), 5),    # u5: 4·4
        (65 / root(66 * 82), 4),    # u6: 5·4 + 4·5 + 5·5
        (45 / root(66 * 66), 5),    # u7: 5·5 + 5·4
        (40 / root(66 * 82), 4),    # u8: 4·5 + 5·4
        (61 / root(66 * 82), 5),    # u9: 5·4 + 4·4 + 5·5
        (70 / root(66 * 107), 4),   # u10
    ]
    expected = sum(s * r for s, r in neighbours) / sum(abs(s) for s, _ in neighbours)
    assert expected == pytest.approx(4.5113, abs=1e-4)
    assert predict_ratings(RATINGS)[0, 1] == pytest.approx(expected)


def test_prediction_user2_item1_by_hand():
    """pred(u2, item 1): u2 shares items only through items 2 and 4; ≈ 4.5003."""
    similarity = cosine_user_similarity(RATINGS)
    raters = [v for v in range(10) if v != 1 and RATINGS[v, 0] > 0]
    expected = sum(similarity[1, v] * RATINGS[v, 0] for v in raters) / sum(abs(similarity[1, v]) for v in raters)
    assert predict_ratings(RATINGS)[1, 0] == pytest.approx(expected)
    assert expected == pytest.approx(4.5003, abs=1e-4)


def test_item_nobody_else_rated_has_no_prediction():
    """With no other rater, the prediction is undefined (NaN), not 0."""
    table = np.array([[5, 0], [0, 3]])
    predictions = predict_ratings(table)
    assert np.isnan(predictions[1, 0])
    assert np.isnan(predictions[0, 1])
