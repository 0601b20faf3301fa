"""The `transformers.pipeline()` task of the emi-hf models, as their configs declare it.

This file is copied next to the weights by ``save_pretrained`` (``configuration_emi.py`` imports it), so it imports
nothing but the standard library. Its `TYPE_CHECKING` import of ``pipeline_emi.py`` (the pipeline itself) makes
``save_pretrained`` copy that file too (transformers copies a bundle file's relative imports, read from its text),
``push_to_hub=True`` included.
"""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline_emi import EmiIntensityPipeline  # noqa: F401  (see above: copied beside the weights)

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
