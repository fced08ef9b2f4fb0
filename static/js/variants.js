// The reference variants of static/js/signals.js: optout/imaging/variants.py's set, computed from the
// same reduced luma, bit for bit. VARIANT_SET, GRID_SIDE, DIHEDRAL and CROPS must stay equal to the
// server's.
//   - The 8 dihedral turns permute the 32x32 pHash image and the 64x64 PDQ buffer of the picture.
//   - Each crop is cut from the variant grid (the picture resampled once to GRID_SIDE x GRID_SIDE with
//     Pillow's Lanczos geometry over the reduced pixels, as variants.variant_grid) and hashed with both
//     kernels at scale 1. The crops then have a few fixed sizes, so their kernels are built once.

import { jaroszKernel, lanczosKernel, resample, signalsFromGrids } from "./kernels.js";

export const VARIANT_SET = 2;
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
  [90, [0, 0.5, 1]],
  [85, [0, 0.5, 1]],
  [80, [0, 0.25, 0.5, 0.75, 1]],
  [70, [0, 0.25, 0.5, 0.75, 1]],
];

// [name, share of each side kept, where the box starts as a share of what is cut off], server order.
export const CROPS = CROP_PLACES.flatMap(([size, places]) =>
  places.flatMap((fy) => places.map((fx) => [`crop${size}-${Math.round(fx * 100)}-${Math.round(fy * 100)}`, size / 100, fx, fy])),
);

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
  return variants;
}
