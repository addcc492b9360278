import numpy as np
import pytest

from playground.inspect import positions as pe_lab
from playground import zoo


def test_encodings():
    table = pe_lab.sinusoidal_matrix(64, 16)
    assert table.shape == (64, 16) and np.allclose(table[0, 1::2], 1.0)
    angles = pe_lab.rope_angle_matrix(32, 16)
    assert angles.shape == (32, 8) and (angles >= 0).all() and (angles < 2 * np.pi + 1e-6).all()
    curve = pe_lab.rope_score_by_offset(100, 32)
    assert curve[0] == pytest.approx(32.0) and curve[1:].max() < curve[0]
    bias = pe_lab.alibi_matrix(4, 8)
    assert bias[5, 2] == pytest.approx(-0.25 * 3) and np.isnan(bias[2, 5])


def test_loss_by_position_from_the_cards():
    curves = pe_lab.loss_by_position()
    assert "rope" in curves  # the baseline
    for pe, c in curves.items():
        if c["loss"] is not None:
            assert len(c["loss"]) == 4 * c["train_length"]
        else:
            assert pe == "learned" and "learned positions" in c["note"]


@pytest.mark.skipif("learned" not in zoo.available(), reason="the learned-position model is not trained yet")
def test_learned_similarity_is_symmetric_with_unit_diagonal():
    sim = pe_lab.learned_similarity()
    assert np.allclose(sim, sim.T, atol=1e-5) and np.allclose(np.diag(sim), 1, atol=1e-5)
