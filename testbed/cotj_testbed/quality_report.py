"""Report of a quality benchmark run (:mod:`cotj_testbed.quality`): JSON, markdown tables and two figures
(PSNR against NFE; the jump costs and where each schedule puts its steps)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cotj_testbed.quality import MATCH_STEPS, SCHEDULES

__all__ = ["cost_figure", "markdown", "psnr_figure", "solver_figure", "solver_markdown", "write_report"]

_STYLES = {"uniform": ("k", "o", "-"), "shift3": ("tab:gray", "s", "-"), "karras": ("tab:brown", "^", "-"),
           "gits": ("tab:purple", "D", "-"), "oss": ("tab:olive", "v", ":"), "cotj_mean": ("tab:blue", "o", "--"),
           "cotj_pred": ("tab:orange", "o", "-"), "cotj_oracle": ("tab:green", "o", ":"),
           "teacher": ("tab:pink", "P", "-"), "calibrated_pred": ("tab:cyan", "P", "-"),
           "calibrated_oracle": ("tab:cyan", "P", ":"), "closed_loop": ("tab:red", "X", "-"),
           "closed_loop_pred": ("tab:red", "X", "--"), "closed_loop_oracle": ("tab:red", "X", ":")}  # fmt: skip


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _table(results: dict[str, Any], value: Any, digits: int) -> str:
    """Rows schedules, columns K; ``value(summary)`` is the cell (None: a dash)."""
    ks = results["ks"]
    lines = ["| schedule | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for name, by_k in results["schedules"].items():
        lines.append(f"| {SCHEDULES[name]} | " + " | ".join(_fmt(value(by_k[str(k)]), digits) for k in ks) + " |")
    return "\n".join(lines) + "\n"


def _match_rows(results: dict[str, Any]) -> list[str]:
    last = results["ks"][-1]
    rows = ["| schedule | smallest K reaching it | interpolated NFE |", "|---|---|---|"]
    for name, v in results["nfe_to_match_uniform_50"].items():
        if name == "target_psnr":
            continue
        k = v["k"] if v["k"] is not None else ("–" if name == "cotj_adaptive" else f"> {last}")
        rows.append(f"| {SCHEDULES.get(name, 'CoTj adaptive (mean NFE)')} | {k} | {_fmt(v['nfe'], 1)} |")
    return rows


def _cost_rows(curves: dict[str, list[float]], starts: tuple[float, ...] = (1.0, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1)) -> list[str]:
    t = np.asarray(curves["t"])
    rows = ["| jump | teacher local error | CoTj edge cost d_j·L | ratio | mean d_j |", "|---|---|---|---|---|"]
    for start in starts:
        m = int(np.abs(t - start).argmin())
        teacher, planned = curves["teacher"][m], curves["cotj"][m]
        rows.append(f"| {t[m]:.2f} → {curves['t_next'][m]:.2f} | {teacher:.2e} | {planned:.2e} | "
                    f"{planned / teacher:.1f} | {curves['dna'][m]:.2e} |")  # fmt: skip
    return rows


def _predictor_rows(pred: dict[str, Any]) -> list[str]:
    """The predictor's median |log(pred/true)| per level and the paper objective's plan regret, against the mean DNA."""
    if "median_abs_log_error" not in pred:
        return []
    err, regret = pred["median_abs_log_error"], pred["plan_regret"]
    levels, ks = list(err["predicted"]), list(regret["predicted"])
    return ["Median |log(DNA / true DNA)| by level (the planner uses DNA ratios across the whole range), and the "
            "plan regret of the paper objective (true-DNA cost of the plan made from it minus the oracle plan's):\n",
            "| source | " + " | ".join(f"t = {t}" for t in levels) + " | " + " | ".join(f"regret K={k}" for k in ks) + " |",
            "|---|" + "---|" * (len(levels) + len(ks)),
            *[f"| {name} | " + " | ".join(f"{err[name][t]:.2f}" for t in levels) + " | "
              + " | ".join(f"{regret[name][k]:.4f}" for k in ks) + " |" for name in err], ""]  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    """The report as markdown: PSNR, MSE and CoTj-cost tables (rows schedules, columns K), accuracy (Tier 2),
    the adaptive run, the NFE to match uniform-50, jump costs, the predictor's cosine and the planning time."""
    ad, u50, pred = results["adaptive"], results["uniform_50"], results["predictor"]
    lines = [
        f"# Quality benchmark, Tier {results['tier']}\n",
        f"Model: {results['model']}. "
        + ("Validation samples (training prompts after the teacher's)" if results.get("config", {}).get("validation") else "Held-out samples")
        + f": {pred['n_heldout']}; "
        + (f"predictor trained on {pred['n_train']}." if "n_train" in pred else "predictor: saved, not trained here.")
        + (f" Teacher cost: {results['teacher_cost']['n_samples']} calibration samples." if "teacher_cost" in results else ""),
        f"Training DNA: {results['dna_source']}. Every schedule starts from the same noise per sample (at its own "
        f"first level). PSNR data range R = {results['data_range']:.4g} ({results['data_range_note']}); PSNR is the "
        "mean of per-sample PSNR, MSE the mean of per-sample MSE.\n",
        "## PSNR (dB) to the reference endpoint, higher is better\n", _table(results, lambda s: s["psnr"], 2),
        "## MSE to the reference endpoint (x 1e3), lower is better\n", _table(results, lambda s: 1e3 * s["mse"], 3),
    ]
    if "accuracy" in u50:
        lines += ["## Attribute accuracy (all stated attributes right), higher is better\n",
                  _table(results, lambda s: s["accuracy"]["all"], 3),
                  f"Uniform {MATCH_STEPS} steps: {u50['accuracy']['all']:.3f}.\n"]  # fmt: skip
    lines += [
        "## Mean CoTj cost of each schedule on the true DNA (snapped to the grid; lower is better; – where "
        "snapping merges levels)\n",
        _table(results, lambda s: s["cost"], 4),
        f"## Adaptive CoTj (tau = {ad['tau']}, predicted DNA)\n",
        f"Mean NFE {ad['nfe_mean']:.2f} (min {ad['nfe_min']}, max {ad['nfe_max']}): PSNR {ad['psnr']:.2f} dB, "
        f"MSE {ad['mse'] * 1e3:.3f}e-3.\n",
        f"## NFE to match uniform at {MATCH_STEPS} steps (PSNR {u50['psnr']:.2f} dB)\n",
        *_match_rows(results), "",
        "## What a jump costs: realised against planned (held-out means)\n",
        "Teacher local error: mean squared distance between one Euler step from the teacher's state and the "
        "teacher's state at the next level (what GITS/OSS minimise). CoTj edge cost: d_j·((t_j - t_i)/t_j)² on "
        "the true DNA.\n",
        *_cost_rows(results["cost_curves"]), "",
        "## DNA predictor\n",
        f"Held-out cosine: mean {pred['heldout_cosine_mean']:.4f}, median {pred['heldout_cosine_median']:.4f} "
        f"({pred['n_heldout']} conditions; paper, Qwen-Image: 0.954 / 0.969). The training mean DNA as the "
        f"prediction for every condition: mean {pred['mean_dna_cosine_mean']:.4f}, median "
        f"{pred['mean_dna_cosine_median']:.4f}."
        + (f" After alignment to the mean DNA (what the planner uses): mean {pred['aligned_cosine_mean']:.4f}, "
           f"median {pred['aligned_cosine_median']:.4f}." if "aligned_cosine_mean" in pred else "") + "\n",
        *_predictor_rows(pred),
    ]  # fmt: skip
    if "planning_time" in results:
        p = results["planning_time"]
        lines += [
            "## Planning time against one Tier 2 denoising step\n",
            f"Plan (K = {p['k']}) {p['plan_ms'] * 1e3:.1f} µs + predictor forward {p['predictor_ms'] * 1e3:.1f} µs, "
            f"against one guided UNet step {p['unet_step_ms']:.2f} ms ({p['threads']} thread; UNet weights: "
            f"{p['unet_weights']}): {p['percent_of_step']:.3f} % of one step (adaptive plan, tau = {p['tau']}: "
            f"{p['percent_of_step_adaptive']:.3f} %).\n",
        ]  # fmt: skip
    return "\n".join(lines)


def psnr_figure(results: dict[str, Any]) -> Figure:
    """PSNR against NFE, one line per schedule, the adaptive run as one point and uniform-50 as a line."""
    fig = Figure(figsize=(9, 5.8), layout="constrained")
    ax = fig.add_subplot()
    ks = results["ks"]
    for name, by_k in results["schedules"].items():
        colour, marker, line = _STYLES[name]
        ax.plot(ks, [by_k[str(k)]["psnr"] for k in ks], color=colour, marker=marker, linestyle=line,
                markersize=4, linewidth=1.6, label=SCHEDULES[name])  # fmt: skip
    ad = results["adaptive"]
    ax.plot([ad["nfe_mean"]], [ad["psnr"]], marker="*", markersize=15, color="tab:red", linestyle="none",
            label=f"CoTj adaptive τ={ad['tau']} (at its mean NFE)")  # fmt: skip
    ax.axhline(results["uniform_50"]["psnr"], color="k", linewidth=0.8, linestyle="-.", label=f"uniform, {MATCH_STEPS} steps")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("NFE (steps K, log scale)")
    ax.set_ylabel(f"PSNR to the reference endpoint (dB, R = {results['data_range']:.3g})")
    ax.set_title(f"Tier {results['tier']}: quality against steps, {results['predictor']['n_heldout']} held-out samples, same noise")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def cost_figure(results: dict[str, Any], k: int = 10) -> Figure:
    """Left: the realised local error of a jump against CoTj's edge cost for it, by starting level. Right: the
    mean level of each step of every schedule at budget ``k`` (the nearest benchmarked budget)."""
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.25))
    c = results["cost_curves"]
    jump = c["t"][0] - c["t_next"][0]
    left.plot(c["t"], c["teacher"], color="tab:purple", label="realised: Euler step from the teacher's state")
    left.plot(c["t"], c["cotj"], color="tab:blue", label="CoTj edge cost d_j·L(j, i) (true DNA)")
    left.plot(c["t"], c["dna"], color="tab:blue", linewidth=0.8, linestyle=":", label="mean DNA d_j")
    left.set_yscale("log")
    left.invert_xaxis()
    left.set_xlabel("starting level t_j  (1 = pure noise)")
    left.set_ylabel("mean squared error")
    left.set_title(f"A jump of Δt = {jump:.2f} from t_j")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    ks = results["ks"]
    k = min(ks, key=lambda v: abs(v - k))
    for row, (name, by_k) in enumerate(results["schedules"].items()):
        colour, marker, _ = _STYLES[name]
        right.plot(by_k[str(k)]["levels_mean"], np.full(k, row), color=colour, marker=marker, linestyle="none")
    right.set_yticks(range(len(results["schedules"])), [SCHEDULES[n] for n in results["schedules"]], fontsize=8)
    right.set_xlim(1.02, -0.02)
    right.set_xlabel("noise level t (mean over samples of each step's level)")
    right.set_title(f"Where the {k} steps go")
    right.grid(True, axis="x", alpha=0.3)
    return fig


_SOLVER_NAMES = {"euler": "Euler", "heun": "Heun", "dpmpp_2m": "DPM-Solver++(2M)", "unipc": "UniPC (bh2)"}
_SOLVER_STYLES = {"euler": ("k", "o"), "heun": ("tab:green", "s"), "dpmpp_2m": ("tab:blue", "D"), "unipc": ("tab:red", "^")}


def _setting(results: dict[str, Any]) -> str:
    n = results["predictor"]["n_heldout"]
    which = "validation samples" if results.get("config", {}).get("validation") else "held-out samples"
    return (f"Model: {results['model']}. {n} {which}, the same noise and reference as the main benchmark; PSNR "
            f"(dB, data range R = {results['data_range']:.4g}) is the mean of per-sample PSNR to the reference endpoint.")


def solver_markdown(results: dict[str, Any]) -> str:
    """The solver study as markdown: PSNR per solver (rows schedules, columns NFE), the best pairing at each NFE,
    NFE to match uniform Euler at 50 steps, and each higher-order solver's gain over Euler."""
    nfes, f = results["nfes"], results["findings"]
    names = results["schedule_names"]
    head = "| schedule | " + " | ".join(f"NFE={n}" for n in nfes) + " |\n|---|" + "---|" * len(nfes)
    lines = [f"# Solver study, Tier {results['tier']}\n", _setting(results),
             "Each solver runs each schedule at the most levels its NFE allows (Heun spends two evaluations per level, "
             "one on its last step: K = (NFE + 1) // 2; the others K = NFE). \"solver-aware\" plans with the teacher "
             "cost of that solver's own steps (docs/method.md §11); for Euler it is the default objective.\n",
             f"Reference: uniform Euler at {MATCH_STEPS} steps, {f['target_psnr']:.2f} dB.\n"]
    for solver, by_name in results["solvers"].items():
        lines += [f"## {_SOLVER_NAMES.get(solver, solver)}: PSNR (dB)\n", head]
        for name, by_n in by_name.items():
            if by_n:
                lines.append(f"| {names[name]} | " + " | ".join(_fmt(by_n.get(str(n), {}).get("psnr")) for n in nfes) + " |")
        lines.append("")
    lines += ["## Best pairing at each NFE\n", "| NFE | solver | schedule | PSNR |", "|---|---|---|---|"]
    lines += [f"| {n} | {_SOLVER_NAMES.get(b['solver'], b['solver'])} | {names[b['schedule']]} | {b['psnr']:.2f} |"
              for n, b in f["best"].items()]  # fmt: skip
    last = nfes[-1]
    lines += ["", f"## NFE to match uniform Euler at {MATCH_STEPS} steps ({f['target_psnr']:.2f} dB; interpolated)\n",
              "| schedule | " + " | ".join(_SOLVER_NAMES.get(s, s) for s in results["solvers"]) + " |",
              "|---|" + "---|" * len(results["solvers"])]
    for name in names:
        cells = [f["nfe_to_match_uniform_50"][s].get(name, "n/a") for s in results["solvers"]]
        lines.append(f"| {names[name]} | " + " | ".join("–" if c == "n/a" else (f"> {last}" if c is None else f"{c:.1f}")
                                                        for c in cells) + " |")  # fmt: skip
    if f["gain_over_euler"]:
        lines += ["", "## Gain of each solver's best schedule over Euler's best schedule (dB)\n",
                  "| solver | " + " | ".join(f"NFE={n}" for n in nfes) + " |", "|---|" + "---|" * len(nfes)]
        lines += [f"| {_SOLVER_NAMES.get(s, s)} | " + " | ".join(_fmt(g[str(n)]) for n in nfes) + " |"
                  for s, g in f["gain_over_euler"].items()]  # fmt: skip
    if f.get("headroom"):
        lines += ["", "## The default against the best data-set pairing and the per-sample ceiling\n",
                  "Best data-set pairing: the highest mean PSNR of any solver on levels shared by every sample (uniform, "
                  "shift 3, GITS-style from 16 or 256 prompts, the solver-aware teacher plan, LD3-style). Ceiling: the "
                  "default solver on each sample's own cheapest plan (its own teacher run). Difference: the mean "
                  "paired per-sample PSNR difference, ± its 95 % interval. Share: (default − best) / (ceiling − best).\n",
                  "| NFE | best data-set pairing | PSNR | default | default − best (± 95 %) | ceiling | share of gap |",
                  "|---|---|---|---|---|---|---|"]
        for n, h in f["headroom"].items():
            b, d = h["best_dataset"], h.get("default_minus_best_dataset")
            diff = "–" if d is None else f"{d['mean']:+.2f} ± {d['half_width']:.2f}"
            share = h.get("share_of_gap")
            lines.append(f"| {n} | {_SOLVER_NAMES.get(b['solver'], b['solver'])}, {names.get(b['schedule'], b['schedule'])} | "
                         f"{b['psnr']:.2f} | {h['default']:.2f} | {diff} | {_fmt(h.get('ceiling'))} | "
                         f"{'–' if share is None else f'{100 * share:.0f} %'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def solver_figure(results: dict[str, Any]) -> Figure:
    """PSNR against NFE: one panel per schedule, one line per solver, uniform Euler at 50 steps as a line."""
    names = [n for n in results["schedule_names"] if any(results["solvers"][s][n] for s in results["solvers"])]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True)).ravel()
    nfes = results["nfes"]
    for ax, name in zip(axes, names):
        for solver, by_name in results["solvers"].items():
            by_n = by_name[name] or (by_name["teacher"] if name == "solver_aware" else {})
            pts = [(n, by_n[str(n)]["psnr"]) for n in nfes if str(n) in by_n]
            if pts:
                colour, marker = _SOLVER_STYLES.get(solver, ("tab:gray", "o"))
                ax.plot(*zip(*pts), color=colour, marker=marker, markersize=3.5, linewidth=1.4,
                        label=_SOLVER_NAMES.get(solver, solver))  # fmt: skip
        ax.axhline(results["findings"]["target_psnr"], color="k", linewidth=0.8, linestyle="-.")
        ax.set_xscale("log")
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.minorticks_off()
        ax.set_title(results["schedule_names"][name], fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("NFE")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].set_ylabel("PSNR (dB)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Tier {results['tier']}: solvers on the same plans at equal NFE (dash-dot: uniform Euler, {MATCH_STEPS} steps)")
    return fig


def write_report(results: dict[str, Any], out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``{stem}.json``, ``{stem}.md``, ``{stem}_psnr.png`` and ``{stem}_costs.png`` into ``out_dir`` (a solver
    study: the JSON, markdown and ``{stem}_psnr.png``); returns the paths by kind ("json", "md", "png", "costs")."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "solvers" in results:
        paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}_psnr.png"}
        paths["json"].write_text(json.dumps(results, indent=1) + "\n")
        paths["md"].write_text(solver_markdown(results))
        solver_figure(results).savefig(paths["png"], dpi=120)
        return paths
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}_psnr.png",
             "costs": out / f"{stem}_costs.png"}  # fmt: skip
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["md"].write_text(markdown(results))
    psnr_figure(results).savefig(paths["png"], dpi=120)
    cost_figure(results).savefig(paths["costs"], dpi=120)
    return paths
