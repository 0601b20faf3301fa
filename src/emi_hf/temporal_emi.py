"""Temporal building blocks of the emi-hf models and their losses.

`TemporalEncoder` (dilated residual TCN for short range, then a pre-norm Transformer encoder for long range, with
fixed sinusoidal positions; a clip longer than the span training showed it is encoded in overlapping windows of that
span, stitched), `IntensityHead` (frame logits and masked pooling to clip logits), and the regression
losses (`concordance_loss`, `pearson_loss`, MSE). Padding and frames without a face are masked everywhere.

This file is copied next to the weights by ``save_pretrained`` (with ``modeling_emi.py``): it imports only torch and
transformers.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput


# ----------------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------------


def concordance_loss(predictions: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - Lin's concordance correlation coefficient, averaged over labels. Inputs `[batch, num_labels]`."""
    pred_mean, label_mean = predictions.mean(0), labels.mean(0)
    pred_var = predictions.var(0, unbiased=False)
    label_var = labels.var(0, unbiased=False)
    covariance = ((predictions - pred_mean) * (labels - label_mean)).mean(0)
    ccc = 2 * covariance / (pred_var + label_var + (pred_mean - label_mean) ** 2 + eps)
    return (1 - ccc).mean()


def pearson_loss(predictions: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - Pearson's r, averaged over labels. Inputs `[batch, num_labels]`."""
    pred_centered = predictions - predictions.mean(0)
    label_centered = labels - labels.mean(0)
    r = (pred_centered * label_centered).sum(0) / (pred_centered.norm(dim=0) * label_centered.norm(dim=0) + eps)
    return (1 - r).mean()


REGRESSION_LOSSES = {"mse": F.mse_loss, "ccc": concordance_loss, "pearson": pearson_loss}
"""The loss of each `loss_type` (`configuration_emi.LOSS_TYPES`)."""


def regression_loss(loss_type: str, predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss named by `loss_type` (one of `REGRESSION_LOSSES`) between `[batch, num_labels]` tensors."""
    if loss_type not in REGRESSION_LOSSES:
        raise ValueError(f"Unknown loss_type {loss_type!r}; expected one of {tuple(REGRESSION_LOSSES)}.")
    return REGRESSION_LOSSES[loss_type](predictions, labels)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Column means of `[B, L]` values with per-row weights `[B]` (summing to 1)."""
    return (weights[:, None] * values).sum(0)


def weighted_regression_loss(loss_type: str, predictions: torch.Tensor, labels: torch.Tensor,
                             weights: torch.Tensor | None, eps: float = 1e-8) -> torch.Tensor:
    """`regression_loss(loss_type, predictions, labels)` with each clip (row) weighted by `weights` `[B]` (MSE,
    1 - CCC, 1 - Pearson r with weighted moments): with equal weights it is that loss, with integer weights that loss
    on the batch with each clip repeated as many times. None weights: the unweighted loss."""
    if weights is None:
        return regression_loss(loss_type, predictions, labels)
    w = weights.to(predictions.dtype)
    w = w / w.sum().clamp_min(eps)
    labels = labels.to(predictions.dtype)
    if loss_type == "mse":
        return _weighted_mean((predictions - labels) ** 2, w).mean()
    pred_centred = predictions - _weighted_mean(predictions, w)
    label_centred = labels - _weighted_mean(labels, w)
    covariance = _weighted_mean(pred_centred * label_centred, w)
    pred_var, label_var = _weighted_mean(pred_centred ** 2, w), _weighted_mean(label_centred ** 2, w)
    if loss_type == "pearson":
        return (1 - covariance / (pred_var.sqrt() * label_var.sqrt() + eps)).mean()
    if loss_type == "ccc":
        bias = (_weighted_mean(predictions, w) - _weighted_mean(labels, w)) ** 2
        return (1 - 2 * covariance / (pred_var + label_var + bias + eps)).mean()
    return regression_loss(loss_type, predictions, labels)  # raises the unknown-loss error


@dataclass(frozen=True)
class LossReduction:
    """
    How the models' `labels` loss (`clip_loss`) reduces over clips; set for a block of code with `loss_reduction`.

    Args:
        weights: per-clip loss weights `[B]` of the clips of the forward call (None: equal).
        gather: with several processes each holding a slice of one global batch, a function that concatenates a
            tensor `[b, ...]` of every process along dim 0 in process order (`accelerate.Accelerator.gather`; every
            process's slice must have the same size `b`). The loss is then that of the whole global batch: the same
            value on every process, differentiable in this process's slice; backpropagate `loss * num_processes`
            so that DDP's gradient averaging yields the gradient of the global loss. None: the clips of this call.
        process_index: this process's place in the gathered tensors.
    """

    weights: torch.Tensor | None = None
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None
    process_index: int = 0


_LOSS_REDUCTION: contextvars.ContextVar[LossReduction | None] = contextvars.ContextVar("emi_loss_reduction",
                                                                                         default=None)


@contextlib.contextmanager
def loss_reduction(weights: torch.Tensor | None = None, gather: Callable | None = None, process_index: int = 0):
    """Within the block, the `labels` loss of every emi-hf model forward reduces as `LossReduction(weights, gather,
    process_index)` says (per-clip weights, the global batch of several processes). The training loop runs each
    step in one; outside one, a model's loss is the plain loss over the clips of its call."""
    token = _LOSS_REDUCTION.set(LossReduction(weights, gather, process_index))
    try:
        yield
    finally:
        _LOSS_REDUCTION.reset(token)


def clip_loss(loss_type: str, intensities: torch.Tensor, labels: torch.Tensor, clip_mask: torch.Tensor) -> torch.Tensor:
    """
    The models' `labels` loss: `loss_type` between clip intensities `[B, L]` and labels `[B, L]`, over the clips that
    have the modality (`clip_mask` `[B]`) and finite labels (an unlabeled clip is left out), in float32, reduced as
    the enclosing `loss_reduction` says (default: over these clips, unweighted). No clip to learn from: a zero that
    keeps every parameter in the graph.
    """
    reduction = _LOSS_REDUCTION.get() or LossReduction()
    intensities = intensities.float()
    labels = labels.to(intensities.device).float()
    valid = clip_mask.bool() & torch.isfinite(labels).all(dim=1)
    predictions = torch.where(valid[:, None], intensities, torch.zeros_like(intensities))
    labels = torch.where(valid[:, None], labels, torch.zeros_like(labels))
    weights = reduction.weights
    if reduction.gather is not None:
        rank, size = reduction.process_index, predictions.shape[0]
        gathered = reduction.gather(predictions.detach())
        predictions = torch.cat([gathered[: rank * size], predictions, gathered[(rank + 1) * size :]])
        labels = reduction.gather(labels)
        valid = reduction.gather(valid.to(torch.uint8)).bool()  # uint8: gloo gathers no bool tensors
        weights = None if weights is None else reduction.gather(weights)
    if not bool(valid.any()):
        return predictions.nan_to_num(0.0).sum() * 0.0
    return weighted_regression_loss(loss_type, predictions[valid], labels[valid],
                                    None if weights is None else weights[valid])


_masked_loss = clip_loss  # the name of earlier versions


# ----------------------------------------------------------------------------------------------------------------------
# Temporal encoder: TCN (short range) + Transformer encoder (long range)
# ----------------------------------------------------------------------------------------------------------------------


def sinusoidal_positions(num_frames: int, hidden_size: int, device, dtype) -> torch.Tensor:
    """Fixed sinusoidal encodings `[num_frames, hidden_size]` of frame indices, for any length (no maximum)."""
    positions = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    half = hidden_size // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = positions * frequencies[None]
    encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if encoding.shape[-1] < hidden_size:
        encoding = F.pad(encoding, (0, hidden_size - encoding.shape[-1]))
    return encoding.to(dtype)


class TemporalConvBlock(GradientCheckpointingLayer):
    """Residual block of two dilated, non-causal 1-D convolutions over frames; masked frames stay zero."""

    def __init__(self, hidden_size: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(hidden_size, hidden_size, kernel_size, dilation=dilation, padding=padding)
        self.conv2 = nn.Conv1d(hidden_size, hidden_size, kernel_size, dilation=dilation, padding=padding)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `[batch, frames, hidden]`, `frame_mask` `[batch, frames, 1]` (float 0/1)."""
        x = self.conv1((hidden_states * frame_mask).transpose(1, 2)).transpose(1, 2)
        x = F.gelu(self.norm1(x)) * frame_mask
        x = self.conv2(x.transpose(1, 2)).transpose(1, 2)
        x = F.gelu(self.norm2(x))
        # One dropout per block: on the CPU, drawing dropout masks costs as much as a convolution.
        return (hidden_states + self.dropout(x)) * frame_mask


ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
"""Attention implementations of the temporal encoder (`config._attn_implementation`; None means "sdpa")."""


def eager_attention_forward(query, key, value, allowed):
    """Softmax attention written out: `query` / `key` / `value` `[batch, heads, frames, head_dim]`, `allowed`
    `[batch, 1, 1, frames]` (True = attend). Returns the output and the weights `[batch, heads, frames, frames]`."""
    scores = (query @ key.transpose(-1, -2)) / math.sqrt(query.shape[-1])
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return weights @ value, weights


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask: `scaled_dot_product_attention` ("sdpa", the default), or
    the eager path ("eager", or whenever the attention weights are asked for), which also returns the weights."""

    def __init__(self, config):
        super().__init__()
        self.config = config  # read at every call: `_attn_implementation` can change (`set_attn_implementation`)
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, key_padding_mask: torch.Tensor, output_attentions: bool = False):
        """Returns the output `[batch, frames, hidden]` and the weights `[batch, heads, frames, frames]` (None unless
        `output_attentions` or the eager implementation)."""
        batch, frames, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, frames, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [batch, heads, frames, head_dim]
        allowed = ~key_padding_mask[:, None, None, :]  # True = attend
        implementation = getattr(self.config, "_attn_implementation", None) or "sdpa"
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation {implementation!r} is not supported by the temporal encoder; use "
                             f"one of {ATTENTION_IMPLEMENTATIONS}.")
        if output_attentions or implementation == "eager":
            attended, weights = eager_attention_forward(query, key, value, allowed)
        else:
            attended, weights = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed), None
        return self.out_proj(attended.transpose(1, 2).reshape(batch, frames, width)), weights


class TransformerEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer encoder layer with a key padding mask."""

    def __init__(self, config):
        super().__init__()
        hidden_size, intermediate_size = config.hidden_size, config.intermediate_size
        self.self_attn = SelfAttention(config)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, hidden_size)
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor, key_padding_mask: torch.Tensor, output_attentions: bool = False):
        """`hidden_states` `[batch, frames, hidden]`; `key_padding_mask` `[batch, frames]`, True = ignore. Returns the
        new hidden states and the attention weights (see `SelfAttention`)."""
        attended, weights = self.self_attn(self.norm1(hidden_states), key_padding_mask, output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.feed_forward(self.norm2(hidden_states))), weights


def window_starts(length: int, window: int) -> list[int]:
    """
    Where the windows of `window` frames over a sequence of `length` frames start: `[0]` when `length <= window`;
    else `n = ceil((length - window) / (window // 2)) + 1` windows whose starts are spread evenly (rounded down)
    from 0 to `length - window`: consecutive windows overlap by at least half, the last ends with the sequence.
    """
    if length <= window:
        return [0]
    count = -(-(length - window) // max(window // 2, 1)) + 1
    return [(k * (length - window)) // (count - 1) for k in range(count)]


def stitch_weights(window: int, device, dtype) -> torch.Tensor:
    """The weight `[window]` of each position of a window when overlapping windows are combined: triangular,
    `min(j + 1, window - j)` (1 at the edges, where the convolutions saw padding and attention half the context;
    largest in the middle)."""
    positions = torch.arange(window, device=device)
    return torch.minimum(positions + 1, window - positions).to(dtype)


def valid_lengths(frame_mask: torch.Tensor) -> torch.Tensor:
    """`[batch]` the index of each clip's last valid frame plus one (0 for a clip without one): its length, whatever
    padding the batch adds (trailing masked frames change nothing in the encoder, so they count as padding)."""
    positions = torch.arange(1, frame_mask.shape[1] + 1, device=frame_mask.device)
    return (frame_mask.long() * positions).amax(dim=1)


class _Windows:
    """The windows of a batch (`window_starts` per clip, from its `valid_lengths`) and how their outputs are put back
    on the clips' frames: the stitch-weighted mean of the windows covering each frame (`stitch_weights`, valid
    frames only; zero at masked frames)."""

    def __init__(self, frame_mask: torch.Tensor, lengths: list[int], window: int):
        device = frame_mask.device
        pairs = [(clip, start) for clip, length in enumerate(lengths) for start in window_starts(length, window)]
        self.clips = [clip for clip, _ in pairs]
        self.starts = [start for _, start in pairs]
        self.batch, self.frames, self.window = frame_mask.shape[0], frame_mask.shape[1], window
        self.clip_index = torch.tensor(self.clips, device=device)[:, None]  # [N, 1]
        self.positions = torch.tensor(self.starts, device=device)[:, None] + torch.arange(window, device=device)
        self.mask = frame_mask[self.clip_index, self.positions]  # [N, window]
        self.flat = (self.clip_index * self.frames + self.positions).reshape(-1)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """`[batch, frames, ...]` -> the windows' `[N, window, ...]`."""
        return values[self.clip_index, self.positions]

    def _weights(self, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        weights = stitch_weights(self.window, self.mask.device, dtype)[None] * self.mask.to(dtype)  # [N, window]
        total = torch.zeros(self.batch * self.frames, device=weights.device, dtype=dtype)
        total = total.index_add(0, self.flat, weights.reshape(-1)).clamp(min=1.0)  # every valid frame has >= 1
        return weights, total

    def stitch(self, values: torch.Tensor) -> torch.Tensor:
        """The windows' `[N, window, hidden]` -> `[batch, frames, hidden]`."""
        weights, total = self._weights(values.dtype)
        width = values.shape[-1]
        summed = torch.zeros(self.batch * self.frames, width, device=values.device, dtype=values.dtype)
        summed = summed.index_add(0, self.flat, (values * weights[..., None]).reshape(-1, width))
        return (summed / total[:, None]).view(self.batch, self.frames, width)

    def stitch_attention(self, weights_per_window: torch.Tensor) -> torch.Tensor:
        """The windows' attention `[N, heads, window, window]` -> `[batch, heads, frames, frames]`: row i is the
        stitch-weighted mixture of the rows of frame i in the windows covering it (a distribution over the frames of
        those windows; zero elsewhere)."""
        weights, total = self._weights(weights_per_window.dtype)
        heads, span = weights_per_window.shape[1], self.window
        out = weights_per_window.new_zeros(self.batch, heads, self.frames, self.frames)
        for n, (clip, start) in enumerate(zip(self.clips, self.starts)):
            rows = weights_per_window[n] * weights[n][None, :, None]
            out[clip, :, start : start + span, start : start + span] += rows
        return out / total.view(self.batch, 1, self.frames, 1)


class TemporalEncoder(nn.Module):
    """
    TCN blocks (one per dilation) then a Transformer encoder, over `[batch, frames, hidden]` with a frame mask.

    **Long sequences.** A clip longer than `config.temporal_window` (W, the span training showed the model) is not
    encoded in one pass, where the sinusoidal positions past W would be ones training never showed. It is cut into
    windows of W frames (`window_starts`: at least 50% overlap, evenly spread, the first at the clip's start and the
    last at its end); each window is encoded on its own, as a training crop is (positions 0..W-1, the convolutions
    padded at its edges), and each frame's output is the weighted mean of its windows' outputs (`stitch_weights`:
    triangular, so a frame counts most from the window where it is most central). The head then reads the stitched
    sequence (frame intensities, masked pooling to the clip intensity, `pooler_output`) as it reads an unwindowed
    one. A clip's length is its last valid frame (`valid_lengths`), so a batch's padding changes nothing: each clip
    gets the windows it gets alone. Clips of at most W frames, and every batch whose clips all are, take the plain
    single pass unchanged (bit for bit as before). Windowed, `hidden_states` are each layer's outputs stitched the
    same way and `attentions` each layer's window attentions stitched row by row (`_Windows.stitch_attention`),
    both of the shapes of the plain pass.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config  # `temporal_window` is read at every call (set by training, or after loading)
        self.tcn = nn.ModuleList(
            TemporalConvBlock(config.hidden_size, config.tcn_kernel_size, dilation, config.dropout)
            for dilation in config.tcn_dilations
        )
        self.layers = nn.ModuleList(TransformerEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, frame_mask: torch.Tensor, output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """
        `hidden_states` `[batch, frames, hidden]` (the projected inputs), `frame_mask` `[batch, frames]` bool.

        Returns a `BaseModelOutput`: `last_hidden_state` `[batch, frames, hidden]` (after the final norm, zero at
        masked frames); with `output_hidden_states`, `hidden_states`, a tuple of `1 + len(tcn_dilations) +
        num_hidden_layers` tensors of that shape: the masked input, then the output of each TCN block and of each
        Transformer layer (before the final norm); with `output_attentions`, `attentions`, one
        `[batch, heads, frames, frames]` tensor per Transformer layer. Clips longer than `config.temporal_window`:
        windowed (see the class docstring).
        """
        window = getattr(self.config, "temporal_window", None)
        if window and hidden_states.shape[1] > window:
            lengths = valid_lengths(frame_mask).tolist()
            if max(lengths) > window:
                return self._encode_windows(hidden_states, frame_mask, _Windows(frame_mask, lengths, window),
                                            output_hidden_states, output_attentions)
        return self._encode(hidden_states, frame_mask, output_hidden_states, output_attentions)

    def _encode_windows(self, hidden_states, frame_mask, windows: _Windows, output_hidden_states: bool,
                        output_attentions: bool) -> BaseModelOutput:
        encoded = self._encode(windows.gather(hidden_states), windows.mask, output_hidden_states, output_attentions)
        return BaseModelOutput(
            last_hidden_state=windows.stitch(encoded.last_hidden_state),
            hidden_states=None if encoded.hidden_states is None else tuple(
                windows.stitch(states) for states in encoded.hidden_states),
            attentions=None if encoded.attentions is None else tuple(
                windows.stitch_attention(weights) for weights in encoded.attentions),
        )

    def _encode(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor, output_hidden_states: bool,
                output_attentions: bool) -> BaseModelOutput:
        """One pass over the whole sequence (positions 0..frames-1)."""
        mask = frame_mask[..., None].to(hidden_states.dtype)
        hidden_states = hidden_states * mask
        all_hidden = [hidden_states] if output_hidden_states else None
        for block in self.tcn:
            hidden_states = block(hidden_states, mask)
            if all_hidden is not None:
                all_hidden.append(hidden_states)
        frames, width = hidden_states.shape[1:]
        hidden_states = hidden_states + sinusoidal_positions(frames, width, hidden_states.device, hidden_states.dtype)
        # A clip with no valid frame would make attention all -inf (NaN); let it attend to everything, its output is
        # discarded by the modality mask anyway.
        key_padding_mask = ~frame_mask & frame_mask.any(dim=1, keepdim=True)
        all_attentions = [] if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, key_padding_mask, output_attentions)
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(weights)
        return BaseModelOutput(
            last_hidden_state=self.final_norm(hidden_states) * mask,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(all_attentions) if all_attentions is not None else None,
        )


class LSTMTemporalEncoder(nn.Module):
    """
    The `temporal_block="lstm"` alternative to [`TemporalEncoder`]: `config.lstm_layers` bidirectional LSTM layers of
    `config.lstm_hidden` (default `hidden_size`) per direction, the two directions projected back to `hidden_size`,
    then a LayerNorm. Each clip runs packed over its frames up to its last valid one (`valid_lengths`), so a batch's
    padding changes nothing; masked frames inside a clip (no face) are zero inputs. The LSTM has no positions, so it
    reads a clip of any length in one pass: `temporal_window` does not apply (no windows).
    """

    def __init__(self, config):
        super().__init__()
        width = int(config.lstm_hidden or config.hidden_size)
        self.layers = nn.ModuleList(
            nn.LSTM(config.hidden_size if i == 0 else 2 * width, width, batch_first=True, bidirectional=True)
            for i in range(int(config.lstm_layers))
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output_projection = nn.Linear(2 * width, config.hidden_size)
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, frame_mask: torch.Tensor, output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> BaseModelOutput:
        """`hidden_states` `[batch, frames, hidden]`, `frame_mask` `[batch, frames]` bool -> `last_hidden_state`
        `[batch, frames, hidden]` (zero at masked frames); with `output_hidden_states`, the masked input and each
        LSTM layer's output `[batch, frames, 2 * lstm_hidden]`; `attentions` None (there are none)."""
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        mask = frame_mask[..., None].to(hidden_states.dtype)
        frames = hidden_states.shape[1]
        lengths = valid_lengths(frame_mask).clamp(min=1).cpu()  # a clip without a valid frame: one (discarded)
        states = hidden_states * mask
        all_hidden = [states] if output_hidden_states else None
        for index, lstm in enumerate(self.layers):
            packed = pack_padded_sequence(states, lengths, batch_first=True, enforce_sorted=False)
            states = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=frames)[0] * mask
            if all_hidden is not None:
                all_hidden.append(states)
            if index < len(self.layers) - 1:
                states = self.dropout(states)
        last = self.final_norm(self.output_projection(self.dropout(states))) * mask
        return BaseModelOutput(last_hidden_state=last, hidden_states=None if all_hidden is None else tuple(all_hidden))


def build_temporal_encoder(config) -> nn.Module:
    """The temporal model `config.temporal_block` names (`"tcn-transformer"` when the config has no such field)."""
    block = getattr(config, "temporal_block", "tcn-transformer")
    return LSTMTemporalEncoder(config) if block == "lstm" else TemporalEncoder(config)


class IntensityHead(nn.Module):
    """Frame logits `[batch, frames, num_labels]` and masked pooling of them to clip logits `[batch, num_labels]`."""

    def __init__(self, config):
        super().__init__()
        self.pooling = config.pooling
        self.frame_head = nn.Linear(config.hidden_size, config.num_labels)
        if self.pooling == "attention":
            self.attention_scores = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        frame_logits = self.frame_head(hidden_states)
        valid = frame_mask[..., None]
        if self.pooling == "attention":
            scores = self.attention_scores(hidden_states).masked_fill(~valid, float("-inf"))
            # Clips without a valid frame: uniform weights, discarded later by the modality mask.
            scores = torch.where(valid.any(dim=1, keepdim=True), scores, torch.zeros_like(scores))
            weights = scores.softmax(dim=1)
        else:
            weights = valid.to(frame_logits.dtype)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        clip_logits = (weights * frame_logits).sum(dim=1)
        return frame_logits, clip_logits


def _finalise(frame_logits, clip_logits, frame_mask, clip_mask):
    """Sigmoid to [0, 1]; NaN where there was no valid input (frames or whole clips)."""
    nan = torch.tensor(float("nan"), dtype=frame_logits.dtype, device=frame_logits.device)
    frame_intensities = torch.where(frame_mask[..., None], frame_logits.sigmoid(), nan)
    intensities = torch.where(clip_mask[:, None], clip_logits.sigmoid(), nan)
    return intensities, frame_intensities


# ----------------------------------------------------------------------------------------------------------------------
# Weight initialisation of a pretrained sub-model on load
# ----------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def init_submodel_on_load(submodel: nn.Module) -> None:
    """
    Initialises, after `from_pretrained`, the weights of a transformers sub-model (the speech encoder) that transformers
    leaves out for custom-code models: the rules of its containers (modules without parameters of their own, e.g.
    wav2vec2's feature projection and positional convolution) and weight-normed convolutions (whose parameters its
    own rule misses), drawn as in `Model(config)`. Loaded tensors (flagged `_is_hf_initialized`) are left alone.
    """
    from torch.nn.utils import parametrize
    from transformers import initialization as init

    for module in submodel.modules():
        if parametrize.is_parametrized(module, "weight") and hasattr(module.parametrizations.weight, "original1"):
            weights = module.parametrizations.weight
            magnitude, direction = weights.original0, weights.original1
            if not getattr(direction, "_is_hf_initialized", False):
                init.kaiming_uniform_(direction, a=math.sqrt(5))  # nn.Conv1d's own init, as weight_norm found it
            if not getattr(magnitude, "_is_hf_initialized", False):
                init.copy_(magnitude, torch.norm_except_dim(direction, 2, getattr(weights[0], "dim", 0)))
    rule = getattr(submodel, "_init_weights", None)
    for module in submodel.modules():
        if rule is not None and not any(True for _ in module.parameters(recurse=False)):
            rule(module)
