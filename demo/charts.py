"""The demo's charts and summary (bar chart of the clip intensities per modality, the timeline, the markdown
summary), drawn from an `app.Analysis`; kept beside app.py, which re-exports them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from emi_hf.inference import MODALITIES

if TYPE_CHECKING:
    from app import Analysis

MODALITY_COLORS = {"visual": "#4C72B0", "audio": "#DD8452", "text": "#8172B3", "fused": "#2CA02C"}
MODALITY_LABELS = {"visual": "face (visual)", "audio": "voice (audio)", "text": "words (text)", "fused": "fused"}
EMOTION_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def bar_chart(analysis: Analysis):
    """Grouped bars: per emotion, the visual, audio, text and fused intensities (those the model has; a missing
    modality's bars are faint)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    present = [m for m in MODALITIES if analysis.modalities.get(m) is not None]
    width = 0.8 / max(1, len(present))
    x = np.arange(len(analysis.emotions))
    for k, modality in enumerate(present):
        values = [np.nan if v is None else v for v in analysis.modalities[modality]]
        missing = all(v is None for v in analysis.modalities[modality])
        label = MODALITY_LABELS[modality] + (" - missing" if missing else "")
        bars = axes.bar(x + (k - (len(present) - 1) / 2) * width, np.nan_to_num(values), width,
                        label=label, color=MODALITY_COLORS[modality], alpha=0.35 if missing else 1.0)
        if modality == analysis.main[0]:
            for bar, value in zip(bars, values):
                if not np.isnan(value):
                    axes.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, value), ha="center",
                                  va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    axes.set_xticks(x, [name.replace(" ", "\n") for name in analysis.emotions], fontsize=9)
    axes.set_ylim(0, 1.08)
    axes.set_ylabel("intensity")
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title("Clip intensities", loc="left", fontsize=11, fontweight="bold")
    axes.legend(loc="lower right", ncols=3, fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.0))
    return figure


def timeline_chart(analysis: Analysis):
    """Frame-level intensities over the clip: the face (per video frame) and, when there is audio, the voice."""
    from matplotlib.figure import Figure

    panels = []
    if analysis.frame_intensities:
        panels.append(("face, per video frame", analysis.prediction.timestamps, analysis.frame_intensities))
    if analysis.audio_frame_intensities:
        panels.append(("voice, per audio frame", analysis.audio_times, analysis.audio_frame_intensities))
    figure = Figure(figsize=(8, 2.0 + 1.5 * max(1, len(panels))), dpi=100, layout="constrained")
    if not panels:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no frame-level intensities: no face and no audio", ha="center", va="center")
        axes.set_axis_off()
        return figure
    axes_list = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for axes, (title, times, rows) in zip(axes_list, panels):
        values = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        times = np.asarray(times[: len(values)], dtype=float)
        for j, name in enumerate(analysis.emotions):
            axes.plot(times, values[:, j], color=EMOTION_COLORS[j % len(EMOTION_COLORS)], lw=1.4, label=name)
        no_data = np.isnan(values).all(axis=1)
        if no_data.any() and len(times) > 1:
            step = float(np.median(np.diff(times))) if len(times) > 1 else 0.1
            for t in times[no_data]:
                axes.axvspan(t - step / 2, t + step / 2, color="0.85", lw=0)
        axes.set_ylim(0, 1)
        axes.set_title(title + (" (grey: no face)" if no_data.any() and "face" in title else ""), fontsize=9,
                       loc="left")
        axes.set_ylabel("intensity", fontsize=8)
        axes.grid(alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
    axes_list[-1].set_xlabel("time (s)")
    axes_list[0].legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(1.01, 1.0))
    figure.suptitle("Timeline of frame-level intensities", x=0.01, ha="left", fontsize=11, fontweight="bold")
    return figure


def summary_markdown(analysis: Analysis) -> str:
    kind, values = analysis.main
    lines = []
    ranked = sorted(((v, n) for n, v in zip(analysis.emotions, values) if v is not None), reverse=True)
    if ranked:
        top = ", ".join(f"**{n}** {v:.2f}" for v, n in ranked[:2])
        lines.append(f"Strongest ({MODALITY_LABELS.get(kind, kind)}): {top}")
    else:
        lines.append("**No usable input:** neither a face nor audio was found, so there is no estimate.")
    duration = f"{analysis.duration:.1f} s" if analysis.duration else "unknown duration"
    prediction = analysis.prediction
    audio = "present" if prediction.audio_present else "not usable" if analysis.has_audio_track else "no track"
    fps = f" at {prediction.fps:g} fps" if prediction.fps else ""
    seen = [] if prediction.face_fraction is None else [  # None: not looked at (the model has no part for it)
        f"face in {round(prediction.face_fraction * analysis.num_frames)} of {analysis.num_frames} frames "
        f"({100 * prediction.face_fraction:.0f}%)"]
    seen += [] if prediction.audio_present is None else [f"audio: {audio}"]
    lines.append(f"\n{analysis.num_frames} frames{fps} over {duration}" + "".join(f"; {s}" for s in seen) + ".")
    missing = analysis.missing()
    if missing:
        lines.append("\n**Missing:** " + "; ".join(missing) + ".")
    for warning in prediction.warnings:
        if "masked" not in warning:  # those are the missing modalities, said above
            lines.append(f"\n_Note: {warning}_")
    if prediction.transcript is not None:
        lines.append(f"\n**Transcript:** {prediction.transcript.strip() or '(none)'}")
    shown = [m for m in MODALITIES if analysis.modalities.get(m) is not None]
    lines.append("\n| Emotion | " + " | ".join(MODALITY_LABELS[m] for m in shown) + " |")
    lines.append("|---|" + "---:|" * len(shown))
    for i, name in enumerate(analysis.emotions):
        cells = []
        for m in shown:
            v = analysis.modalities[m][i]
            cells.append("-" if v is None else f"{v:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# The Blocks
# ----------------------------------------------------------------------------------------------------------------------
