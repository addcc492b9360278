"""Head-role scores on a hand-built attention matrix whose answers are worked out by hand."""
import numpy as np
import pytest

from playground.inspect import heads

# tokens 7 3 7 3 9: queries 2 and 3 repeat an earlier token, query 4 (token 9) repeats nothing
TOKENS = np.array([7, 3, 7, 3, 9])
A = np.array([
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.0, 0.0, 0.0],
    [0.2, 0.6, 0.2, 0.0, 0.0],
    [0.1, 0.2, 0.3, 0.4, 0.0],
    [0.4, 0.0, 0.0, 0.5, 0.1],
])


def test_the_matrix_is_a_causal_attention():
    assert np.allclose(A.sum(1), 1) and (np.triu(A, 1) == 0).all()


def test_patterns():
    assert np.argwhere(heads.previous_token_pattern(5)).tolist() == [[1, 0], [2, 1], [3, 2], [4, 3]]
    assert np.argwhere(heads.duplicate_token_pattern(TOKENS)).tolist() == [[2, 0], [3, 1]]
    # query 2 (7): key 1 follows the earlier 7; query 3 (3): key 2 follows the earlier 3
    assert np.argwhere(heads.induction_pattern(TOKENS)).tolist() == [[2, 1], [3, 2]]


def test_previous_token_share_is_over_the_queries_that_have_a_previous_token():
    # A[1,0] + A[2,1] + A[3,2] + A[4,3] = 0.5 + 0.6 + 0.3 + 0.5 over queries 1..4
    assert heads.previous_token_score(A) == pytest.approx(1.9 / 4)


def test_duplicate_and_induction_leave_out_a_query_with_no_expected_key():
    # query 4's token (9) never appeared before: its row counts in neither score
    assert heads.duplicate_token_score(A, TOKENS) == pytest.approx((0.2 + 0.2) / 2)
    assert heads.induction_score(A, TOKENS) == pytest.approx((0.6 + 0.3) / 2)


def test_a_prompt_without_repeats_scores_zero():
    distinct = np.arange(5)
    assert heads.duplicate_token_score(A, distinct) == 0.0
    assert heads.induction_score(A, distinct) == 0.0


def test_transformer_lens_mul_score_agrees_when_every_query_has_an_expected_key():
    # TransformerLens: sum(A * P) / sum(A) over all rows. Drop query 0 (no previous token): then every row has one.
    A1 = A[1:, 1:] / A[1:, 1:].sum(1, keepdims=True)
    P = heads.previous_token_pattern(5)[1:, 1:]
    P[0, 0] = True  # query 1's previous key is key 0, now the first column
    assert heads.role_share(A1, P) == pytest.approx((A1 * P).sum() / A1.sum())


def test_sink_alphas_are_column_means_over_the_queries_that_see_the_key():
    assert heads.sink_alphas(A) == pytest.approx([2.2 / 5, 1.3 / 4, 0.5 / 3, 0.9 / 2, 0.1])
    assert heads.sink_score(A) == pytest.approx(0.44)
    sink = np.zeros((5, 5))
    sink[:, 0] = 1
    assert heads.sink_score(sink) == 1.0 and heads.sink_score(sink) > heads.SINK_THRESHOLD


def test_entropy_in_nats_and_mean_distance_in_tokens():
    # rows: 0, ln 2, H(.2,.6,.2), H(.1,.2,.3,.4), H(.4,.5,.1), by hand
    assert heads.entropy(A) == pytest.approx(0.7733240675911773)
    # rows: 0, 0.5, 0.2*2 + 0.6, 0.1*3 + 0.2*2 + 0.3, 0.4*4 + 0.5
    assert heads.mean_distance(A) == pytest.approx((0 + 0.5 + 1.0 + 1.0 + 2.1) / 5)
    assert heads.entropy(np.eye(5)) == 0.0 and heads.mean_distance(np.eye(5)) == 0.0


def test_head_table_scores_every_head():
    rows = heads.head_table(np.stack([A, np.eye(5)])[None], TOKENS)  # (1 layer, 2 heads, T, T)
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1)]
    assert rows[0]["induction"] == pytest.approx(0.45) and rows[0]["first_token_sink"] == pytest.approx(0.44)
    assert rows[1]["previous_token"] == 0.0 and rows[1]["entropy"] == 0.0


def test_tokens_of_another_length_are_refused():
    with pytest.raises(ValueError, match="same"):
        heads.induction_score(A, TOKENS[:4])
