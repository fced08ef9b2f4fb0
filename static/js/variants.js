// The reference variants of static/js/signals.js: optout/imaging/variants.py's set, computed from the
// same reduced luma, bit for bit. VARIANT_SET, GRID_SIDE, DIHEDRAL and CROPS must stay equal to the
// server's.
//   - The 8 dihedral turns permute the 32x32 pHash image and the 64x64 PDQ buffer of the picture.
//   - Each crop is cut from the variant grid (the picture resampled once to GRID_SIDE x GRID_SIDE with
//     Pillow's Lanczos geometry over the reduced pixels, as variants.variant_grid) and hashed with both
//     kernels at scale 1. The crops then have a few fixed sizes, so their kernels are built once.
//   - Each pad puts the grid on a plain white or black canvas (a border, or a bar along the top or
//     bottom) and hashes that; each small turn turns the grid by a few degrees (variants.turned).
//   - Each badge paints a patch of one grey near a corner of the grid, square in the picture
//     (variants.badge_box, variants.badged).

import { jaroszKernel, lanczosKernel, resample, signalsFromGrids } from "./kernels.js";

export const VARIANT_SET = 5;
export const GRID_SIDE = 256;

// Output cell (y, x) of an n x n grid reads source cell [sy, sx]; named for what was done to the picture.
export const DIHEDRAL = {
  mirrored: (y, x, n) => [y, n - 1 - x],
  flipped: (y, x, n) => [n - 1 - y, x],
  "turned-half": (y, x, n) => [n - 1 - y, n - 1 - x],
  "turned-right": (y, x, n) => [n - 1 - x, y],
  "turned-left": (y, x, n) => [x, n - 1 - y],
  transposed: (y, x, n) => [x, y],
  transversed: (y, x, n) => [n - 1 - x, n - 1 - y],
};

const CROP_PLACES = [
  [95, [0.5]],
  [90, [0, 0.25, 0.5, 0.75, 1]],
  [85, [0, 0.25, 0.5, 0.75, 1]],
  [80, [0, 0.25, 0.5, 0.75, 1]],
  [70, [0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 1]],
];

// [name, share of each side kept, where the box starts as a share of what is cut off], server order.
export const CROPS = CROP_PLACES.flatMap(([size, places]) =>
  places.flatMap((fy) => places.map((fx) => [`crop${size}-${Math.round(fx * 100)}-${Math.round(fy * 100)}`, size / 100, fx, fy])),
);

// [name, share added on top, at the bottom, on the left, on the right, grey], server order (variants.PADS).
export const PADS = [
  ...[0.06, 0.12, 0.18].flatMap((share) =>
    [["white", 255], ["black", 0]].map(([colour, grey]) => [`bordered${Math.round(share * 100)}-${colour}`, share, share, share, share, grey]),
  ),
  ...["top", "bottom"].flatMap((where) =>
    [0.1, 0.2].flatMap((share) =>
      [["white", 255], ["black", 0]].map(([colour, grey]) => [
        `bar-${where}${Math.round(share * 100)}-${colour}`,
        where === "top" ? share : 0,
        where === "bottom" ? share : 0,
        0,
        0,
        grey,
      ]),
    ),
  ),
  // A picture shown on a page, as a screenshot of it has it: white margins, wider above and below.
  ["page-narrow", 0.12, 0.08, 0.06, 0.06, 255],
  ["page-wide", 0.16, 0.1, 0.08, 0.08, 255],
  ["page-tall", 0.2, 0.3, 0.05, 0.05, 255],
];

// [name, cosine, sine, expanded, grey of the corners], server order (variants.TURNS): literals, as
// Math.sin need not round as the server's libm does.
const TURN_ANGLES = [
  [-4, 0.9975640502598242, -0.0697564737441253],
  [-2, 0.9993908270190958, -0.03489949670250097],
  [2, 0.9993908270190958, 0.03489949670250097],
  [4, 0.9975640502598242, 0.0697564737441253],
];
export const TURNS = [false, true].flatMap((expanded) =>
  TURN_ANGLES.map(([degrees, cos, sin]) => [
    `turned${degrees > 0 ? "+" : "-"}${Math.abs(degrees)}-${expanded ? "expanded" : "corners"}`,
    cos,
    sin,
    expanded,
    expanded ? 255 : 0,
  ]),
);

// [name, side (a share of the side of the square of the picture's area), margin (a share of each side),
// bottom?, right?, grey], server order (variants.BADGES).
const BADGE_SIDES = [0.15, 0.2, 0.25, 0.3, 0.35];
const BADGE_MARGIN = 0.02;
const BADGE_MAX_SHARE = 0.5;
export const BADGES = BADGE_SIDES.flatMap((side) =>
  [false, true].flatMap((bottom) =>
    [false, true].flatMap((right) =>
      [0, 85, 170, 255].map((grey) => [
        `badge-${bottom ? "bottom" : "top"}-${right ? "right" : "left"}${Math.round(side * 100)}` +
          `-m${Math.round(BADGE_MARGIN * 100)}-${grey}`,
        side,
        BADGE_MARGIN,
        bottom,
        right,
        grey,
      ]),
    ),
  ),
);

// As variants.turned: the grid of a width x height picture turned counter-clockwise (sine > 0), sampled
// bilinearly, in the server's float64 operations and order.
function turned(grid, side, width, height, cos, sin, expanded, grey) {
  const half = side / 2;
  let [outWidth, outHeight] = [width, height];
  if (expanded) [outWidth, outHeight] = [width * cos + height * Math.abs(sin), width * Math.abs(sin) + height * cos];
  const out = new Float32Array(side * side);
  for (let row = 0; row < side; row++) {
    const y = (row + 0.5 - half) * (outHeight / side);
    for (let col = 0; col < side; col++) {
      const x = (col + 0.5 - half) * (outWidth / side);
      const xs = (cos * x - sin * y) * (side / width) + (half - 0.5);
      const ys = (sin * x + cos * y) * (side / height) + (half - 0.5);
      const x0 = Math.floor(xs);
      const y0 = Math.floor(ys);
      if (!(x0 >= 0 && y0 >= 0 && x0 < side - 1 && y0 < side - 1)) {
        out[row * side + col] = grey;
        continue;
      }
      const [fx, fy] = [xs - x0, ys - y0];
      const at = y0 * side + x0;
      const upper = grid[at] * (1 - fx) + grid[at + 1] * fx;
      const lower = grid[at + side] * (1 - fx) + grid[at + side + 1] * fx;
      out[row * side + col] = upper * (1 - fy) + lower * fy;
    }
  }
  return out;
}

// As variants.padded: the grid on a canvas of one grey, Python's int(v + 0.5) being Math.floor(v + 0.5).
function padded(grid, side, top, bottom, left, right, grey) {
  const [above, below] = [Math.floor(side * top + 0.5), Math.floor(side * bottom + 0.5)];
  const [before, after] = [Math.floor(side * left + 0.5), Math.floor(side * right + 0.5)];
  const rows = above + side + below;
  const cols = before + side + after;
  const canvas = new Float32Array(rows * cols).fill(grey);
  for (let y = 0; y < side; y++) canvas.set(grid.subarray(y * side, (y + 1) * side), (above + y) * cols + before);
  return { canvas, rows, cols };
}

// As variants.badge_box: the box in the grid of a square of a width x height picture near a corner.
// Math.sqrt and the divisions round as Python's math.sqrt and float division do (IEEE 754).
function badgeBox(width, height, side, margin, bottom, right) {
  const across = Math.min(BADGE_MAX_SHARE, side * Math.sqrt(height / width));
  const down = Math.min(BADGE_MAX_SHARE, side * Math.sqrt(width / height));
  const [boxWidth, boxHeight] = [Math.floor(GRID_SIDE * across + 0.5), Math.floor(GRID_SIDE * down + 0.5)];
  const inset = Math.floor(GRID_SIDE * margin + 0.5);
  const top = bottom ? GRID_SIDE - inset - boxHeight : inset;
  const left = right ? GRID_SIDE - inset - boxWidth : inset;
  return { top, left, height: boxHeight, width: boxWidth };
}

// As variants.badged: a float32 copy of the grid with a box painted one grey.
function badged(grid, side, { top, left, height, width }, grey) {
  const out = Float32Array.from(grid);
  for (let y = top; y < top + height; y++) out.fill(grey, y * side + left, y * side + left + width);
  return out;
}

function permute(grid, n, transform) {
  const out = new Float32Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const [sy, sx] = transform(y, x, n);
      out[y * n + x] = grid[sy * n + sx];
    }
  }
  return out;
}

// As variants.crop_box: Python's int(v + 0.5) on these non-negative values is Math.floor(v + 0.5).
export function cropBox(rows, cols, keep, fx, fy) {
  const height = Math.max(1, Math.floor(rows * keep + 0.5));
  const width = Math.max(1, Math.floor(cols * keep + 0.5));
  return { top: Math.floor((rows - height) * fy + 0.5), left: Math.floor((cols - width) * fx + 0.5), height, width };
}

function signalsOfCrop(luma, cols, { top, left, height, width }) {
  const cut = new Float32Array(height * width);
  for (let y = 0; y < height; y++) cut.set(luma.subarray((top + y) * cols + left, (top + y) * cols + left + width), y * width);
  const small = resample(cut, height, width, lanczosKernel(height, 1, height, false), lanczosKernel(width, 1, width, false));
  const buffer64 = resample(cut, height, width, jaroszKernel(height, 1, height, false), jaroszKernel(width, 1, width, false));
  return signalsFromGrids(small, buffer64);
}

// The variant grid of the reduced luma (variants.variant_grid): `geometry` is the full-size picture's
// width, height, reduction scale and anchors, as for the plain signals.
export function variantGrid(luma, rows, cols, { width, height, scale, anchors }) {
  return resample(
    luma,
    rows,
    cols,
    lanczosKernel(height, scale, rows, anchors.y, GRID_SIDE),
    lanczosKernel(width, scale, cols, anchors.x, GRID_SIDE),
  );
}

// Every variant but the picture itself, by name in the server's order, from the picture's own hash
// grids (small, buffer64) and its reduced luma.
export function referenceVariants(small, buffer64, { luma, rows, cols }, geometry) {
  const variants = {};
  for (const [name, transform] of Object.entries(DIHEDRAL)) {
    variants[name] = signalsFromGrids(permute(small, 32, transform), permute(buffer64, 64, transform));
  }
  const grid = variantGrid(luma, rows, cols, geometry);
  for (const [name, keep, fx, fy] of CROPS) {
    variants[name] = signalsOfCrop(grid, GRID_SIDE, cropBox(GRID_SIDE, GRID_SIDE, keep, fx, fy));
  }
  for (const [name, top, bottom, left, right, grey] of PADS) {
    const { canvas, rows: height, cols: width } = padded(grid, GRID_SIDE, top, bottom, left, right, grey);
    variants[name] = signalsOfCrop(canvas, width, { top: 0, left: 0, height, width });
  }
  for (const [name, cos, sin, expanded, grey] of TURNS) {
    const turnedGrid = turned(grid, GRID_SIDE, geometry.width, geometry.height, cos, sin, expanded, grey);
    variants[name] = signalsOfCrop(turnedGrid, GRID_SIDE, { top: 0, left: 0, height: GRID_SIDE, width: GRID_SIDE });
  }
  for (const [name, side, margin, bottom, right, grey] of BADGES) {
    const box = badgeBox(geometry.width, geometry.height, side, margin, bottom, right);
    const badgedGrid = badged(grid, GRID_SIDE, box, grey);
    variants[name] = signalsOfCrop(badgedGrid, GRID_SIDE, { top: 0, left: 0, height: GRID_SIDE, width: GRID_SIDE });
  }
  return variants;
}
