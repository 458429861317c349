"""The walk-forward evaluation written out: a printed table, a JSON file and a PNG plot."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.atomic_files import replace_atomically
from shared.forecast_scale import TRADING_DAYS_PER_YEAR
from trainer.mamba.evaluate import EvaluationConfig, Forecasts
from trainer.mamba.scoring import score_horizon

PLOT_HORIZON = 5
# Drawn over the realised volatility, in this order (those a series has); one colour each
# in every panel.
PLOTTED = {"true": "black", "garch": "tab:blue", "har": "tab:orange", "mamba": "tab:red"}


def summarise(forecasts: Forecasts) -> dict[str, Any]:
    """The scores of one series, per horizon, with the period they cover."""
    by_horizon = {
        str(h): score_horizon(
            forecasts.realised_variance[:, i],
            {name: f[:, i] for name, f in forecasts.variance.items()},
            forecasts.realised_return[:, i],
            forecasts.mamba_return[:, i],
            h,
        )
        for i, h in enumerate(forecasts.horizons)
    }
    return {
        "out_of_sample": {
            "first": str(forecasts.dates[0]),
            "last": str(forecasts.dates[-1]),
            "days": len(forecasts.days),
        },
        "refits": forecasts.refits,
        "mamba_training_seconds": round(forecasts.mamba_seconds, 1),
        "horizons": by_horizon,
    }


def format_tables(summaries: dict[str, dict[str, Any]]) -> str:
    """Two markdown tables, a row per series and horizon: variance by QLIKE; MSE and returns."""
    # Every forecaster any series has ("true" only the synthetic one), in order of appearance.
    models = list(
        dict.fromkeys(
            m for s in summaries.values() for h in s["horizons"].values() for m in h["qlike"]
        )
    )
    rivals = [m for m in models if m != "mamba"]

    def cells(values: dict[str, float], names: list[str], form: str) -> str:
        return " | ".join(format(values[m], form) if m in values else "-" for m in names)

    qlike = [
        "| series | h | " + " | ".join(f"QLIKE {m}" for m in models) + " | "
        + " | ".join(f"DM vs {m}" for m in rivals) + " |",
        "|---|---:|" + "---:|" * (len(models) + len(rivals)),
    ]  # fmt: skip
    other = [
        "| series | h | " + " | ".join(f"MSE var {m}" for m in models)
        + " | return MSE mamba | return MSE zero | direction mamba | up rate |",
        "|---|---:|" + "---:|" * (len(models) + 4),
    ]  # fmt: skip
    for symbol, summary in summaries.items():
        for h, s in summary["horizons"].items():
            row = f"| {symbol} | {h} | "
            qlike.append(
                f"{row}{cells(s['qlike'], models, '.4f')} | {cells(s['dm_qlike'], rivals, '+.2f')} |"
            )
            r = s["returns"]
            other.append(
                row
                + cells(s["mse_variance_pct2"], models, ".3g")
                + f" | {r['mse']:.3g} | {r['mse_zero']:.3g} | {r['direction_accuracy']:.3f}"
                + f" | {r['up_rate']:.3f} |"
            )
    periods = [
        f"{symbol}: {s['out_of_sample']['first']} .. {s['out_of_sample']['last']}, "
        f"{s['out_of_sample']['days']:,} days, {s['refits']} refits, "
        f"Mamba training {s['mamba_training_seconds']:.0f} s"
        for symbol, s in summaries.items()
    ]
    note = (
        "QLIKE and MSE on the mean daily variance over h days (MSE in %^2 squared); "
        "DM: Diebold-Mariano t of Mamba's QLIKE minus the other's, Newey-West lag h-1 "
        "(negative: Mamba better; |t| > 1.96: significant at 5%)."
    )
    return "\n".join([*periods, "", note, "", *qlike, "", *other])


def volatility_plot(all_forecasts: list[Forecasts], horizon: int = PLOT_HORIZON) -> bytes:
    """PNG: forecast and realised annualised volatility over each out-of-sample period."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(
        len(all_forecasts), 1, figsize=(11, 3.2 * len(all_forecasts)), dpi=100, squeeze=False
    )
    for ax, forecasts in zip(axes[:, 0], all_forecasts, strict=True):
        i = forecasts.horizons.index(horizon)

        def annualised(variance: np.ndarray, i: int = i) -> np.ndarray:
            return np.sqrt(variance[:, i] * TRADING_DAYS_PER_YEAR)

        dates = forecasts.dates.astype("datetime64[D]").astype(object)
        ax.plot(
            dates, annualised(forecasts.realised_variance), color="0.75", lw=0.7, label="realised"
        )
        for name, colour in PLOTTED.items():
            if name in forecasts.variance:
                ax.plot(
                    dates, annualised(forecasts.variance[name]), color=colour, lw=1.0, label=name
                )
        ax.set_title(f"{forecasts.symbol}: {horizon}-day volatility, out of sample")
        ax.set_ylabel("annualised volatility")
        ax.legend(loc="upper right", ncols=len(PLOTTED) + 1, fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_report(
    all_forecasts: list[Forecasts], config: EvaluationConfig, json_path: Path
) -> tuple[str, Path]:
    """Write the JSON to `json_path` and the plot beside it (.png); return the tables and its path."""
    summaries = {f.symbol: summarise(f) for f in all_forecasts}
    document = {"config": config.as_meta(), "plot_horizon": PLOT_HORIZON, "series": summaries}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(json_path, (json.dumps(document, indent=2) + "\n").encode())
    png_path = json_path.with_suffix(".png")
    replace_atomically(png_path, volatility_plot(all_forecasts))
    return format_tables(summaries), png_path
