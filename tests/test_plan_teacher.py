"""Planning on a teacher cost (cotj.planning.objectives): the "teacher", "paper" and "calibrated" objectives,
their input checks, and TeacherCost files."""

from __future__ import annotations

import numpy as np
import pytest

import cotj
from conftest import ANALYTIC_GRID, analytic_inputs
from cotj.planning.objectives import TeacherCost, objective


def test_teacher_objective_plans_equal_the_gits_baseline(analytic_teacher):
    """The core's dense DP on the teacher cost finds the testbed's numpy GITS schedule (its own DP)."""
    from cotj.models.analytic import FlowMixtureModel, MixtureFamily
    from cotj.predict.teacher import euler_trajectories
    from cotj_testbed import baselines

    model = FlowMixtureModel(MixtureFamily(dim=6, seed=0))
    noise, cond = analytic_inputs(24, 0)
    traj = euler_trajectories(model, noise, cond, ANALYTIC_GRID)
    for k in (1, 2, 4, 7):
        p = cotj.plan_batch(objective("teacher", teacher=analytic_teacher), k, current=11)
        np.testing.assert_allclose(p.levels[0], baselines.gits(traj, k))


def test_paper_objective_is_todays_plan(real_dna):
    mine = cotj.plan_batch(objective("paper", dna=real_dna[None]), 8)
    np.testing.assert_array_equal(mine.steps, cotj.plan_batch(real_dna[None], 8).steps)


def test_calibrated_objective_scales_rows_by_the_dna_ratio(analytic_teacher):
    rng = np.random.default_rng(1)
    mean = rng.uniform(0.1, 1.0, 12)
    dna = mean * rng.uniform(0.2, 5.0, (3, 12))
    p = cotj.plan_batch(objective("calibrated", dna=dna, mean_dna=mean, teacher=analytic_teacher), 4)
    for b in range(3):
        steps = p.steps[b]
        w = dna[b] / mean
        by_hand = sum(w[j] * analytic_teacher.edges[j, i] for j, i in zip(steps[:-1], steps[1:])) + w[steps[-1]] * analytic_teacher.end[steps[-1]]
        assert p.cost[b] == pytest.approx(by_hand, rel=1e-12)
    same = cotj.plan_batch(objective("calibrated", dna=mean, mean_dna=mean, teacher=analytic_teacher), 4)
    np.testing.assert_array_equal(same.steps[0], cotj.plan_batch(objective("teacher", teacher=analytic_teacher), 4).steps[0])


@pytest.mark.parametrize("bad, match", [
    (dict(name="nope"), "objective must be one of"),
    (dict(name="paper"), "needs dna"),
    (dict(name="teacher"), "needs teacher"),
    (dict(name="calibrated", dna=np.ones(12)), "needs dna and mean_dna"),
])  # fmt: skip
def test_objective_rejects_missing_inputs(bad, match, analytic_teacher):
    name = bad.pop("name")
    if name == "calibrated":
        bad["teacher"] = analytic_teacher
    with pytest.raises(ValueError, match=match):
        objective(name, **bad)


def test_teacher_cost_round_trips_and_rejects_bad_files(analytic_teacher, tmp_path):
    path = tmp_path / "teacher.json"
    analytic_teacher.save(path)
    back = TeacherCost.load(path)
    np.testing.assert_allclose(back.edges, analytic_teacher.edges, rtol=1e-6)
    np.testing.assert_allclose(back.end, analytic_teacher.end, rtol=1e-6)
    assert back.rows is not None and analytic_teacher.rows is not None
    np.testing.assert_allclose(back.rows.beta, analytic_teacher.rows.beta, rtol=1e-6)
    np.testing.assert_array_equal(back.grid, analytic_teacher.grid)
    for text in ["[]", '{"format": "cotj.teacher_cost/1"}', "{", '{"format": "other"}']:
        path.write_text(text)
        with pytest.raises(ValueError, match="teacher.json: not a valid teacher cost"):
            TeacherCost.load(path)
