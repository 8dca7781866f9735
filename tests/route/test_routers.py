"""Routers keep scikit-learn's estimator contract, learn learnable difficulty, route N ways and save without pickle."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import compound as cp
from compound.route import metrics
from compound.route.curves import random_curve, scored_curve

LEARNED = [cp.route.KNNRouter(k=5), cp.route.LogisticRouter(), cp.route.MLPRouter(max_iter=200),
           cp.route.MFRouter(epochs=100)]

# The one check that does not apply: a router predicts each model's *score*, clipped to [0, 1] (or a probability),
# so it cannot fit the unbounded regression targets this check draws.
NOT_A_GENERAL_REGRESSOR = {
    "check_regressors_train": "predictions are scores in [0, 1]; the check's targets are unbounded",
}


def _expected_failures(estimator):
    return NOT_A_GENERAL_REGRESSOR if not isinstance(estimator, cp.route.KNNRouter) else {}


@parametrize_with_checks(LEARNED, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def learnable(n=400, seed=0, dim=8):
    """Two kinds of query (two clusters): the cheap model is right on kind A only, the dear one on both (90%)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    centers = rng.normal(size=(2, dim)) * 3
    X = centers[kind] + rng.normal(size=(n, dim))
    cheap = np.where(kind == 0, rng.uniform(size=n) < 0.9, rng.uniform(size=n) < 0.1)
    dear = rng.uniform(size=n) < 0.9
    return X, np.column_stack([cheap, dear]).astype(float)


@pytest.mark.parametrize("router", LEARNED, ids=lambda r: type(r).__name__)
def test_a_learned_router_beats_random_where_difficulty_is_learnable(router):
    X, Y = learnable(600)
    train, test = slice(0, 400), slice(400, None)
    router = clone(router).fit(X[train], Y[train], costs=[1.0, 4.0], models=["cheap", "dear"])
    C = np.tile([1.0, 4.0], (200, 1))
    weak, strong = Y[test].mean(axis=0)
    learned = scored_curve("learned", router.predict_scores(X[test]), Y[test], C, router.costs_)
    apgr = learned.metrics(weak, strong)["apgr"]
    baseline = random_curve(Y[test], C).metrics(weak, strong)["apgr"]
    assert baseline == pytest.approx(0.5)
    # kind B (half the queries) to the dear model first: PGR climbs to 1 by x=0.5, so a perfect router scores 0.75
    assert apgr > 0.7, apgr
    random = cp.route.RandomRouter(random_state=1).fit(X[train], Y[train], costs=[1.0, 4.0])
    noisy = scored_curve("random", random.predict_scores(X[test]), Y[test], C, [1.0, 4.0]).metrics(weak, strong)
    assert abs(noisy["apgr"] - 0.5) < 0.15 and apgr > noisy["apgr"] + 0.25


def test_n_way_routing_picks_the_cheapest_model_that_suffices():
    rng = np.random.default_rng(1)
    kind = rng.integers(0, 3, 600)
    X = np.eye(3)[kind] + 0.05 * rng.normal(size=(600, 3))
    # model j is right on kinds <= j: each kind needs a different model
    Y = (kind[:, None] <= np.arange(3)[None, :]).astype(float)
    router = cp.route.KNNRouter(k=5).fit(X, Y, costs=[1.0, 2.0, 4.0], models=["s", "m", "l"])
    routes = router.route(np.eye(3), threshold=0.5)
    assert routes.tolist() == [0, 1, 2]
    assert router.route_names(np.eye(3), threshold=3.5) == ["s", "s", "s"]   # too dear: always the cheapest
    assert router.route(np.eye(3), threshold=-1.0).tolist() == [2, 2, 2]    # cost no object


def test_get_set_params_and_clone_keep_hyperparameters_only():
    router = cp.route.KNNRouter(k=3, weights="distance", encoder="all-MiniLM-L6-v2")
    assert router.get_params() == {"k": 3, "weights": "distance", "encoder": "all-MiniLM-L6-v2"}
    assert router.set_params(k=7) is router and router.k == 7
    X, Y = learnable(50)
    fitted = router.fit(X, Y)
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params() and not hasattr(twin, "models_")


def test_fit_on_routing_data_takes_names_costs_and_query_texts():
    frame = pd.DataFrame({"example": np.repeat(range(4), 2), "model": ["tiny", "small"] * 4,
                          "query": np.repeat(["refund please", "app crashes", "order 12345", "12 km in m"], 2),
                          "score": [1, 1, 0, 1, 1, 1, 0, 1]})
    data = cp.route.RoutingData(frame, ["tiny", "small"], cost={"tiny": 1.0, "small": 3.0})
    router = cp.route.KNNRouter(k=1).fit(data)
    assert router.models_ == ["tiny", "small"] and router.costs_.tolist() == [1.0, 3.0]
    assert router.n_features_in_ == 384   # MiniLM embeddings of the query texts
    assert router.route_names(["app crashes", "refund please"], threshold=0.5) == ["small", "tiny"]
    with pytest.raises(ValueError, match="not both"):
        router.fit(data, np.zeros((4, 2)))


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="scores"):
        cp.route.KNNRouter().fit(np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        cp.route.KNNRouter().fit(np.eye(2), [[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match="model names"):
        cp.route.KNNRouter().fit(np.eye(2), np.eye(2), models=["only-one"])
    with pytest.raises(ValueError, match="k"):
        cp.route.KNNRouter(k=0).fit(np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="only the queries it was fitted on"):
        cp.route.OracleRouter().fit(["a"], [[1.0, 0.0]]).route(["b"])


@pytest.mark.parametrize("router", [*LEARNED, cp.route.CascadeRouter(), cp.route.RandomRouter()],
                         ids=lambda r: type(r).__name__)
def test_save_and_load_round_trip_as_json_and_safetensors(router, tmp_path):
    X, Y = learnable(80)
    if isinstance(router, cp.route.CascadeRouter):
        X = np.clip(Y + 0.1, 0, 1)  # a cascade reads confidences, one column per model
    fitted = clone(router).fit(X, Y, costs=[1.0, 2.0], models=["a", "b"])
    path = fitted.save(tmp_path / "router.json")
    state = json.loads(path.read_text())
    assert state["class"] == type(router).__name__ and state["fitted"]["models"] == ["a", "b"]
    loaded = cp.route.load_router(path)
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    np.testing.assert_allclose(loaded.predict_scores(X), fitted.predict_scores(X))
    assert loaded.route(X, 0.3).tolist() == fitted.route(X, 0.3).tolist()


def test_a_file_naming_another_class_is_refused(tmp_path):
    fitted = cp.route.KNNRouter(k=1).fit(np.eye(2), np.eye(2))
    state = fitted.to_state()
    for bad in ("os.system", "sklearn.pipeline.Pipeline", "OracleRouter", "builtins.eval"):
        (tmp_path / "bad.json").write_text(json.dumps({**state, "class": bad}))
        with pytest.raises(ValueError, match="refusing to build router class"):
            cp.route.load_router(tmp_path / "bad.json")
    (tmp_path / "pickle.json").write_bytes(b"\x80\x04\x95")  # a pickle is not JSON: refused, never unpickled
    with pytest.raises(ValueError, match="not a router file"):
        cp.route.load_router(tmp_path / "pickle.json")
    with pytest.raises(TypeError, match="not saved"):
        cp.route.OracleRouter().fit(["a"], [[1.0, 0.0]]).save(tmp_path / "oracle.json")
    with pytest.raises(TypeError, match="cannot be saved as JSON"):
        cp.route.KNNRouter(encoder=object()).fit(np.eye(2), np.eye(2)).save(tmp_path / "x.json")


def test_metrics_of_a_perfect_router_match_the_oracle():
    X, Y = learnable(300, seed=3)
    oracle = cp.route.OracleRouter().fit(X, Y, costs=[1.0, 4.0])
    C = np.tile([1.0, 4.0], (300, 1))
    weak, strong = Y.mean(axis=0)
    via_router = scored_curve("o", oracle.predict_scores(X), Y, C, [1.0, 4.0]).metrics(weak, strong)
    from compound.route.curves import oracle_curve

    assert via_router == oracle_curve(Y, C).metrics(weak, strong)
    assert metrics.apgr([0, 1], [weak, strong], weak, strong) == pytest.approx(0.5)


def test_queries_as_a_pandas_series_or_one_string():
    router = cp.route.KNNRouter(k=1, encoder="hashing").fit(["refund please", "app crashes"], [[1, 1], [0, 1]],
                                                            costs=[1, 2])
    assert router.route(pd.Series(["app crashes", "refund please"]), 0.5).tolist() == [1, 0]
    with pytest.raises(TypeError, match="list of queries"):
        router.route("app crashes")
