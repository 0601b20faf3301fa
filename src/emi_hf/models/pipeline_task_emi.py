"""The `transformers.pipeline()` task of the emi-hf models, as their configs declare it.

This file is copied next to the weights by ``save_pretrained`` (``configuration_emi.py`` imports it), so it imports
nothing but the standard library. The pipeline itself, ``pipeline_emi.py``, is copied with it: transformers copies the
files that a bundle file's text imports relatively (it reads them with a regular expression, docstrings included),
and this docstring names it, without an import that would run (``pipeline_emi`` needs ``transformers.pipelines``,
too heavy for every config, and imports emi_hf where installed):

    from .pipeline_emi import EmiIntensityPipeline

``tests/test_pipeline.py`` checks that a saved checkpoint holds the file.
"""

from __future__ import annotations

import copy
import sys

PIPELINE_TASK = "emotion-mimicry-intensity"
"""The task name: `pipeline(PIPELINE_TASK, model=FOLDER_OR_ID)`."""
CUSTOM_PIPELINES = {PIPELINE_TASK: {"impl": "pipeline_emi.EmiIntensityPipeline", "pt": ["AutoModel"],
                                    "type": "multimodal"}}
"""`custom_pipelines` of a saved checkpoint's config.json (`EmiPipelineTaskMixin.to_dict`): how
`pipeline(PIPELINE_TASK, model=FOLDER, trust_remote_code=True)` finds `pipeline_emi.py` beside the weights in a Python
without emi-hf."""


class EmiPipelineTaskMixin:
    """`custom_pipelines` as transformers' `pipeline()` reads it from a config: the checkpoint's own pipeline file,
    unless this process has the task registered with transformers already (`import emi_hf` registers it when
    `transformers.pipelines` is imported), which then serves it without `trust_remote_code` (transformers would
    otherwise insist on the remote file). A value read from config.json or set is not kept: it is always this one."""

    @property
    def custom_pipelines(self) -> dict:
        registry = getattr(sys.modules.get("transformers.pipelines"), "PIPELINE_REGISTRY", None)
        registered = registry is not None and PIPELINE_TASK in registry.supported_tasks
        return {} if registered else copy.deepcopy(CUSTOM_PIPELINES)

    @custom_pipelines.setter
    def custom_pipelines(self, value) -> None:
        pass

    def to_dict(self) -> dict:
        """The config's dict with `custom_pipelines` (at the top level only: a fusion's sub-configs leave it out)."""
        output = super().to_dict()
        for value in output.values():
            if isinstance(value, dict):
                value.pop("custom_pipelines", None)
        output["custom_pipelines"] = copy.deepcopy(CUSTOM_PIPELINES)
        return output


__all__ = ["CUSTOM_PIPELINES", "PIPELINE_TASK", "EmiPipelineTaskMixin"]
