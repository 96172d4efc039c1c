"""Procedural video worlds: an endless side-scrolling landscape, deterministic from a seed.

A world is a biome (palette, objects) seen through a camera that pans at a constant speed. The
scene is a static function of world position: sky clouds and stars, a far range and a nearer
ridge (the skyline), textured ground, a river or road, objects standing on the ground. So the
true optical flow of every pixel is the camera motion, which `camera_motion` returns as ground
truth. Only the light depends on time: a day cycle (day, dusk, night, dawn) tints the sky,
the clouds and everything lit; lava, crystals, glowing streams and lit windows give light of their
own, which stands out at night.

What progresses along the journey is laid out along the path in slow "fronts": weather (clouds
gathering and clearing), terrain character (flat plains, rolling hills, steep ridges), object
density and size, a river or road that comes and goes, and, in some worlds, a transition into
a second biome. Fronts are measured in frames of travel, so a slow and a fast pan progress
alike per second; `attributes_at(frame)` reports them (and the light) at the centre of the
view. Any frame is a pure function of (spec, frame index), so clips can start anywhere.
"""

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np


class Biome(NamedTuple):
    sky_top: tuple
    sky_low: tuple      # sky at the horizon
    ridge: tuple
    ground: tuple
    detail: tuple       # ground texture
    thing: tuple        # object colour
    objects: str        # object kind (a key of SHAPES)
    water: tuple        # the river (lava and glowing streams give light)
    water_glows: bool


STYLES = {
    "snowy hills": Biome((70, 110, 170), (200, 215, 235), (150, 160, 185), (235, 238, 245), (170, 180, 200), (40, 80, 60), "pine trees", (120, 165, 205), False),
    "desert dunes": Biome((60, 120, 200), (240, 210, 160), (200, 140, 90), (225, 180, 110), (180, 130, 70), (60, 130, 70), "cacti", (50, 140, 165), False),
    "green meadow": Biome((50, 110, 210), (170, 210, 240), (60, 110, 80), (90, 170, 70), (50, 120, 40), (200, 60, 60), "red houses", (55, 105, 175), False),
    "volcanic plain": Biome((40, 20, 40), (200, 90, 50), (60, 40, 40), (50, 45, 45), (120, 50, 30), (255, 140, 40), "lava vents", (240, 90, 20), True),
    "alien valley": Biome((30, 10, 70), (180, 90, 200), (90, 40, 120), (70, 160, 150), (30, 100, 110), (250, 240, 90), "glowing crystals", (90, 235, 215), True),
    "autumn forest": Biome((90, 120, 180), (240, 190, 140), (120, 70, 40), (150, 90, 40), (100, 50, 20), (200, 80, 20), "orange trees", (60, 95, 115), False),
}
SPEEDS = {"slow": 1.0, "steady": 2.0, "fast": 3.0}  # camera pan in pixels per frame (at 64 px)
PATHS = ("river", "road")

# The light of the day cycle, multiplying every lit colour (sky and clouds have their own).
NIGHT_LIGHT = np.array([0.38, 0.40, 0.48])
DAWN_TINT, DUSK_TINT = np.array([1.0, 0.70, 0.66]), np.array([1.0, 0.66, 0.42])
NIGHT_SKY_TOP, NIGHT_SKY_LOW = np.array([0.10, 0.12, 0.40]), np.array([0.30, 0.35, 0.70])
DAWN_SKY_LOW, DUSK_SKY_LOW = np.array([0.98, 0.62, 0.58]), np.array([1.0, 0.55, 0.28])
CLEAR_CLOUD, STORM_CLOUD, NIGHT_CLOUD = np.array([0.97, 0.97, 0.98]), np.array([0.55, 0.57, 0.62]), np.array([0.16, 0.17, 0.26])
ROAD, ROAD_LINE = np.array([0.30, 0.29, 0.30]), np.array([0.92, 0.86, 0.55])
TRUNK, ROOF, DOOR = np.array([0.36, 0.23, 0.13]), np.array([0.35, 0.20, 0.16]), np.array([0.25, 0.15, 0.10])
WINDOW, WINDOW_LIGHT, SNOW = np.array([0.22, 0.26, 0.34]), np.array([1.0, 0.78, 0.40]), np.array([0.93, 0.95, 0.98])
VENT_ROCK = np.array([0.42, 0.34, 0.30])


@dataclass(frozen=True)
class WorldSpec:
    seed: int
    height: int
    width: int
    style: str
    speed: str                # key of SPEEDS
    direction: int            # +1: camera pans right (scene moves left), -1: pans left
    day_period: float         # frames per full day
    start_hour: float         # time of day at frame 0, in hours
    path: str                 # "river" or "road": what comes and goes along the ground
    next_style: str | None = None   # a second biome the world turns into, or None
    transition_frame: float = 0.0   # the view's centre is half-way into next_style at this frame
    transition_frames: float = 1.0  # frames of travel the change takes

    @property
    def camera_speed(self) -> float:
        """Pixels per frame at this spec's width (speeds are defined at 64 px)."""
        return SPEEDS[self.speed] * self.width / 64

    def attributes(self) -> dict:
        attributes = asdict(self)
        attributes.update(camera_speed=self.camera_speed, objects=STYLES[self.style].objects,
                          pan="right" if self.direction > 0 else "left")
        return attributes


def sample_world_spec(seed: int, height: int = 64, width: int = 64) -> WorldSpec:
    """A random world. One in four turns into a second biome, centred 180-300 frames in, over 360 frames,
    so that a 480-frame run from frame 0 sees all of the change."""
    rng = np.random.default_rng(seed)
    style, speed, direction = str(rng.choice(list(STYLES))), str(rng.choice(list(SPEEDS))), int(rng.choice([-1, 1]))
    day_period, start_hour = float(rng.uniform(1000, 1300)), float(rng.uniform(0, 24))
    path, turns = str(rng.choice(PATHS)), rng.uniform() < 0.25
    next_style = str(rng.choice([s for s in STYLES if s != style])) if turns else None
    return WorldSpec(seed=int(seed), height=height, width=width, style=style, speed=speed, direction=direction,
                     day_period=day_period, start_hour=start_hour, path=path, next_style=next_style,
                     transition_frame=float(rng.uniform(180, 300)) if turns else 0.0,
                     transition_frames=360.0 if turns else 1.0)


# -- deterministic noise over world coordinates ------------------------------------------------
# Only elementwise arithmetic (no transcendental functions) on per-pixel arrays: a pixel's value
# is then bit-identical whichever window of frames it is rendered in.

def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice point → uniform [0, 1), a fixed function of (ix, iy, seed)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= np.uint64(seed * 0x165667B19E3779F9 % 2**64)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0**53


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1): hashed lattice values, smoothstep-interpolated."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = smoothstep(x - x0), smoothstep(y - y0)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def fractal_noise(x, y, seed: int, octaves: int = 3) -> np.ndarray:
    total, weight = 0.0, 1.0
    for octave in range(octaves):
        total = total + weight * value_noise(x * 2**octave, y * 2**octave, seed + octave)
        weight /= 2
    return total / (2 - 2 ** (1 - octaves))


def line_noise(x: np.ndarray, seed: int, octaves: int = 1) -> np.ndarray:
    """Smooth 1-D noise in [0, 1) along x."""
    return fractal_noise(x, np.zeros_like(x), seed, octaves)


# -- objects: shapes in box coordinates ----------------------------------------------------------
# u runs from -1 to 1 across the object's half-width, v from 0 at its base to 1 at its top;
# `shade` is a texture in [0, 1]. A shape gives its mask, colour and light of its own.

def _pine(u, v, shade, colour):
    trunk = (np.abs(u) < 0.15) & (v >= 0) & (v < 0.15)
    tier = (v - 0.12) * 3.2 % 1                               # three stacked, jagged tiers
    foliage = (v >= 0.12) & (v <= 1) & (np.abs(u) <= (1 - v) / 0.88 * (0.55 + 0.45 * (1 - tier)))
    albedo = np.where(trunk[..., None], TRUNK, colour * (0.7 + 0.5 * shade[..., None]))
    albedo = np.where((foliage & (tier > 0.8))[..., None], SNOW, albedo)  # snow on every tier
    return trunk | foliage, albedo, 0.0


def _cactus(u, v, shade, colour):
    stem = (np.abs(u) < 0.24) & (v >= 0) & (v <= 1 - 0.2 * (u / 0.24) ** 2)
    left = ((v >= 0.35) & (v < 0.46) & (u > -0.8) & (u < 0) | (v >= 0.35) & (v < 0.72) & (u > -0.8) & (u < -0.56))
    right = ((v >= 0.5) & (v < 0.6) & (u > 0) & (u < 0.8) | (v >= 0.5) & (v < 0.84) & (u > 0.56) & (u < 0.8))
    ribs = 0.8 + 0.3 * (np.abs(u * 9 % 2 - 1))[..., None]    # vertical ribs
    return stem | left | right, colour * ribs * (0.85 + 0.3 * shade[..., None]), 0.0


def _house(u, v, shade, colour):
    wall = (np.abs(u) < 0.8) & (v >= 0) & (v < 0.55)
    roof = (v >= 0.5) & (v <= 1) & (np.abs(u) <= (1 - v) / 0.5)
    window = wall & (np.abs(u) > 0.28) & (np.abs(u) < 0.58) & (v > 0.22) & (v < 0.42)
    door = wall & (np.abs(u) < 0.14) & (v < 0.36)
    albedo = np.where(roof[..., None], ROOF, colour) * (0.85 + 0.3 * shade[..., None])
    albedo = np.where(window[..., None], WINDOW, np.where(door[..., None], DOOR, albedo))
    return wall | roof, albedo, window[..., None] * WINDOW_LIGHT * 0.9


def _vent(u, v, shade, colour):
    flank = 1 - 0.75 * v
    cone = (v >= 0) & (v <= 1) & (np.abs(u) <= flank)
    crater = cone & (v > 0.85)
    stream = cone & (np.abs(u - 0.45 * flank) < 0.1)              # lava running down one flank
    hot = (crater | stream)[..., None]
    albedo = np.where(hot, colour, VENT_ROCK * (0.7 + 0.6 * shade[..., None]))
    return cone, albedo, hot * colour * 0.8


def _crystals(u, v, shade, colour):
    spikes = [(0.0, 1.0, 0.34), (-0.56, 0.62, 0.28), (0.52, 0.76, 0.26)]  # (centre, height, half-width)
    mask, lit_face = np.zeros(u.shape, bool), np.zeros(u.shape, bool)
    for centre, height, half in spikes:
        inside = (v >= 0) & (v <= height) & (np.abs(u - centre) <= half * (1 - v / height))
        mask |= inside
        lit_face |= inside & (u < centre)
    albedo = colour * np.where(lit_face, 1.0, 0.7)[..., None] * (0.85 + 0.25 * shade[..., None])
    return mask, albedo, mask[..., None] * colour * 0.6


def _broadleaf(u, v, shade, colour):
    trunk = (np.abs(u) < 0.13) & (v >= 0) & (v < 0.5)
    canopy = u**2 + ((v - 0.64) / 0.36) ** 2 < 1
    leaves = colour * (0.6 + 0.7 * shade[..., None])          # dappled light through the leaves
    return trunk | canopy, np.where(canopy[..., None], leaves, TRUNK), 0.0


# kind: (shape, half-width, height) in pixels at 64 px and size 1
SHAPES = {"pine trees": (_pine, 3.6, 14), "cacti": (_cactus, 3.4, 11), "red houses": (_house, 5.0, 10),
          "lava vents": (_vent, 6.0, 7), "glowing crystals": (_crystals, 4.2, 12), "orange trees": (_broadleaf, 4.6, 12)}
SLOT = 8.0                    # one object slot per 8 px of world x (at 64 px)


class World:
    def __init__(self, spec: WorldSpec):
        self.spec = spec
        self.scale = spec.width / 64
        self.biomes = [STYLES[spec.style]] + ([STYLES[spec.next_style]] if spec.next_style else [])
        self.colours = [{name: np.array(getattr(b, name), dtype=np.float64) / 255
                         for name in ("sky_top", "sky_low", "ridge", "ground", "detail", "thing", "water")}
                        | {"water_glow": np.full(3, 0.7 if b.water_glows else 0.0)}
                        for b in self.biomes]

    # -- the camera ---------------------------------------------------------------------------

    def camera_x(self, frame) -> np.ndarray:
        return self.spec.direction * self.spec.camera_speed * np.asarray(frame, dtype=np.float64)

    def camera_motion(self, start: int, count: int) -> np.ndarray:
        """Ground truth: the image motion of every pixel from frame t-1 to t, as (dx, dy) pixels,
        for frames start … start+count-1 (the scene moves opposite to the camera)."""
        motion = np.zeros((count, 2))
        motion[:, 0] = -self.spec.direction * self.spec.camera_speed
        return motion

    def travel(self, x) -> np.ndarray:
        """World x → the frame at which x is at the centre of the view (fronts are laid out in it)."""
        return (np.asarray(x, dtype=np.float64) - self.spec.width / 2) / (self.spec.direction * self.spec.camera_speed)

    # -- what changes: fronts along the path, and the light -------------------------------------

    def fronts(self, t: np.ndarray) -> dict:
        """The slow fronts at travel frame(s) t, each in [0, 1]."""
        s = self.spec
        if s.next_style:
            biome_mix = np.clip((t - s.transition_frame) / s.transition_frames + 0.5, 0, 1)
        else:
            biome_mix = np.zeros_like(t)
        return {"cloud_cover": np.clip(1.3 * line_noise(t / 340, s.seed + 101) - 0.15, 0, 1),
                "roughness": line_noise(t / 300, s.seed + 102),
                "object_density": 0.1 + 0.9 * line_noise(t / 270, s.seed + 103),
                "object_size": line_noise(t / 360, s.seed + 104),
                "path_width": smoothstep(2 * (line_noise(t / 300, s.seed + 105) - 0.35)),
                "biome_mix": biome_mix}

    def hour(self, frame: int) -> float:
        return (self.spec.start_hour + 24 * frame / self.spec.day_period) % 24

    def light(self, frame: int) -> dict:
        """The day cycle at `frame`: daylight (0 at midnight, 1 at noon), twilight (1 at 6 and 18
        h), and the colour that multiplies every lit surface. Scalar maths only (`math`), so a
        frame's light does not depend on the window it is rendered in."""
        hour = self.hour(frame)
        angle = 2 * math.pi * hour / 24
        daylight, twilight = 0.5 - 0.5 * math.cos(angle), math.sin(angle) ** 2
        tint = DAWN_TINT if hour < 12 else DUSK_TINT
        colour = (NIGHT_LIGHT + (1 - NIGHT_LIGHT) * daylight) * (1 + (tint - 1) * 0.45 * twilight)
        return {"hour": hour, "daylight": daylight, "twilight": twilight, "colour": colour,
                "sky_low": DAWN_SKY_LOW if hour < 12 else DUSK_SKY_LOW}

    def attributes_at(self, frame: int) -> dict:
        """Ground truth of what the view shows at `frame`: the light, and the fronts and biome at
        the centre of the view."""
        fronts = {name: float(value[0]) for name, value in self.fronts(np.array([float(frame)])).items()}
        light = self.light(frame)
        hour = light["hour"]
        mix = fronts["biome_mix"]
        return {"frame": frame, "time_of_day": hour, "period_of_day": period_of_day(hour),
                "daylight": light["daylight"], "twilight": light["twilight"], **fronts,
                "biome": self.spec.next_style if mix >= 0.5 else self.spec.style,
                "path": self.spec.path, "camera_x": float(self.camera_x(frame)),
                "motion": tuple(self.camera_motion(frame, 1)[0])}

    # -- rendering ------------------------------------------------------------------------------

    def render(self, start: int, count: int) -> np.ndarray:
        """Frames start … start+count-1 as uint8 [count, H, W, 3].

        The static scene is built once for every world column the frames show, then each frame
        takes its columns and is lit by its time of day."""
        s = self.spec
        frames = np.arange(start, start + count)
        columns = self.camera_x(frames)[:, None] + np.arange(s.width)
        xs, where = np.unique(columns, return_inverse=True)
        where = where.reshape(count, s.width)
        pixels, columns = self._scene(xs)
        video = np.empty((count, s.height, s.width, 3), np.uint8)
        for i, frame in enumerate(frames):
            light = self.light(int(frame))
            view = {name: layer[:, where[i]] for name, layer in pixels.items()}
            view.update({name: layer[where[i]] for name, layer in columns.items()})
            lit = view["albedo"] * light["colour"] * view["shadow"][None, :, None]
            image = np.where(view["is_sky"][..., None], self._sky(view, light), lit)
            image = image + view["glow"] * 0.7
            video[i] = (np.clip(image, 0, 1) * 255).round()
        return video

    def _sky(self, view: dict, light: dict) -> np.ndarray:
        """The sky of one frame. Night falls from the top down and lifts from the horizon up, and
        the dawn or dusk glow rises from the horizon and sinks back: the light changes where its
        edge passes, a few rows at a time, rather than every row's colour at once."""
        rows = (np.arange(self.spec.height) / self.spec.height)[:, None, None]
        d, k = light["daylight"], light["twilight"]
        night = smoothstep(((1 - d) * 0.9 - 0.2 - rows) / 0.35 + 0.5)
        glow = 0.7 * smoothstep((rows - 0.6 + 0.35 * k) / 0.25 + 0.5) * k
        day = view["sky_top"] * (1 - rows) + view["sky_low"] * rows
        # the night sky: the day's sky darkened and drawn towards deep blue
        dark = (day * 0.65 + (NIGHT_SKY_TOP * (1 - rows) + NIGHT_SKY_LOW * rows) * 0.35) * (0.2 + 0.15 * rows)
        sky = day * (1 - night) + dark * night
        sky = sky * (1 - glow) + light["sky_low"] * glow
        cloud = view["cloud_colour"] * (1 - night) + NIGHT_CLOUD * night
        cloud = cloud * (1 - glow * 0.6) + light["sky_low"] * glow * 0.6
        alpha = view["cloud"][..., None]
        sky = sky * (1 - alpha) + cloud * alpha
        return sky + night * view["stars"][..., None] * (1 - alpha)

    def _terrain(self, x: np.ndarray, roughness: np.ndarray) -> np.ndarray:
        """The ground's top row at world x: flat plains at low roughness, rolling hills, then steep
        ridges."""
        h, sc, seed = self.spec.height, self.scale, self.spec.seed
        rolling = line_noise(x / (26 * sc), seed + 31, 2)
        ridged = 1 - np.abs(2 * line_noise(x / (9 * sc), seed + 32, 2) - 1)
        return h * (0.68 - (0.03 + 0.11 * smoothstep(2 * roughness)) * rolling
                    - 0.24 * smoothstep(2 * roughness - 1) * ridged)

    def _scene(self, xs: np.ndarray) -> tuple[dict, dict]:
        """The static scene at world columns xs: layers per pixel ([H, n, ...]: albedo, glow,
        sky masks) and per column ([n, ...]: day sky colours, cloud colour, cloud shadow)."""
        s, sc = self.spec, self.scale
        h, n = s.height, len(xs)
        fronts = self.fronts(self.travel(xs))
        X = np.broadcast_to(xs, (h, n))
        Y = np.broadcast_to(np.arange(h, dtype=np.float64)[:, None], (h, n))
        blotches = fractal_noise(X / (10 * sc), Y / (5 * sc), s.seed + 11)
        grain = fractal_noise(X / (3 * sc), Y / (3 * sc), s.seed + 51)
        # Which biome each ground pixel shows: patches of the next biome spread as the front
        # passes (a transition mixes the two palettes rather than blending every colour through
        # in-between hues). `blotches` is stretched to about uniform, so that the share of the
        # next biome grows at an even pace.
        second = np.clip((blotches - 0.5) / 0.47 + 0.5, 0, 1) < fronts["biome_mix"]
        pick = (lambda name: np.where(second[..., None], self.colours[1][name], self.colours[0][name])) \
            if s.next_style else (lambda name: np.broadcast_to(self.colours[0][name], (h, n, 3)))
        column_mix = fronts["biome_mix"][:, None]
        blend = (lambda name: self.colours[0][name] + (self.colours[-1][name] - self.colours[0][name]) * column_mix)

        cover = fronts["cloud_cover"]
        # weather: as cover rises, clouds take more of the sky and grow dark cores (more pixels
        # become cloud, rather than every pixel's colour turning grey at once)
        cloud = np.clip((blotches - (0.75 - 0.55 * cover)) * 5, 0, 1)
        storm = np.clip((blotches - (0.95 - 0.45 * cover)) * 4, 0, 1)[..., None]
        cloud_colour = (CLEAR_CLOUD * (1 - storm) + STORM_CLOUD * storm) * (0.85 + 0.15 * grain[..., None])
        stars = (_hash(np.floor(X / sc).astype(np.int64), Y.astype(np.int64), s.seed + 12) > 0.985) \
            * _hash(np.floor(X / sc).astype(np.int64), Y.astype(np.int64), s.seed + 13)

        # skyline: a hazy far range, then the nearer ridge with its rock texture
        far_top = h * (0.40 - 0.14 * line_noise(xs / (45 * sc), s.seed + 21, 2))
        ridge_top = h * (0.50 - 0.10 * line_noise(xs / (22 * sc), s.seed + 22, 2) - 0.08 * fronts["roughness"])
        ground_top = self._terrain(xs, fronts["roughness"])
        haze = blend("sky_low")
        albedo = np.where((Y >= ridge_top)[..., None], pick("ridge") * (0.7 + 0.6 * grain[..., None]),
                          (blend("ridge") * 0.5 + haze * 0.5)[None] * (0.9 + 0.2 * blotches[..., None]))
        # ground: contrast-stretched grain (texture everywhere, so optical flow is measurable
        # everywhere), lighter towards the viewer
        on_ground = Y >= ground_top
        speckle = np.clip(2.5 * grain - 0.75, 0, 1)[..., None]
        depth = np.clip((Y - ground_top) / (h * 0.4), 0, 1)[..., None]
        ground = (pick("ground") * (1 - 0.55 * speckle) + pick("detail") * 0.55 * speckle) * (0.8 + 0.35 * depth)
        albedo = np.where(on_ground[..., None], ground, albedo)
        glow = np.zeros((h, n, 3))
        albedo, glow = self._path(albedo, glow, X, Y, on_ground, fronts["path_width"], pick)
        albedo, glow = self._objects(albedo, glow, X, Y)
        # colour variation: every surface spans a range of hues, as natural ones do (a change of
        # light then shifts a spread of colours rather than a few flat ones at once)
        tone = np.stack([value_noise(X / (3 * sc), Y / (3 * sc), s.seed + 91 + c) for c in range(3)], -1)
        albedo = albedo * (0.92 + 0.16 * tone)
        is_sky = Y < np.minimum(far_top, ridge_top)
        albedo = np.where(is_sky[..., None], 0.0, albedo)
        glow = np.where(is_sky[..., None], 0.0, glow)
        pixels = {"albedo": albedo, "glow": glow, "is_sky": is_sky, "cloud": cloud * is_sky,
                  "cloud_colour": cloud_colour, "stars": stars * is_sky}
        columns = {"sky_top": blend("sky_top"), "sky_low": blend("sky_low"), "shadow": 1 - 0.25 * cover}
        return pixels, columns

    def _path(self, albedo, glow, X, Y, on_ground, width, pick):
        """A river or a road along the foreground, its width following the path front (0: gone)."""
        s, sc, h = self.spec, self.scale, self.spec.height
        centre, half = h * 0.86, h * 0.07 * width
        band = on_ground & (np.abs(Y - centre) < half)
        bank = band & (np.abs(Y - centre) > half - 1.2 * sc)
        if s.path == "river":
            ripples = value_noise(X / (6 * sc), Y / (0.9 * sc), s.seed + 81)[..., None]
            water = pick("water") * (0.75 + 0.5 * ripples)
            surface, light, edge = water, water * pick("water_glow"), pick("detail")
        else:
            dashes = (np.abs(Y - centre) < 0.6 * sc) & (X / (8 * sc) % 1 < 0.5) & (half[None] > 2.5 * sc)
            surface = np.where(dashes[..., None], ROAD_LINE, ROAD * (0.85 + 0.3 * albedo.mean(-1, keepdims=True)))
            light, edge = 0.0, ROAD * 1.8
        surface = np.where(bank[..., None], edge, surface)
        return (np.where(band[..., None], surface, albedo),
                np.where(band[..., None], light, glow))

    def _objects(self, albedo, glow, X, Y):
        """Objects stand on the ground at hashed world positions: one slot per SLOT pixels, filled
        with a probability (the density front) and sized by the size front; in a transition, the
        share of the next biome's objects follows the biome front. Each pixel looks at the three
        slots whose objects can reach it, higher slots in front."""
        s, sc = self.spec, self.scale
        spacing = SLOT * sc
        slots = np.floor(X[0] / spacing).astype(np.int64) + np.array([-1, 0, 1])[:, None]   # [3, n]
        cx = (slots + 0.25 + 0.5 * _hash(slots, np.ones_like(slots), s.seed + 62)) * spacing
        fronts = self.fronts(self.travel(cx))
        present = _hash(slots, np.zeros_like(slots), s.seed + 61) < fronts["object_density"]
        size = sc * (0.75 + 0.6 * fronts["object_size"]) * (0.8 + 0.4 * _hash(slots, np.full_like(slots, 2), s.seed + 63))
        biome = (_hash(slots, np.full_like(slots, 3), s.seed + 64) < fronts["biome_mix"]).astype(int)
        base = self._terrain(cx, fronts["roughness"]) + 1.5 * sc
        shade = fractal_noise(X / (2 * sc), Y / (2 * sc), s.seed + 71, 2)
        for i in range(3):
            for b, colours in enumerate(self.colours):
                here = present[i] & (biome[i] == b)
                if not here.any():
                    continue
                shape, half_width, height = SHAPES[self.biomes[b].objects]
                u = (X - cx[i]) / (half_width * size[i])
                v = (base[i] - Y) / (height * size[i])
                mask, colour, light = shape(u, v, shade, colours["thing"])
                mask = mask & here
                albedo = np.where(mask[..., None], colour, albedo)
                glow = np.where(mask[..., None], light, glow)
        return albedo, glow


def period_of_day(hour: float) -> str:
    if 4.5 <= hour < 7.5:
        return "dawn"
    if 7.5 <= hour < 16.5:
        return "day"
    if 16.5 <= hour < 19.5:
        return "dusk"
    return "night"


def caption(spec: WorldSpec, seed: int = 0, start: int | None = None, frames: int = 48) -> str:
    """A caption of the world's attributes in one of several wordings (chosen by `seed`).

    Without `start`, it describes the journey from frame 0 (and its biome transition, if any)
    and says nothing of the light or the weather. With `start`, it describes the clip of
    `frames` frames from there: the biome(s) it shows, and, in some wordings, the time of day,
    the sky and the river or road, as they are at its first frame."""
    rng = np.random.default_rng([spec.seed, seed])
    pan = "right" if spec.direction > 0 else "left"
    speed = {"slow": ["slow", "gentle", "leisurely"], "steady": ["steady", "smooth", "moderate"],
             "fast": ["fast", "quick", "rapid"]}[spec.speed]
    templates = [
        "a {speed} pan to the {pan} across {style} with {objects}",
        "the camera moves {pan} at a {speed} pace over {style}, passing {objects}",
        "{style} with {objects}, {speed} camera pan {pan}",
        "side-scrolling view of {style}, {objects} drifting past, {speed} movement to the {pan}",
        "flying {pan} over {style} dotted with {objects}, {speed} motion",
    ]
    template, speed_word = str(rng.choice(templates)), str(rng.choice(speed))
    world = World(spec)
    if start is None:
        biome_first, biome_last = spec.style, spec.next_style or spec.style
    else:
        biome_first, biome_last = (world.attributes_at(f)["biome"] for f in (start, start + frames - 1))
    text = template.format(speed=speed_word, pan=pan, style=biome_first, objects=STYLES[biome_first].objects)
    if biome_last != biome_first:
        text += str(rng.choice([", then into {style} with {objects}", ", changing from {first} into {style} with {objects}",
                                ", giving way to {style} and {objects}"])).format(
            style=biome_last, objects=STYLES[biome_last].objects, first=biome_first)
    if start is None:
        return text
    now = world.attributes_at(start)
    time_words = {"dawn": ["at dawn", "at sunrise"], "day": ["in daylight", "by day"],
                  "dusk": ["at dusk", "at sunset"], "night": ["at night", "under the night sky"]}
    cover = now["cloud_cover"]
    sky_words = ["under a clear sky", "with clear skies"] if cover < 0.3 else (
        ["under an overcast sky", "on a cloudy day"] if cover > 0.7 else ["with scattered clouds"])
    extras = [str(rng.choice(time_words[now["period_of_day"]])), str(rng.choice(sky_words))]
    if now["path_width"] > 0.3:
        extras.append(f"along a {spec.path}")
    return ", ".join([text] + [e for e in extras if rng.uniform() < 0.6])
