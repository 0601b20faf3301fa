"""FFHQ-style face alignment (the quad from eyes and mouth) beside the ArcFace template, and face frames at any rate
recorded in the processor config."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from emi_hf.media import ClipPipeline, ClipSettings, align_face
from emi_hf.media.alignment import ffhq_matrix, ffhq_quad

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _face_points(centre, eye_distance, mouth_drop, angle_deg):
    """Five points (eyes, nose, mouth corners) of an upright face rotated by `angle_deg` about `centre`."""
    upright = np.array([[-eye_distance / 2, 0], [eye_distance / 2, 0], [0, mouth_drop / 2],
                        [-eye_distance / 3, mouth_drop], [eye_distance / 3, mouth_drop]], dtype=np.float64)
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return upright @ rotation.T + np.asarray(centre, dtype=np.float64)


def _apply(matrix, points):
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def test_ffhq_quad_follows_the_faces_geometry():
    size, eyes, drop = 256, 40.0, 50.0
    # upright: the square's side is max(2 x eye distance, 1.8 x eye-to-mouth), its centre 0.1 eye-to-mouth below
    # the eyes' midpoint
    quad = ffhq_quad(_face_points((100, 120), eyes, drop, 0))
    side = max(2 * eyes, 1.8 * drop)
    np.testing.assert_allclose(quad.mean(axis=0), [100, 120 + 0.1 * drop], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(quad[1] - quad[0]), 2 * side, atol=1e-9)
    np.testing.assert_allclose(quad[0], [100 - side, 120 + 0.1 * drop - side], atol=1e-9)
    expected = None
    for angle, centre, scale in ((0, (100, 120), 1.0), (27, (300, 80), 1.7), (-40, (64, 250), 0.6)):
        points = _face_points(centre, eyes * scale, drop * scale, angle)
        matrix = ffhq_matrix(points, size)
        landed = _apply(matrix, points)
        # the eyes are level, the face upright and centred; rotation, position and scale do not change where the
        # landmarks land in the crop
        assert abs(landed[0, 1] - landed[1, 1]) < 1e-6 and landed[0, 0] < landed[1, 0] < size
        assert landed[3, 1] > landed[0, 1] and abs((landed[0, 0] + landed[1, 0]) / 2 - size / 2) < 1e-6
        if expected is None:
            expected = landed
        np.testing.assert_allclose(landed, expected, atol=1e-6)
    # the eyes land 0.1 eye-to-mouth (in crop pixels) above the centre
    mouth_mid = (expected[3] + expected[4]) / 2
    eye_mid = (expected[0] + expected[1]) / 2
    np.testing.assert_allclose(eye_mid[1], size / 2 - 0.1 * (mouth_mid[1] - eye_mid[1]), atol=1e-6)


def test_align_face_ffhq_moves_the_pixels_of_the_landmarks():
    image = np.zeros((400, 400, 3), np.uint8)
    points = _face_points((210, 190), 60, 70, 20)
    for x, y in points[[0, 1, 3, 4]]:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crop = align_face(image, points, 256, method="ffhq")
    assert crop.shape == (256, 256, 3)
    for x, y in _apply(ffhq_matrix(points, 256), points[[0, 1, 3, 4]]):
        assert crop[int(round(y)), int(round(x))].max() > 200  # each dot is where the matrix says
    arcface = align_face(image, points, 256)
    assert not np.array_equal(arcface, crop)  # the ArcFace template stays the default, and differs
    with pytest.raises(ValueError, match="face alignment"):
        align_face(image, points, 256, method="square")
    with pytest.raises(ValueError, match="eyes"):
        ffhq_quad(np.full((5, 2), np.nan))


def test_face_alignment_is_a_recorded_processor_setting(tmp_path):
    from emi_hf.processing_emi import EmiProcessor

    processor = EmiProcessor(face_detector="mediapipe", face_alignment="ffhq", target_fps=5, face_size=256)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert (saved["face_alignment"], saved["target_fps"], saved["face_size"]) == ("ffhq", 5.0, 256)
    again = EmiProcessor.from_pretrained(tmp_path)
    assert again.clip_settings().face_alignment == "ffhq" and again.clip_settings().target_fps == 5.0
    # a processor saved before the setting existed loads with the ArcFace template, and its cache key is unchanged
    del saved["face_alignment"]
    (tmp_path / "processor_config.json").write_text(json.dumps(saved))
    old = EmiProcessor.from_pretrained(tmp_path)
    assert old.clip_settings().face_alignment == "arcface"
    assert "face_alignment" not in old.clip_settings().result_dict()
    assert processor.clip_settings().result_dict()["face_alignment"] == "ffhq"
    with pytest.raises(Exception, match="face_alignment"):
        ClipSettings(face_alignment="square")


def test_face_frames_at_five_per_second_on_a_real_clip(media_dir):
    from emi_hf.media import probe_media

    path = media_dir / "WolfgangLanger_Pexels.mp4"
    duration = probe_media(path).duration
    clip = ClipPipeline(ClipSettings(face_detector="mediapipe", target_fps=5, face_alignment="ffhq",
                                     face_size=256, au_backend=None)).process(path, use_cache=False)
    steps = np.diff(clip.timestamps)
    assert clip.face_crops.shape[1:3] == (256, 256)
    np.testing.assert_allclose(steps, 0.2, atol=0.05)  # evenly in time, within a source frame
    span = clip.timestamps[-1] - clip.timestamps[0] + 0.2
    assert abs(clip.num_frames - 5 * span) <= 1
    if duration is not None:
        assert abs(clip.num_frames - 5 * duration) <= 2
    assert clip.face_fraction > 0.9 and clip.metadata["fps"] == 5.0
