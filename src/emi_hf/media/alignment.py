"""Five-point similarity alignment to a canonical template, giving ``face_size`` x ``face_size`` RGB crops.

The five points, in image order, are: the eye on the image's left (the subject's right eye), the eye on the
image's right, the nose tip, the mouth corner on the image's left, the mouth corner on the image's right (MTCNN's
order). They are mapped by a least-squares similarity transform (rotation, uniform scale, translation; Umeyama
1991) onto the ArcFace / InsightFace 112x112 template, scaled to ``face_size``. Pixels outside the frame are black.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "MESH_EYE_RIGHT",
    "MESH_EYE_LEFT",
    "template_points",
    "estimate_similarity",
    "align_face",
    "mesh_five_points",
]

# ArcFace (InsightFace) canonical positions for a 112x112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],  # eye, image left
        [73.5318, 51.5014],  # eye, image right
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth corner, image left
        [70.7299, 92.2041],  # mouth corner, image right
    ],
    dtype=np.float64,
)

# MediaPipe face mesh eye contours (16 points each); their mean is a gaze-independent eye centre.
MESH_EYE_RIGHT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)  # image left
MESH_EYE_LEFT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)  # image right
MESH_NOSE_TIP = 1
MESH_MOUTH_CORNERS = (61, 291)  # image left, image right


def template_points(face_size: int = 112) -> np.ndarray:
    """The five template points for a `face_size` crop (the 112 template scaled)."""
    return ARCFACE_TEMPLATE_112 * (float(face_size) / 112.0)


def estimate_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping `source` [N, 2] onto `target` [N, 2].

    Returns the 2x3 matrix ``M`` with ``target ~= source @ M[:, :2].T + M[:, 2]``. NaN rows are ignored; at least
    two finite point pairs are needed.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    keep = np.isfinite(source).all(axis=1) & np.isfinite(target).all(axis=1)
    source, target = source[keep], target[keep]
    if len(source) < 2:
        raise ValueError("a similarity transform needs at least two finite point pairs")
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mean_s, target - mean_t
    var_s = (s**2).sum() / len(source)
    if var_s < 1e-12:
        raise ValueError("degenerate landmarks (all points coincide)")
    cov = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum() / var_s)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_t - scale * rotation @ mean_s
    return matrix


def align_face(image: np.ndarray, points: np.ndarray, face_size: int = 112) -> np.ndarray:
    """Warps `image` (uint8 [H, W, 3]) so that the five `points` [5, 2] land on the template.

    Returns uint8 [face_size, face_size, 3].
    """
    matrix = estimate_similarity(points, template_points(face_size))
    return cv2.warpAffine(image, matrix, (face_size, face_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def mesh_five_points(mesh: np.ndarray) -> np.ndarray:
    """The five alignment points [5, 2] from MediaPipe face-mesh landmarks [468 or 478, >=2] (pixels)."""
    mesh = np.asarray(mesh)
    return np.stack(
        [
            mesh[list(MESH_EYE_RIGHT), :2].mean(axis=0),
            mesh[list(MESH_EYE_LEFT), :2].mean(axis=0),
            mesh[MESH_NOSE_TIP, :2],
            mesh[MESH_MOUTH_CORNERS[0], :2],
            mesh[MESH_MOUTH_CORNERS[1], :2],
        ]
    ).astype(np.float64)
