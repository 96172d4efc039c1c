"""Procedural video worlds: an endless side-scrolling landscape, deterministic from a seed.

A world is a palette and a style (its identity) seen through a camera that pans at a constant
speed. Everything in view is textured and moves with the camera — sky clouds, a far ridge, the
ground, objects standing on it — so the true optical flow of every pixel is the camera motion,
which `camera_motion` returns as ground truth. What progresses: the terrain under the camera
never repeats, objects enter at one edge and leave at the other, and the light drifts through a
slow day cycle. Any frame is a pure function of (spec, frame index), so clips can start anywhere.
"""

from dataclasses import asdict, dataclass

import numpy as np

STYLES = {
    # style: sky top, sky horizon, ridge, ground, ground detail, object colour, object kind
    "snowy hills": ((70, 110, 170), (200, 215, 235), (150, 160, 185), (235, 238, 245), (170, 180, 200), (40, 80, 60), "pine trees"),
    "desert dunes": ((60, 120, 200), (240, 210, 160), (200, 140, 90), (225, 180, 110), (180, 130, 70), (60, 130, 70), "cacti"),
    "green meadow": ((50, 110, 210), (170, 210, 240), (60, 110, 80), (90, 170, 70), (50, 120, 40), (200, 60, 60), "red houses"),
    "volcanic plain": ((40, 20, 40), (200, 90, 50), (60, 40, 40), (50, 45, 45), (120, 50, 30), (255, 140, 40), "lava vents"),
    "alien valley": ((30, 10, 70), (180, 90, 200), (90, 40, 120), (70, 160, 150), (30, 100, 110), (250, 240, 90), "glowing crystals"),
    "autumn forest": ((90, 120, 180), (240, 190, 140), (120, 70, 40), (150, 90, 40), (100, 50, 20), (200, 80, 20), "orange trees"),
}
SPEEDS = {"slow": 1.0, "steady": 2.0, "fast": 3.0}  # camera pan in pixels per frame (at 64 px)


@dataclass(frozen=True)
class WorldSpec:
    seed: int
    height: int
    width: int
    style: str
    speed: str          # key of SPEEDS
    direction: int      # +1: camera pans right (scene moves left), -1: pans left
    hilliness: float    # terrain amplitude, fraction of the frame height
    objects_per_screen: float
    day_period: float   # frames per full light cycle
    day_phase: float

    @property
    def camera_speed(self) -> float:
        """Pixels per frame at this spec's width (speeds are defined at 64 px)."""
        return SPEEDS[self.speed] * self.width / 64

    def attributes(self) -> dict:
        attributes = asdict(self)
        attributes.update(camera_speed=self.camera_speed, objects=STYLES[self.style][6],
                          pan="right" if self.direction > 0 else "left")
        return attributes


def sample_world_spec(seed: int, height: int = 64, width: int = 64) -> WorldSpec:
    rng = np.random.default_rng(seed)
    return WorldSpec(
        seed=int(seed), height=height, width=width, style=str(rng.choice(list(STYLES))),
        speed=str(rng.choice(list(SPEEDS))), direction=int(rng.choice([-1, 1])),
        hilliness=float(rng.uniform(0.08, 0.22)), objects_per_screen=float(rng.uniform(0.8, 2.5)),
        day_period=float(rng.uniform(300, 900)), day_phase=float(rng.uniform(0, 2 * np.pi)))


# -- deterministic noise over world coordinates ------------------------------------------------

def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice point → uniform [0, 1), a fixed function of (ix, iy, seed)."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= np.uint64(seed * 0x165667B19E3779F9 % 2**64)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0**53


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1): hashed lattice values, smoothstep-interpolated."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    with np.errstate(over="ignore"):
        a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
        c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def fractal_noise(x, y, seed: int, octaves: int = 3) -> np.ndarray:
    total, weight = 0.0, 1.0
    for octave in range(octaves):
        total = total + weight * value_noise(x * 2**octave, y * 2**octave, seed + octave)
        weight /= 2
    return total / (2 - 2 ** (1 - octaves))


class World:
    def __init__(self, spec: WorldSpec):
        self.spec = spec
        names = ("sky_top", "sky_low", "ridge", "ground", "detail", "thing")
        self.colours = {name: np.array(rgb, dtype=np.float64) / 255 for name, rgb in zip(names, STYLES[spec.style])}

    def camera_x(self, frame) -> np.ndarray:
        return self.spec.direction * self.spec.camera_speed * np.asarray(frame, dtype=np.float64)

    def camera_motion(self, start: int, count: int) -> np.ndarray:
        """Ground truth: the image motion of every pixel from frame t-1 to t, as (dx, dy) pixels,
        for frames start … start+count-1 (the scene moves opposite to the camera)."""
        motion = np.zeros((count, 2))
        motion[:, 0] = -self.spec.direction * self.spec.camera_speed
        return motion

    def light(self, frame: int) -> float:
        """The slow day cycle: a brightness factor in [0.84, 1.0]."""
        return 0.92 + 0.08 * np.sin(2 * np.pi * frame / self.spec.day_period + self.spec.day_phase)

    def render(self, start: int, count: int) -> np.ndarray:
        """Frames start … start+count-1 as uint8 [count, H, W, 3]."""
        return np.stack([self.render_frame(start + i) for i in range(count)])

    def render_frame(self, frame: int) -> np.ndarray:
        s, c = self.spec, self.colours
        h, w, scale = s.height, s.width, s.width / 64
        xs = np.arange(w) + self.camera_x(frame)          # world x of every column
        y = np.arange(h)[:, None].astype(np.float64)
        X = np.broadcast_to(xs, (h, w))
        Y = np.broadcast_to(y, (h, w))
        # sky: gradient, clouds drifting with the camera
        t = (y / h)[..., None]
        image = c["sky_top"] * (1 - t) + c["sky_low"] * t
        image = np.broadcast_to(image, (h, w, 3)).copy()
        clouds = fractal_noise(X / (14 * scale), Y / (7 * scale), s.seed + 11)
        image += (np.clip(1.6 * clouds - 0.5, 0, 1) * 0.7)[..., None] * (1 - image)
        # far ridge and ground: heights from 1-D noise along the world x axis
        ridge_top = h * (0.42 + 0.12 * (fractal_noise(xs / (30 * scale), np.zeros(w), s.seed + 21) - 0.5) * 2)
        ground_top = h * (0.62 + s.hilliness * (fractal_noise(xs / (24 * scale), np.zeros(w), s.seed + 31) - 0.5) * 2)
        ridge_mask = Y >= ridge_top[None]
        ridge_tex = fractal_noise(X / (5 * scale), Y / (5 * scale), s.seed + 41)
        image[ridge_mask] = (c["ridge"] * (0.75 + 0.5 * ridge_tex[..., None]))[ridge_mask]
        ground_mask = Y >= ground_top[None]
        # contrast-stretched grain: texture everywhere, so optical flow is measurable everywhere
        grain = np.clip(2.5 * fractal_noise(X / (3 * scale), Y / (3 * scale), s.seed + 51) - 0.75, 0, 1)[..., None]
        depth = np.clip((Y - ground_top[None]) / (h * 0.4), 0, 1)[..., None]
        ground = c["ground"] * (1 - 0.55 * grain) + c["detail"] * 0.55 * grain
        image[ground_mask] = (ground * (0.85 + 0.3 * depth))[ground_mask]
        self._draw_objects(image, xs, X, Y, frame)
        image *= self.light(frame)
        return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)

    def _draw_objects(self, image, xs, X, Y, frame):
        """Objects stand on the ground at hashed world positions: one slot per `spacing` pixels,
        occupied with a probability that gives `objects_per_screen` on average."""
        s, c = self.spec, self.colours
        h, w, scale = s.height, s.width, s.width / 64
        spacing = 16 * scale
        occupied = min(1.0, s.objects_per_screen * spacing / w)
        first, last = int(np.floor(xs.min() / spacing)) - 1, int(np.floor(xs.max() / spacing)) + 1
        slots = np.arange(first, last + 1)
        with np.errstate(over="ignore"):
            present = _hash(slots, np.zeros_like(slots), s.seed + 61) < occupied
            jitter = _hash(slots, np.ones_like(slots), s.seed + 62)
            size = 0.6 + 0.8 * _hash(slots, np.full_like(slots, 2), s.seed + 63)
        for slot, here, j, k in zip(slots, present, jitter, size):
            if not here:
                continue
            cx = (slot + 0.2 + 0.6 * j) * spacing
            base = h * (0.62 + s.hilliness * (fractal_noise(np.array([cx / (24 * scale)]), np.zeros(1), s.seed + 31)[0] - 0.5) * 2)
            half, tall = 3.5 * scale * k, 13 * scale * k
            # a soft-edged triangle: width shrinking linearly to the top
            rise = (base - Y) / tall
            inside = (rise >= 0) & (rise <= 1) & (np.abs(X - cx) <= half * (1 - rise) + 0.5)
            if inside.any():
                shade = 0.8 + 0.4 * fractal_noise(X / (2 * scale), Y / (2 * scale), s.seed + 71)[..., None]
                image[inside] = (c["thing"] * shade)[inside]


def caption(spec: WorldSpec, seed: int = 0) -> str:
    """A caption of the world's attributes in one of several wordings (chosen by `seed`)."""
    rng = np.random.default_rng([spec.seed, seed])
    pan = "right" if spec.direction > 0 else "left"
    speed = {"slow": ["slow", "gentle", "leisurely"], "steady": ["steady", "smooth", "moderate"],
             "fast": ["fast", "quick", "rapid"]}[spec.speed]
    objects = STYLES[spec.style][6]
    templates = [
        "a {speed} pan to the {pan} across {style} with {objects}",
        "the camera moves {pan} at a {speed} pace over {style}, passing {objects}",
        "{style} with {objects}, {speed} camera pan {pan}",
        "side-scrolling view of {style}, {objects} drifting past, {speed} movement to the {pan}",
        "flying {pan} over {style} dotted with {objects}, {speed} motion",
    ]
    return str(rng.choice(templates)).format(speed=rng.choice(speed), pan=pan, style=spec.style, objects=objects)
