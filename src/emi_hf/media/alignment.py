"""Five-point similarity alignment to a canonical template, giving ``face_size`` x ``face_size`` RGB crops.

The five points, in image order, are: the eye on the image's left (the subject's right eye), the eye on the
image's right, the nose tip, the mouth corner on the image's left, the mouth corner on the image's right (MTCNN's
order). They are mapped by a least-squares similarity transform (rotation, uniform scale, translation; Umeyama
1991) onto the ArcFace / InsightFace 112x112 template, scaled to ``face_size``. Pixels outside the frame are black.

``method="ffhq"`` (`FACE_ALIGNMENTS`) aligns as the FFHQ dataset did (Karras et al. 2019, its
``align_images.py``; used by the ABAW8 / ABAW10 EMI winners at 256 px): an oriented square ("quad") is built from
the eye centres and the mouth corners only (the nose is not used), its side ``max(2 x eye distance, 1.8 x
eye-to-mouth distance)`` and its centre 0.1 eye-to-mouth below the eyes' midpoint, and warped onto the crop. The
crop is looser than ArcFace's (forehead, chin and some hair are in it).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "FACE_ALIGNMENTS",
    "ffhq_quad",
    "ffhq_matrix",
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

FACE_ALIGNMENTS = ("arcface", "ffhq")
"""`ClipSettings.face_alignment`: the 5-point ArcFace template (default) or the FFHQ quad from eyes and mouth."""


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


def ffhq_quad(points: np.ndarray) -> np.ndarray:
    """The FFHQ crop square [4, 2] (top-left, bottom-left, bottom-right, top-right, in image pixels) of the five
    `points` [5, 2] (their eyes and mouth corners; see module doc)."""
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points[[0, 1, 3, 4]]).all():
        raise ValueError("FFHQ alignment needs both eyes and both mouth corners")
    eye_left, eye_right, mouth_left, mouth_right = points[0], points[1], points[3], points[4]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if norm < 1e-9:
        raise ValueError("degenerate landmarks (eyes and mouth coincide)")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    centre = eye_avg + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def ffhq_matrix(points: np.ndarray, face_size: int = 256) -> np.ndarray:
    """The 2x3 affine matrix mapping the FFHQ quad of `points` onto a `face_size` square."""
    quad = ffhq_quad(points)[:3]  # three corners fix the affine map (the quad is a square)
    corners = np.array([[0, 0], [0, face_size], [face_size, face_size]], dtype=np.float64)
    source = np.hstack([quad, np.ones((3, 1))])
    return np.linalg.solve(source, corners).T  # float64 (cv2.getAffineTransform works in float32)


def align_face(image: np.ndarray, points: np.ndarray, face_size: int = 112, method: str = "arcface") -> np.ndarray:
    """Warps `image` (uint8 [H, W, 3]) so that the five `points` [5, 2] land on the template (`method="arcface"`),
    or its FFHQ quad fills the crop (`method="ffhq"`).

    Returns uint8 [face_size, face_size, 3].
    """
    if method not in FACE_ALIGNMENTS:
        raise ValueError(f"face alignment must be one of {FACE_ALIGNMENTS}, got {method!r}")
    if method == "ffhq":
        matrix = ffhq_matrix(points, face_size)
    else:
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
