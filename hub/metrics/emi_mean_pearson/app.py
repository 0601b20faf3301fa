"""The metric's Space: evaluate's standard widget around `emi_mean_pearson.py` (next to this file)."""

import os

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "emi_mean_pearson.py"))
launch_gradio_widget(module)
