"""Every routing metric against small cases computed by hand (the definitions are in ../shared/docs/anchors.md §1.3)."""

import numpy as np
import pytest

from compound.route import metrics
from compound.route.base import breakpoints, choose, relative_costs
from compound.route.cascade import cascade
from compound.route.curves import cascade_curve, oracle_curve, random_curve, scored_curve


def test_pgr_and_apgr_by_hand():
    # weak 0.4, strong 0.8; the router reaches 0.7 at 25% strong calls and 0.8 at 50%
    x, q = [0, 0.25, 0.5, 1.0], [0.4, 0.7, 0.8, 0.8]
    assert metrics.pgr(0.7, weak=0.4, strong=0.8) == pytest.approx(0.75)
    auc = 0.25 * (0.4 + 0.7) / 2 + 0.25 * (0.7 + 0.8) / 2 + 0.5 * 0.8  # = 0.1375 + 0.1875 + 0.4 = 0.725
    assert metrics.apgr(x, q, weak=0.4, strong=0.8) == pytest.approx((auc - 0.4) / 0.4)  # 0.8125


def test_apgr_of_the_straight_line_is_one_half_and_of_an_instant_jump_is_one():
    assert metrics.apgr([0, 1], [0.3, 0.9], weak=0.3, strong=0.9) == pytest.approx(0.5)
    assert metrics.apgr([0, 1e-9, 1], [0.3, 0.9, 0.9], weak=0.3, strong=0.9) == pytest.approx(1.0)


def test_apgr_interpolates_the_ends_and_refuses_partial_curves():
    # points beyond [0, 1] (a cascade paying twice) are cut at x=1 by interpolation
    assert metrics.apgr([0, 2], [0.0, 1.0], weak=0.0, strong=0.5) == pytest.approx((0.25 - 0.0) / 0.5)
    with pytest.raises(ValueError, match="whole cost range"):
        metrics.apgr([0.2, 1], [0.5, 0.9], weak=0.5, strong=0.9)
    with pytest.raises(ValueError, match="different quality"):
        metrics.apgr([0, 1], [0.5, 0.5], weak=0.5, strong=0.5)


def test_cpt_interpolates_the_strong_call_share():
    x, q = [0, 0.2, 0.6, 1.0], [0.5, 0.6, 0.9, 1.0]   # weak 0.5, strong 1.0
    assert metrics.cpt(x, q, weak=0.5, strong=1.0, level=0.5) == pytest.approx(0.2 + 0.4 * (0.75 - 0.6) / 0.3)
    assert metrics.cpt(x, q, weak=0.5, strong=1.0, level=0.8) == pytest.approx(0.6)   # exactly 0.9 at x=0.6
    assert metrics.cpt(x, [0.5, 0.5, 0.6, 0.7], weak=0.5, strong=1.0, level=0.5) is None  # never recovers half


def test_ndch_keeps_only_the_upper_non_decreasing_hull():
    hx, hq = metrics.ndch([0, 0.2, 0.4, 0.5, 0.8, 1.0], [0.1, 0.2, 0.6, 0.5, 0.7, 0.65])
    # (0.2, 0.2) lies under the segment (0, 0.1)-(0.4, 0.6); (0.5, 0.5) and (1.0, 0.65) are dominated
    assert hx.tolist() == [0, 0.4, 0.8] and hq.tolist() == [0.1, 0.6, 0.7]


def test_aiq_is_the_hull_area_over_the_cost_range():
    # hull (0,0.1)-(0.4,0.6)-(0.8,0.7), flat to 1.0: 0.4*0.35 + 0.4*0.65 + 0.2*0.7 = 0.14 + 0.26 + 0.14
    assert metrics.aiq([0, 0.2, 0.4, 0.5, 0.8], [0.1, 0.2, 0.6, 0.5, 0.7]) == pytest.approx(0.54)
    # over a wider range the flat extension counts too, divided by the range
    assert metrics.aiq([0, 1], [0.2, 0.6], x_max=2.0) == pytest.approx((0.4 + 0.6) / 2)
    # a curve starting late reaches nothing before its first point
    assert metrics.aiq([0.5, 1], [0.6, 0.6]) == pytest.approx(0.3)


def test_deferral_auc_by_hand():
    assert metrics.deferral_auc([0, 0.25, 1], [0.5, 0.75, 0.75]) == pytest.approx(0.25 * 0.625 + 0.75 * 0.75)
    with pytest.raises(ValueError, match="span"):
        metrics.deferral_auc([0, 0.5], [0.5, 0.6])


def test_routing_rule_prices_the_gain_against_relative_cost():
    assert relative_costs([2.0, 4.0, 10.0]).tolist() == [0.0, 0.25, 1.0]
    scores = np.array([[0.5, 0.6, 0.9]])
    # value = score - t * rel: t=0 -> best (2); t=0.5 -> [0.5, 0.475, 0.4] -> cheapest; t=0.3 -> [0.5, 0.525, 0.6]
    assert [choose(scores, [2, 4, 10], t)[0] for t in (0.0, 0.3, 0.5)] == [2, 2, 0]
    # a middle model wins when it gains enough for its cost: t=0.3 -> [0.5, 0.8 - 0.075, 0.9 - 0.3]
    assert choose(np.array([[0.5, 0.8, 0.9]]), [2, 4, 10], 0.3)[0] == 1
    assert choose(np.array([[0.7, 0.7]]), [1, 3], 0.0)[0] == 0   # ties go to the cheaper model
    assert choose(np.array([[0.7, 0.7]]), [3, 1], -0.1)[0] == 0  # a negative threshold pays for the dearer one


def test_breakpoints_reach_every_routing_between_all_cheap_and_all_dear():
    scores = np.array([[0.1, 0.9], [0.5, 0.6], [0.8, 0.2]])
    routes = {tuple(choose(scores, [1, 2], t)) for t in breakpoints(scores, [1, 2])}
    assert routes == {(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)}


def test_cascade_defers_below_the_threshold_and_pays_for_every_model_it_tried():
    confidence = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.1, 0.2, 0.5]])
    answered, tried = cascade(confidence, costs=[1, 2, 3], threshold=0.5)
    assert answered.tolist() == [0, 1, 2]
    assert tried.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # the order follows the costs, not the columns: the cheapest column (2) is asked first
    answered, _ = cascade(confidence, costs=[2, 3, 1], threshold=0.5)
    assert answered.tolist() == [2, 2, 2]
    # exactly at the threshold is confident enough
    assert cascade(np.array([[0.5, 0.0]]), [1, 2], 0.5)[0].tolist() == [0]


def test_curves_of_random_oracle_and_a_cascade_by_hand():
    Y = np.array([[1, 1], [0, 1], [0, 0], [1, 0]], float)
    C = np.tile([1.0, 3.0], (4, 1))
    oracle = oracle_curve(Y, C)
    best = oracle.at(0.5)  # cheapest right model: tiny, small, tiny (none right), tiny
    assert best["quality"] == 0.75 and best["x"] == pytest.approx(0.25) and best["cost"] == pytest.approx(1.5)
    random = random_curve(Y, C)
    assert random.metrics(weak=0.5, strong=0.5)["apgr"] is None  # equal models: no gap to recover
    weak, strong = 0.5, 0.75
    Y2 = np.array([[1, 1], [0, 1], [0, 1], [1, 0]], float)
    assert random_curve(Y2, C).metrics(weak, strong)["apgr"] == pytest.approx(0.5)
    conf = np.array([[0.9, 1], [0.1, 1], [0.4, 1], [0.8, 1]])
    curve = cascade_curve("cascade", conf, Y2, C, costs=[1, 3])
    at = curve.at(0.5)  # defers queries 1 and 2: right on all four, pays 1 + 3 on two of them
    assert at["quality"] == 1.0 and at["cost"] == pytest.approx((1 + 4 + 4 + 1) / 4) and at["deferral"] == 0.5
    scored = scored_curve("perfect", Y2, Y2, C, [1, 3])
    assert scored.metrics(weak, strong)["apgr"] > 0.85
    # measuring the cheap model's confidence costs 0.5 a query; the dear model's is never measured (it always answers)
    extra = np.tile([0.5, 7.0], (4, 1))
    paid = cascade_curve("cascade", conf, Y2, C, costs=[1, 3], extra_cost=extra).at(0.5)
    assert paid["cost"] == pytest.approx((1.5 + 4.5 + 4.5 + 1.5) / 4) and extra[0, 1] == 7.0  # the input is kept
