"""The solver cotj.execute.sample runs when none is given (cotj.execute.pipeline.default_solver)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from conftest import needs_extra

pytestmark = needs_extra("diffusers")

import diffusers  # noqa: E402
import torch  # noqa: E402

import cotj  # noqa: E402
from cotj.execute.pipeline import default_solver  # noqa: E402


@pytest.fixture(scope="module")
def teacher():
    from cotj.models.analytic import FlowMixtureModel, MixtureFamily
    from cotj.predict.teacher import calibrate

    noise = torch.randn(12, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return calibrate(FlowMixtureModel(MixtureFamily(dim=4, seed=0)), noise, torch.arange(12) % 3, cotj.default_grid(10),
                     batch_size=12, progress=False)


def test_unipc_closed_loop_where_the_teacher_cost_has_a_gram_matrix(teacher, caplog):
    flow = diffusers.FlowMatchEulerDiscreteScheduler()
    assert teacher.gram is not None
    assert default_solver(flow, teacher) == "unipc"
    with caplog.at_level(logging.INFO, logger="cotj.execute.pipeline"):
        assert default_solver(flow, replace(teacher, gram=None)) == "euler"
    assert "no Gram matrix" in caplog.text and "recalibrate" in caplog.text


def test_first_order_plans_where_unipc_does_not_apply(teacher):
    flow = diffusers.FlowMatchEulerDiscreteScheduler()
    assert default_solver(flow, None) is None  # no teacher cost: the DNA's plan on the pipeline's own scheduler
    assert default_solver(flow, teacher, "calibrated") is None
    assert default_solver(flow, teacher, tau=0.99) is None  # adaptive length is planned first order
    assert default_solver(flow, teacher, replan=False) is None  # open loop keeps the pipeline's scheduler
    assert default_solver(diffusers.EulerDiscreteScheduler(), teacher) is None  # VP: its own scheduler, Euler steps
