"""Encoders outside the model bundle: choosing, building, loading and fingerprinting the face backbones, speech
encoders and text encoders that feed the temporal models.

| module | holds |
|---|---|
| `setup` | which backbone / encoder a run uses, building the visual model for a choice, the processor that matches a
  face backbone, input-size checks, the record of what made a feature folder |
| `pretrained` | the base models of the quickstart and the CLI, built from named pretrained weights (with provenance) |
| `face_embedding` | embedding a clip's face crops with a model's face backbone (`FaceEmbedder`) |

The modules of the backbones themselves (`backbones_emi`, `encoders_emi`) belong to the bundle in `emi_hf.models`,
because a saved checkpoint runs them as remote code. Text encoders: `emi_hf.text.encoder`.
"""
