"""Synthetic audiovisual EMI data in the Hume-Vidmimic2 layout.

Real Emotional Mimicry Intensity data (Hume-Vidmimic2) cannot ship with the package, so this module generates a
stand-in that exercises the whole pipeline (decoding, face detection and alignment, AU extraction, audio features,
the temporal models, fusion and the mean-Pearson metric) and that a model can actually learn from:

- **Layout**: exactly the layout read by [`emi_hf.data.layout.load_hume_vidmimic2`]::

      output_dir/
        videos/00000.mp4 00001.mp4 ...     H.264 (yuv420p) video + AAC mono audio, one clip per id
        train_split.csv                      Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy
        valid_split.csv                      same header
        test_split.csv                       Filename only (written when num_test > 0)
        transcripts.csv                      Filename,text,source: synthetic label-dependent text, every clip
        synthetic_metadata.json              seed, generator version, mapping matrices, subjects, per-clip info

  With ``layout="challenge"`` (``emi-hf synth --layout challenge``) the test clips go to ``test_data/raw/`` without a
  ``test_split.csv``, as the challenge distributes them, drawn from their own stream so that the train and
  validation files do not change. Ids run over train, then validation, then test clips. The ``Filename`` column holds the 5-digit id without
  extension, as in the real CSV files.

- **Video**: a drawn, shaded, animated face (skin ellipse with lighting, hair, ears, neck and shoulders, brows,
  eyes with whites, irises, pupils and lids, nose shadows and nostrils, lips, inner mouth and teeth) on a textured
  per-subject background, drawn with OpenCV (anti-aliased, sub-pixel) and moved by a similarity warp (head roll,
  nod, sway and small yaw), with blinks and gaze shifts. Default 256x256 at 25 fps. Measured with generator 1.0.0
  on 500 frames of 100 subjects (256x256; also 30 subjects each at 128x128 and 320x240): facenet-pytorch MTCNN
  (probability >= 0.9, IoU > 0.4 with the drawn face) 100 %, MediaPipe face detection (short- and full-range
  models) 100 %, MediaPipe face mesh 100 %, no false detections in the backgrounds. ``tests/test_synthetic.py``
  checks this on 16 frames.
- **Audio**: a source-filter synthetic voice: Rosenberg glottal pulses at a time-varying pitch, five-vowel formant
  filter bank, syllable-rate amplitude modulation with pauses, consonant noise bursts, aspiration, tremor, laughter
  bouts, over a constant room-noise floor (so that loudness survives per-clip normalisation as a signal-to-noise
  ratio). The lips move with the syllable envelope, so the two streams are in sync. AAC at 24 kHz by default
  (``sample_rate``), so readers exercise their resampling to 16 kHz.

**Labels.** Six intensities in [0, 1] per clip, in the order of ``EMOTION_NAMES``. They come from a Gaussian
copula (correlation matrix ``LABEL_CORRELATION``: Joy-Amusement 0.6, Joy-Admiration 0.35, Joy-Excitement 0.35,
Empathic Pain negatively correlated with Joy and Amusement, ...) with Beta(1.3, 2.2) marginals (mean ~0.37).

**Mapping.** Per clip, with ``y`` the label vector::

    face(t)  = clip(neutral_face[subject]  + expressiveness[subject] * envelope(t) * (FACE_MAPPING  @ y) + noise(t))
    voice(t) = clip(neutral_voice[subject] + expressiveness[subject] * envelope(t) * (VOICE_MAPPING @ y) + noise(t))

``envelope(t)`` is a smooth onset (at 10-35 % of the clip, 0.25-0.6 s rise) to an apex, then a partial offset in
some clips, so the expression changes within the clip and temporal models have something to use. The noise is a
slow random walk per parameter plus a per-clip offset. Rows of the matrices are the expression parameters
(``FACE_PARAMETER_NAMES``, ``VOICE_PARAMETER_NAMES``), columns the emotions:

================  =====  =====  =====  =====  =====  =====
face parameter     Adm    Amu    Det    EmP    Exc    Joy
================  =====  =====  =====  =====  =====  =====
smile (AU12)       .30    .45    .      -.10   .10    .75
mouth_open (AU26)  .10    .55    .      .      .10    .15
brow_raise (AU1+2) .70    .05    -.05   .      .10    .05
brow_inner_up      .      .      .      .20    .      .
brow_lower (AU4)   .      .      .20    .05    .      .
eye_open (AU5/7)   .55    -.20   -.10   -.05   .15    -.15
cheek_raise (AU6)  .10    .40    .      .      .      .60
lip_corner_down    .      .      .10    .15    .      -.10
head_motion        .      .25    .05    .      .20    .10
================  =====  =====  =====  =====  =====  =====

================  =====  =====  =====  =====  =====  =====
voice parameter    Adm    Amu    Det    EmP    Exc    Joy
================  =====  =====  =====  =====  =====  =====
pitch              .10    .20    -.10   -.45   .80    .15
pitch_range        .15    .20    .      -.30   .75    .10
loudness           .      .10    .80    -.45   .55    .05
speech_rate        -.15   .10    .35    -.60   .75    .05
tremor             .      .      .10    .90    .      .
breathiness        .35    .10    -.30   .55    .      .
tension            .      .      .85    .      .30    .
laughter           .      .50    .      .      .10    .15
================  =====  =====  =====  =====  =====  =====

So Joy, Amusement and Admiration show mostly in the face, Excitement, Determination and Empathic Pain mostly in
the voice (column-norm shares in ``modality_shares()``), with partial overlap: neither modality alone explains
all six, and fusion helps. As a guide (generator 1.0.0, 160 clips, 5-fold ridge regression on the *drawn*
parameters averaged over the second half of each clip, Pearson r per emotion Adm/Amu/Det/EmP/Exc/Joy): face
parameters .84/.85/.36/.55/.46/.90, voice parameters .49/.76/.86/.84/.80/.69, both .84/.86/.86/.86/.82/.89. Models
see pixels and waveforms, not these parameters, so their scores are lower.

**Transcripts.** ``transcripts.csv`` (``Filename,text,source``, read by
[`emi_hf.text.transcript_files.read_transcripts`]) gives every clip, test clips included, one or two short
English-looking sentences of 8-18 word slots (``transcripts.synthetic_transcript``). Each slot is a filler word
("the", "and", "so", "today", "we", "video", ... 40 words) with probability 0.35; otherwise a word or phrase of one
emotion's lexicon, that emotion drawn uniformly at random with probability 0.2 (noise) and else with probability
proportional to ``y_e**2 + 0.01``. The lexicons share no token with each other nor with the filler:

==============  ========================================================================================
emotion         lexicon
==============  ========================================================================================
Admiration      impressive, brilliant, respect, talented, masterful, incredible skill, admire, remarkable,
                well done
Amusement       funny, hilarious, joke, haha, laughing, silly, ridiculous, giggling, lol
Determination   will, must, focus, never give up, keep pushing, stronger, fight, push, commit
Empathic Pain   sorry, hurts, painful, sad, poor soul, suffering, heartbreaking, tears, awful
Excitement      wow, amazing, can't wait, omg, awesome, thrilling, epic, let's go, insane
Joy             happy, wonderful, love, smile, delighted, glad, lovely, cheerful, sunshine
==============  ========================================================================================

So the text is a third, moderately informative modality whose noise is independent of face and voice: a
bag-of-words ridge regression (lambda 10) trained on the 160 train clips of seed 0 reaches a mean Pearson r of
about 0.42 on the 80 validation clips (0.35-0.48 over seeds 0-7). The text is not speech of the clip (the voice
says no words) and every row is labelled as made up: its ``source`` column reads ``synthetic: label-dependent
template (emi_hf.data.synthetic.transcripts)``. A set generated before transcripts existed gets the file on the
next ``generate_synthetic_dataset`` call with the same arguments, without re-rendering.

**Subjects.** Each clip has a subject (skin tone, face size and shape, eye spacing, hair style and colour, clothing,
background, base pitch, formant scale, neutral expression and voice offsets, expressiveness). Train, validation
and test use disjoint subject pools, as in a subject-independent split.

**Usage**::

    from emi_hf.data.synthetic import generate_synthetic_dataset, render_clip
    generate_synthetic_dataset("synthetic", num_train=160, num_valid=80, seed=0, num_workers=2)
    clip = render_clip([0.2, 0.8, 0.1, 0.0, 0.3, 0.9], seed=1)   # frames [50, 256, 256, 3], waveform [48000]

or ``emi-hf synth synthetic --num-train 160 --num-valid 80``. Rendering plus encoding costs about 0.12 s of CPU
per 2 s clip at 256x256 (about 8 clips/s per core; worker processes add a few seconds of start-up each).

**Determinism.** Everything derives from ``seed`` through ``numpy.random.SeedSequence``: labels and subjects from
``(seed, LABELS_STREAM)`` = ``(seed, 0)``, clip ``i`` from ``(seed, CLIPS_STREAM, i)`` = ``(seed, 1, i)``, so the
result does not depend on ``num_workers``; clip ``i``'s transcript from its own stream ``(seed, TRANSCRIPT_STREAM,
i)`` = ``(seed, 3, i)``, so the transcripts change nothing else. Rendered frames and waveforms are bit-identical for a given seed on the
same platform; the encoded files are too in practice (single-threaded x264, no timestamps in the container), though
that also depends on the FFmpeg build.

**Modules**: ``labels`` (parameter names, mappings, label distribution, expression time course), ``subjects``,
``face`` (the renderer), ``voice`` (the source-filter voice), ``clip`` (one clip: render and encode),
``transcripts`` (lexicons and the label-dependent text), ``dataset`` (the data-set writer and its worker
processes).
"""

from .clip import CONTROL_RATE, SyntheticClip, frame_size, render_clip, write_clip
from .dataset import CLIPS_STREAM, GENERATOR_VERSION, LABELS_STREAM, SPLIT_FILES, generate_synthetic_dataset
from .face import FaceRenderer
from .labels import (
    FACE_MAPPING,
    FACE_PARAMETER_NAMES,
    FACE_RANGE,
    LABEL_BETA,
    LABEL_CORRELATION,
    VOICE_MAPPING,
    VOICE_PARAMETER_NAMES,
    VOICE_RANGE,
    modality_shares,
    sample_labels,
)
from .subjects import SyntheticSubject, sample_subject
from .transcripts import (
    EMOTION_LEXICONS,
    FILLER_WORDS,
    TRANSCRIPT_SOURCE,
    TRANSCRIPT_STREAM,
    TRANSCRIPTS_FILE,
    synthetic_transcript,
    write_synthetic_transcripts,
)
from .voice import synthesize_voice

__all__ = [
    "CLIPS_STREAM",
    "CONTROL_RATE",
    "EMOTION_LEXICONS",
    "FACE_MAPPING",
    "FACE_PARAMETER_NAMES",
    "FACE_RANGE",
    "FILLER_WORDS",
    "GENERATOR_VERSION",
    "LABELS_STREAM",
    "LABEL_BETA",
    "LABEL_CORRELATION",
    "SPLIT_FILES",
    "TRANSCRIPTS_FILE",
    "TRANSCRIPT_SOURCE",
    "TRANSCRIPT_STREAM",
    "VOICE_MAPPING",
    "VOICE_PARAMETER_NAMES",
    "VOICE_RANGE",
    "FaceRenderer",
    "SyntheticClip",
    "SyntheticSubject",
    "frame_size",
    "generate_synthetic_dataset",
    "modality_shares",
    "render_clip",
    "sample_labels",
    "sample_subject",
    "synthesize_voice",
    "synthetic_transcript",
    "write_clip",
    "write_synthetic_transcripts",
]
