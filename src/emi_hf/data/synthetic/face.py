"""The synthetic face renderer: a drawn, shaded, animated face on a textured per-subject background (OpenCV,
anti-aliased, sub-pixel), moved by a similarity warp (head roll, nod, sway and small yaw).

[`FaceRenderer`] draws a subject's static background and head base once, then the moving features (brows, eyes
with whites, irises, pupils and lids, nose, nasolabial folds, lips, inner mouth and teeth) frame by frame.
"""

from __future__ import annotations

import numpy as np

from .subjects import SyntheticSubject

_SHIFT = 4  # OpenCV fixed-point sub-pixel bits
_SCALE = float(1 << _SHIFT)
_BROW_T = np.linspace(0, 1, 9)  # inner -> outer end of a brow
_EYE_T = np.linspace(-1, 1, 15)  # eye corner to corner
_MOUTH_S = np.linspace(-1, 1, 21)  # mouth corner to corner
_FOLD_T = np.linspace(0, 1, 8)
_FOREHEAD_U = np.linspace(-0.3, 0.3, 9)


def _fixed(x, y):
    """Fixed-point pixel coordinates for OpenCV drawing with ``shift=_SHIFT``: a tuple for a point, else [N, 2]."""
    if np.ndim(x) == 0 and np.ndim(y) == 0:
        return int(round(float(x) * _SCALE)), int(round(float(y) * _SCALE))
    points = np.empty(np.broadcast(x, y).shape + (2,), np.float64)
    points[..., 0], points[..., 1] = x, y
    return np.rint(points * _SCALE).astype(np.int32)


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(round(float(v))) for v in np.clip(c, 0, 255))


def _gauss(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (u * u + v * v))


class FaceRenderer:
    """Draws one subject: a static background and head base once, then the moving features frame by frame."""

    def __init__(self, subject: SyntheticSubject, width: int, height: int):
        import cv2

        self.cv2 = cv2
        self.subject = subject
        self.width, self.height = width, height
        self.b = subject.face_scale * height
        self.a = self.b * subject.face_aspect
        self.cx = width / 2 + subject.face_offset[0] * width
        self.cy = height * 0.47 + subject.face_offset[1] * height
        self.skin = np.array(subject.skin_rgb)
        self.hair = np.array(subject.hair_rgb)
        self.lip = np.array(subject.lip_rgb)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        self.uu = (xs - self.cx) / self.a
        self.vv = (ys - self.cy) / self.b
        self.background = self._draw_background()
        self.base, self.alpha = self._draw_head_base()
        ys, xs = np.nonzero(self.alpha > 0)
        x0, x1, y0, y1 = xs.min() - 1.0, xs.max() + 2.0, ys.min() - 1.0, ys.max() + 2.0
        self.head_corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]])
        skin, lip, iris = self.skin, self.lip, np.array(subject.iris_rgb)
        self.colours = {
            "brow": _rgb(self.hair * 0.75), "lower_lid": _rgb(skin * 0.6), "crease": _rgb(skin * 0.68),
            "ala": _rgb(skin * 0.62), "nostril": _rgb(skin * 0.35), "nose_tip": _rgb(np.minimum(skin * 1.12 + 8, 255)),
            "lip": _rgb(lip), "lip_shine": _rgb(np.minimum(lip * 1.2 + 10, 255)), "lip_line": _rgb(lip * 0.45),
            "iris": _rgb(iris), "iris_ring": _rgb(iris * 0.5),
        }  # fmt: skip

    # coordinates: u in [-1, 1] across the face width, v in [-1, 1] from the top of the head to the chin
    def _xy(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        return self.cx + np.asarray(u) * self.a, self.cy + np.asarray(v) * self.b

    def _poly(self, u, v) -> np.ndarray:
        return _fixed(*self._xy(u, v))

    def _draw_background(self) -> np.ndarray:
        cv2, W, H = self.cv2, self.width, self.height
        rng = np.random.default_rng(self.subject.background_seed)
        base = np.array(self.subject.background_rgb, np.float32)
        coarse = rng.uniform(-1, 1, (4, 4, 1)) + 0.35 * rng.uniform(-1, 1, (4, 4, 3))  # mostly brightness
        low = cv2.resize(coarse.astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
        grain = cv2.resize(rng.normal(0, 1, (H // 4, W // 4, 3)).astype(np.float32), (W, H),
                           interpolation=cv2.INTER_LINEAR)  # fmt: skip
        img = base + 28 * low + 6 * grain
        img *= (1.08 - 0.25 * np.linspace(0, 1, H, dtype=np.float32))[:, None, None]
        img = np.clip(img, 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(2, 5))):  # furniture, frames, shelves: soft-edged rectangles
            x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H // 2))
            w, h = int(rng.integers(W // 10, W // 2)), int(rng.integers(H // 12, H // 2))
            colour = _rgb(base * rng.uniform(0.6, 1.3) + rng.normal(0, 15, 3))
            cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), colour, -1, cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (0, 0), 1.2)
        # neck and shoulders (static: the head layer moves over them)
        a, b, cx, cy = self.a, self.b, self.cx, self.cy
        clothing = np.array(self.subject.clothing_rgb)
        cv2.ellipse(img, _fixed(cx, cy + 1.85 * b), _fixed(2.15 * a, 0.85 * b), 0, 180, 360, _rgb(clothing), -1,
                    cv2.LINE_AA, _SHIFT)  # fmt: skip
        cv2.rectangle(img, (0, int(cy + 1.85 * b)), (W, H), _rgb(clothing), -1)
        cv2.ellipse(img, _fixed(cx, cy + 1.9 * b), _fixed(1.4 * a, 0.55 * b), 0, 180, 360, _rgb(clothing * 0.8), -1,
                    cv2.LINE_AA, _SHIFT)  # fmt: skip
        neck = np.array([[-0.5, 0.3], [0.5, 0.3], [0.56, 1.3], [0.0, 1.45], [-0.56, 1.3]])
        cv2.fillPoly(img, [self._poly(neck[:, 0], neck[:, 1])], _rgb(self.skin * 0.78), cv2.LINE_AA, _SHIFT)
        cv2.ellipse(img, _fixed(cx, cy + 1.22 * b), _fixed(0.5 * a, 0.12 * b), 0, 0, 180, _rgb(self.skin * 0.7), -1,
                    cv2.LINE_AA, _SHIFT)  # fmt: skip
        return img

    def _face_outline(self, n: int = 72) -> tuple[np.ndarray, np.ndarray]:
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        u, v = np.sin(theta), -np.cos(theta)
        u = u * (1 - self.subject.jaw_taper * np.clip(v, 0, 1) ** 2)
        return u, v

    def _draw_head_base(self) -> tuple[np.ndarray, np.ndarray]:
        """Head without the moving features: hair, ears, shaded skin, eye sockets, cheek and nose shading."""
        cv2, W, H = self.cv2, self.width, self.height
        s = self.subject
        uu, vv = self.uu, self.vv
        rng = np.random.default_rng(s.background_seed + 1)
        img = np.zeros((H, W, 3), np.uint8)
        mask = np.zeros((H, W), np.uint8)
        hair_tex = cv2.resize(rng.normal(0, 1, (max(H // 16, 2), W)).astype(np.float32), (W, H),
                              interpolation=cv2.INTER_LINEAR)  # fmt: skip
        hair_shade = np.clip(1 + 0.15 * hair_tex - 0.25 * np.clip(vv + 0.2, 0, 2) + 0.25 * _gauss(
            (uu + 0.35) / 0.3, (vv + 0.85) / 0.15), 0.4, 1.6)  # fmt: skip
        hair_img = np.clip(self.hair[None, None, :] * hair_shade[..., None] + 10 * hair_tex[..., None], 0, 255)

        back = np.zeros((H, W), np.uint8)  # long hair behind the head
        if s.hair_style == 1:
            cv2.ellipse(back, _fixed(self.cx, self.cy + 0.05 * self.b), _fixed(1.25 * self.a, 1.12 * self.b), 0, 0,
                        360, 255, -1, cv2.LINE_AA, _SHIFT)  # fmt: skip
            cv2.fillPoly(back, [self._poly([-1.25, 1.25, 1.15, -1.15], [0.0, 0.0, 1.05, 1.05])], 255, cv2.LINE_AA,
                         _SHIFT)  # fmt: skip
        ears = np.zeros((H, W), np.uint8)
        for side in (-1, 1):
            cv2.ellipse(ears, _fixed(*self._xy(side * 0.97, 0.02)), _fixed(0.15 * self.a, 0.22 * self.b), 0, 0, 360,
                        255, -1, cv2.LINE_AA, _SHIFT)  # fmt: skip
        face = np.zeros((H, W), np.uint8)
        cv2.fillPoly(face, [self._poly(*self._face_outline())], 255, cv2.LINE_AA, _SHIFT)
        cap = np.zeros((H, W), np.uint8)
        grow = 1.07 if s.hair_style != 2 else 1.02
        cv2.ellipse(cap, _fixed(self.cx, self.cy - 0.02 * self.b), _fixed(grow * self.a, (grow + 0.03) * self.b),
                    0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)  # fmt: skip
        hairline = {0: -0.55, 1: -0.5, 2: -0.72}[s.hair_style] + 0.28 * uu**2 + 0.04 * np.sin(7 * uu)
        cap = (cap.astype(np.float32) * np.clip((hairline - vv) * self.b / 1.5 + 0.5, 0, 1)).astype(np.uint8)

        # skin shading: light from the upper left, darker towards the outline, eye sockets, cheekbones, nose
        r2 = uu**2 + vv**2
        shade = 1.07 - 0.3 * r2**1.5 - 0.08 * uu - 0.05 * vv
        ex, ey = s.eye_spacing, -0.12
        shade -= 0.1 * (_gauss((uu - ex) / 0.2, (vv - ey) / 0.11) + _gauss((uu + ex) / 0.2, (vv - ey) / 0.11))
        shade -= 0.1 * _gauss((uu - 0.1) / 0.05, (vv - 0.1) / 0.17)  # shadow side of the nose
        shade -= 0.06 * (_gauss((uu - 0.55) / 0.12, (vv - 0.32) / 0.18) + _gauss((uu + 0.55) / 0.12, (vv - 0.32) / 0.18))
        shade += 0.06 * _gauss(uu / 0.25, (vv + 0.55) / 0.15) + 0.05 * _gauss((uu + 0.02) / 0.04, (vv - 0.22) / 0.08)
        shade -= 0.1 * _gauss(uu / 0.12, (vv - 0.74) / 0.05)  # under the lower lip
        shade = np.clip(shade, 0.45, 1.2)
        skin_img = self.skin[None, None, :] * shade[..., None]
        blush = 0.07 * (_gauss((uu - 0.45) / 0.16, (vv - 0.2) / 0.12) + _gauss((uu + 0.45) / 0.16, (vv - 0.2) / 0.12))
        skin_img += blush[..., None] * (np.array([200.0, 60.0, 60.0]) - self.skin)[None, None, :]
        ear_img = self.skin[None, None, :] * (0.82 - 0.2 * _gauss((np.abs(uu) - 0.99) / 0.05, vv / 0.1))[..., None]

        def over(dst: np.ndarray, src: np.ndarray, m: np.ndarray) -> np.ndarray:
            w = (m.astype(np.float32) / 255.0)[..., None]
            return dst * (1 - w) + src * w

        out = np.zeros((H, W, 3), np.float32)
        out = over(out, hair_img * 0.8, back)
        out = over(out, ear_img, ears)
        out = over(out, skin_img, face)
        out = over(out, hair_img, cap)
        alpha = np.maximum.reduce([back, ears, face, cap]).astype(np.float32) / 255.0
        img = np.clip(out, 0, 255).astype(np.uint8)
        return img, alpha

    def draw_features(self, img: np.ndarray, p: np.ndarray, eye_openness: float, gaze: tuple[float, float],
                      yaw: float) -> None:  # fmt: skip
        """Draw brows, eyes, nose and mouth on ``img`` (canonical pose) for face parameters ``p``."""
        smile, mouth_open, brow_raise, brow_inner, brow_lower, eye_open, cheek, corner_down, _ = p
        du = 0.12 * yaw  # horizontal shift of the features with the head's yaw
        self._draw_brows(img, brow_raise, brow_inner, brow_lower, du)
        openness = max(0.0, (1.0 + 0.45 * eye_open - 0.3 * cheek)) * eye_openness
        for side in (-1, 1):
            self._draw_eye(img, side, openness, 0.35 * cheek, gaze, du)
        self._draw_nose(img, du * 1.5)
        self._draw_mouth(img, smile, mouth_open, cheek, corner_down, du)

    def _draw_brows(self, img: np.ndarray, brow_raise: float, brow_inner: float, brow_lower: float, du: float) -> None:
        """Eyebrows, glabella furrows (AU4) and forehead lines (AU1+2)."""
        cv2, aa, skin = self.cv2, self.cv2.LINE_AA, self.skin
        for side in (-1, 1):
            t = _BROW_T
            u = side * (0.13 + 0.03 * (1 - brow_lower) - 0.03 * brow_lower * (1 - t) + 0.47 * t) + du
            v = -0.31 - 0.06 * np.sin(np.pi * np.clip(t * 1.1, 0, 1)) + 0.03 * t
            v = v - 0.08 * brow_raise - 0.08 * brow_inner * (1 - t) ** 1.5 + 0.03 * brow_inner * t
            v = v + 0.045 * brow_lower + 0.04 * brow_lower * (1 - t)
            thick = self.subject.brow_thickness * (0.055 - 0.03 * t)
            poly = self._poly(np.concatenate([u, u[::-1]]), np.concatenate([v - thick / 2, (v + thick / 2)[::-1]]))
            cv2.fillPoly(img, [poly], self.colours["brow"], aa, _SHIFT)
        if brow_lower > 0.15:  # glabella furrows (AU4)
            colour = _rgb(skin * (1 - 0.25 * brow_lower))
            for side in (-1, 1):
                cv2.polylines(img, [self._poly([side * 0.06 + du, side * 0.05 + du], [-0.3, -0.2])], False, colour,
                              1, aa, _SHIFT)  # fmt: skip
        if brow_raise > 0.3:  # forehead lines (AU1+2)
            colour = _rgb(skin * (1 - 0.2 * brow_raise))
            for k in range(2):
                u = _FOREHEAD_U
                cv2.polylines(img, [self._poly(u + du, -0.4 - 0.05 * k + 0.08 * u**2)], False, colour, 1, aa, _SHIFT)

    def _draw_eye(self, img: np.ndarray, side: int, openness: float, lower_lift: float, gaze: tuple[float, float],
                  du: float) -> None:  # fmt: skip
        """One eye (``side`` -1 left, 1 right): white, iris, pupil and glint when open enough, then lids and crease."""
        cv2, aa, s = self.cv2, self.cv2.LINE_AA, self.subject
        ew = 0.165 * s.eye_size
        ecu, ecv = side * s.eye_spacing + du, -0.12
        t = _EYE_T
        tu = ecu + ew * t
        upper = ecv - 0.085 * s.eye_size * openness * (1 - t**2) ** 0.8 * (1 + 0.15 * side * t)
        lower = ecv + 0.06 * s.eye_size * (1 - lower_lift) * min(1.0, openness + 0.3) * (1 - t**2) ** 0.9
        if openness > 0.08:
            eye_poly = self._poly(np.concatenate([tu, tu[::-1]]), np.concatenate([upper, lower[::-1]]))
            self._draw_eyeball(img, eye_poly, self._xy(ecu + gaze[0] * 0.06, ecv + 0.005 + gaze[1] * 0.03))
            cv2.polylines(img, [self._poly(tu, lower)], False, self.colours["lower_lid"], 1, aa, _SHIFT)
        # upper lid, lashes and crease
        lid = max(1, int(round(self.a * 0.035)))
        cv2.polylines(img, [self._poly(tu, upper)], False, (25, 18, 16), lid, aa, _SHIFT)
        crease = upper - 0.05 - 0.02 * openness * (1 - t**2)
        cv2.polylines(img, [self._poly(tu[2:-2], crease[2:-2])], False, self.colours["crease"], 1, aa, _SHIFT)

    def _draw_eyeball(self, img: np.ndarray, eye_poly: np.ndarray, iris_xy: tuple[float, float]) -> None:
        """The white of the eye inside ``eye_poly`` (fixed point), then iris, pupil and glint at ``iris_xy``
        (pixels), clipped to the eye opening."""
        cv2, aa = self.cv2, self.cv2.LINE_AA
        x0, y0 = (eye_poly.min(0) >> _SHIFT) - 2
        x1, y1 = (eye_poly.max(0) >> _SHIFT) + 3
        x0, y0 = max(int(x0), 0), max(int(y0), 0)
        x1, y1 = min(int(x1), self.width), min(int(y1), self.height)
        roi = img[y0:y1, x0:x1]
        cv2.fillPoly(img, [eye_poly], (236, 232, 226), aa, _SHIFT)
        iris = roi.copy()
        icx, icy = iris_xy
        org = np.array([x0, y0]) * _SCALE
        centre = tuple(int(c) for c in (np.array([icx, icy]) * _SCALE - org).round())
        r_iris = 0.085 * self.a * self.subject.eye_size
        cv2.circle(iris, centre, int(r_iris * _SCALE), self.colours["iris"], -1, aa, _SHIFT)
        cv2.circle(iris, centre, int(r_iris * _SCALE), self.colours["iris_ring"], 1, aa, _SHIFT)
        cv2.circle(iris, centre, int(0.42 * r_iris * _SCALE), (12, 10, 10), -1, aa, _SHIFT)
        glint = (centre[0] - int(0.35 * r_iris * _SCALE), centre[1] - int(0.35 * r_iris * _SCALE))
        cv2.circle(iris, glint, int(max(0.18 * r_iris, 0.8) * _SCALE), (250, 250, 250), -1, aa, _SHIFT)
        inside = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(inside, [eye_poly - org.astype(np.int32)], 255, aa, _SHIFT)
        w = inside.astype(np.float32)[..., None] / 255.0
        roi[:] = (roi * (1 - w) + iris * w).astype(np.uint8)

    def _draw_nose(self, img: np.ndarray, nu: float) -> None:
        """Alae, nostrils and the highlight of the tip, shifted by ``nu`` across the face."""
        cv2, aa = self.cv2, self.cv2.LINE_AA
        for side in (-1, 1):
            ala = self._poly(nu + side * np.array([0.045, 0.1, 0.115, 0.09, 0.05]),
                             np.array([0.08, 0.2, 0.27, 0.31, 0.31]))  # fmt: skip
            cv2.polylines(img, [ala], False, self.colours["ala"], max(1, int(self.a * 0.02)), aa, _SHIFT)
            cv2.ellipse(img, _fixed(*self._xy(nu + side * 0.055, 0.3)), _fixed(0.038 * self.a, 0.018 * self.b),
                        side * 15, 0, 360, self.colours["nostril"], -1, aa, _SHIFT)  # fmt: skip
        cv2.ellipse(img, _fixed(*self._xy(nu - 0.015, 0.25)), _fixed(0.04 * self.a, 0.025 * self.b), 0, 0, 360,
                    self.colours["nose_tip"], -1, aa, _SHIFT)  # fmt: skip

    def _draw_mouth(self, img: np.ndarray, smile: float, mouth_open: float, cheek: float, corner_down: float,
                    du: float) -> None:  # fmt: skip
        """Nasolabial folds (smile, cheek raise), then lips, inner mouth and teeth."""
        cv2, aa = self.cv2, self.cv2.LINE_AA
        fold = float(np.clip(0.4 * smile + 0.5 * cheek, 0, 1))
        mw = self.subject.mouth_width * (1 + 0.2 * max(smile, 0) + 0.05 * mouth_open - 0.1 * corner_down)
        mv = 0.52
        corner_v = mv - 0.1 * smile + 0.07 * corner_down
        if fold > 0.1:
            for side in (-1, 1):
                t = _FOLD_T
                u = du + side * (0.17 + (mw + 0.05 - 0.17) * t + 0.05 * np.sin(np.pi * t))
                v = 0.27 + (corner_v + 0.06 - 0.27) * t
                cv2.polylines(img, [self._poly(u, v)], False, _rgb(self.skin * (1 - 0.3 * fold)), 1, aa, _SHIFT)
        sgrid = _MOUTH_S
        mu = du + mw * sgrid
        bend = (corner_v - mv) * sgrid**2
        gap = 0.16 * mouth_open + 0.04 * max(smile - 0.3, 0)
        upper_outer = mv - 0.055 * (1 - sgrid**2) ** 0.7 + 0.014 * np.exp(-((sgrid / 0.12) ** 2)) + bend
        upper_inner = mv - 0.018 * mouth_open * (1 - sgrid**2) + bend
        lower_inner = mv + gap * (1 - sgrid**2) ** 0.9 + bend
        lower_outer = lower_inner + 0.07 * (1 - sgrid**2) ** 0.7 + 0.008
        lips = self._poly(np.concatenate([mu, mu[::-1]]), np.concatenate([upper_outer, lower_outer[::-1]]))
        cv2.fillPoly(img, [lips], self.colours["lip"], aa, _SHIFT)
        cv2.ellipse(img, _fixed(*self._xy(du, lower_outer[10] - 0.03)), _fixed(0.12 * self.a, 0.012 * self.b), 0, 0,
                    360, self.colours["lip_shine"], -1, aa, _SHIFT)  # fmt: skip
        if gap > 0.012:
            inner = self._poly(np.concatenate([mu, mu[::-1]]), np.concatenate([upper_inner, lower_inner[::-1]]))
            cv2.fillPoly(img, [inner], (70, 22, 28), aa, _SHIFT)
            teeth_h = np.minimum(0.05, np.maximum(lower_inner - upper_inner - 0.005, 0))
            k = slice(4, 17)
            teeth = self._poly(np.concatenate([mu[k], mu[k][::-1]]),
                               np.concatenate([upper_inner[k], (upper_inner + teeth_h)[k][::-1]]))  # fmt: skip
            cv2.fillPoly(img, [teeth], (232, 226, 214), aa, _SHIFT)
        cv2.polylines(img, [self._poly(mu, upper_inner)], False, self.colours["lip_line"], 1, aa, _SHIFT)

    def render(self, p: np.ndarray, pose: np.ndarray, eye_openness: float, gaze: tuple[float, float]
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """One RGB frame ``[H, W, 3]`` uint8 and the face box ``[4]`` (x0, y0, x1, y1) it was drawn in.

        ``pose`` = (roll degrees, dx pixels, dy pixels, scale, yaw in [-1, 1]).
        """
        cv2 = self.cv2
        roll, dx, dy, scale, yaw = pose
        layer = self.base.copy()
        self.draw_features(layer, p, eye_openness, gaze, yaw)
        centre = (float(self.cx), float(self.cy + 0.6 * self.b))
        matrix = cv2.getRotationMatrix2D(centre, float(roll), float(scale))
        matrix[:, 2] += (dx, dy)
        size = (self.width, self.height)
        # warp and blend only the region the head can cover
        cover = self.head_corners @ matrix.T
        x0, y0 = np.maximum(np.floor(cover.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(cover.max(0)).astype(int) + 1, (self.width, self.height))
        frame = self.background.copy()
        if x1 > x0 and y1 > y0:
            local = matrix.copy()
            local[:, 2] -= (x0, y0)
            roi_size = (int(x1 - x0), int(y1 - y0))
            layer = cv2.warpAffine(layer, local, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(self.alpha, local, roi_size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
            roi = frame[y0:y1, x0:x1]
            roi[:] = cv2.blendLinear(layer, np.ascontiguousarray(roi), alpha, 1.0 - alpha)
        corners = np.array([[self.cx - self.a, self.cy - self.b, 1], [self.cx + self.a, self.cy - self.b, 1],
                            [self.cx - self.a, self.cy + self.b, 1], [self.cx + self.a, self.cy + self.b, 1]])  # fmt: skip
        warped = corners @ matrix.T
        box = np.array([*warped.min(0), *warped.max(0)], np.float32)
        return frame, box
