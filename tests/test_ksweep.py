"""Choosing k from the data: the sweep finds the number of groups where real groups are well apart,
its record survives JSON, and each criterion's rule reads a curve as documented."""

import json
import math

import numpy as np
import pytest

from musiclust.analysis.clustering import Standardizer, cluster
from musiclust.analysis.ksweep import (
    CRITERIA, DEFAULT_CRITERION, KSweep, choose_k, k_candidates, pick_k, sweep_all,
)
from musiclust.errors import ParameterError

# Two groups of the test clips rendered with different instruments (a four-part choir, a solo violin):
# their MFCC statistics are well apart. The fixture's other groups are not, at five 8-s clips a group:
# there every criterion finds the pieces' own sub-structure (measured; docs/results/ksweep_criteria.json
# has the criteria on a few hundred tracks, where the groups of the default set are found 0-3 times in 10).
SEPARATE_GROUPS = ("bach_chorale", "fiddle_tune")


@pytest.fixture(scope="module")
def separate_space(real_table):
    groups = np.array(real_table.groups, dtype=object)
    rows = np.flatnonzero(np.isin(groups, SEPARATE_GROUPS))
    raw = real_table.mfcc_stats[rows]
    return Standardizer.fit(raw)(raw), groups[rows]


@pytest.mark.parametrize("seed", [0, 1])
def test_sweep_recovers_the_number_of_well_separated_real_groups(separate_space, seed):
    space, groups = separate_space
    sweep = choose_k(space, seed=seed)
    assert sweep.criterion == DEFAULT_CRITERION
    assert sweep.k_ == len(set(groups)) == 2
    assert sweep.k_range == (2, len(space) // 2)  # capped: two tracks a cluster on average
    assert sorted(sweep.curve_) == list(range(2, len(space) // 2 + 1))
    # the choice is the partition into the two groups, not any 2-way cut
    labels, _ = cluster(space, sweep.k_, seed=seed)
    assert len({(g, c) for g, c in zip(groups, labels)}) == 2


def test_the_stability_curve_falls_past_the_true_k_on_real_groups(separate_space):
    """Splitting a group cuts it where the subsamples disagree: every k above 2 is less stable."""
    space, _ = separate_space
    curve = choose_k(space, seed=0, criterion="stability").curve_
    assert curve[2] == pytest.approx(1.0)
    assert all(curve[k] < 0.95 for k in curve if k > 2)


def test_sweep_record_is_json_and_round_trips(separate_space):
    space, _ = separate_space
    sweeps = sweep_all(space, seed=0, k_range=(2, 5))
    assert set(sweeps) == set(CRITERIA)
    for criterion, sweep in sweeps.items():
        record = json.loads(json.dumps(sweep.to_dict(), allow_nan=False))  # strict JSON: no NaN/Inf
        assert record["criterion"] == criterion and record["k"] == sweep.k_ and record["rule"]
        assert [p["k"] for p in record["curve"]] == [2, 3, 4, 5]
        back = KSweep.from_dict(record)
        assert back.k_ == sweep.k_ and back.curve_ == pytest.approx(sweep.curve_)
        assert back.criterion == criterion and back.k_range == (2, 5)
    assert all("spread" in p for p in sweeps["gap"].to_dict()["curve"])


def test_undefined_scores_become_null_in_the_record():
    sweep = KSweep("silhouette", 3, {2: math.nan, 3: 0.4}, (2, 3))
    record = sweep.to_dict()
    assert record["curve"][0]["score"] is None
    assert math.isnan(KSweep.from_dict(json.loads(json.dumps(record))).curve_[2])


def test_each_rule_reads_the_curve_as_documented():
    curve = {2: 0.1, 3: 0.5, 4: 0.5, 5: 0.2}
    assert pick_k("silhouette", curve) == 3  # highest, ties to the smaller k
    assert pick_k("stability", curve) == 3
    assert pick_k("davies_bouldin", curve) == 2  # lowest
    assert pick_k("gmm_bic", {2: 10.0, 3: -4.0, 4: 1.0}) == 3
    assert pick_k("silhouette", {2: math.nan, 3: 0.1}) == 3  # NaN never chosen
    # gap: the smallest k with Gap(k) >= Gap(k+1) - s(k+1)
    gap = {2: 0.10, 3: 0.30, 4: 0.32, 5: 0.50}
    assert pick_k("gap", gap, {2: 0.01, 3: 0.01, 4: 0.05, 5: 0.01}) == 3  # 0.30 >= 0.32 - 0.05
    assert pick_k("gap", gap, {k: 0.0 for k in gap}) == 5  # still rising: the largest k tried
    with pytest.raises(ParameterError, match="undefined"):
        pick_k("silhouette", {2: math.nan})


def test_k_candidates_are_capped_by_the_collection():
    assert k_candidates(100) == list(range(2, 31))
    assert k_candidates(13) == [2, 3, 4, 5, 6]
    with pytest.raises(ParameterError, match="at least 4 tracks"):
        k_candidates(3)
    with pytest.raises(ParameterError, match="k_range"):
        k_candidates(100, (1, 5))


def test_bad_inputs_are_refused_with_a_reason(separate_space):
    space, _ = separate_space
    with pytest.raises(ParameterError, match="criterion"):
        choose_k(space, criterion="elbow")
    with pytest.raises(ParameterError, match="method"):
        choose_k(space, method="dbscan")
    with pytest.raises(ParameterError, match=r"\(N, D\)"):
        choose_k(space[:, 0])
    bad = space.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="finite"):
        choose_k(bad)
    with pytest.raises(ParameterError, match="not a k-sweep record"):
        KSweep.from_dict({"criterion": "silhouette"})
