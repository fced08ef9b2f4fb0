// Image signals computed on the person's own device: the same pHash, PDQ (with its quality) and
// sha256 that optout/imaging computes on the server, so that the picture itself never has to be
// sent. No dependencies: the browser decodes the file, this module does the arithmetic.
//
// The steps mirror compute_signals() in optout/imaging/hashes.py, which is the reference:
//   1. sha256 of the file's exact bytes (Web Crypto).
//   2. Decode with EXIF orientation applied, transparency flattened on white (the server composites
//      on white too), no colour management (Pillow ignores ICC profiles).
//   3. The same decoder reduction as the server: JPEG by 2, 4 or 8 (libjpeg's DCT scaling there, a box
//      average here), other formats by a box reduce, keeping the shorter side >= 384 pixels.
//   4. Luma 0.299 R + 0.587 G + 0.114 B in float32, as the server.
//   5. pHash: Pillow's Lanczos geometry from the full-size image to 32x32, folded over the reduced
//      pixels, rounded to 8 bits; DCT-II; top-left 8x8 against its median (imagehash.phash).
//   6. PDQ: the two Jarosz box passes sampled at 64x64 (ThreatExchange's reference code), quality from
//      the gradients, 16x16 DCT, bits above the median.
// Canvas resampling is never used: its filters differ between browsers and from Pillow's.
//
// Output: {phash: hex16, pdq: hex64 | null, pdq_quality: int, sha256: hex64, variant_set: int,
// variants: {name: {phash, pdq, pdq_quality}}}, optout.imaging.variants_to_dict(). The variants are
// optout/imaging/variants.py's reference set, computed from the same reduced luma: the 8 dihedral turns
// permute the 32x32 pHash image and the 64x64 PDQ buffer; each crop cuts the reduced luma and hashes it
// with both kernels at scale 1. VARIANT_SET, DIHEDRAL and CROPS below must stay equal to the server's.
//
// Browsers: needs module scripts, Web Crypto (a secure context: HTTPS, or http://127.0.0.1 and
// localhost), createImageBitmap and a 2-D canvas; canHashOnDevice() says whether they are there.
// EXIF orientation is applied by createImageBitmap(..., {imageOrientation: "from-image"}) in current
// Chromium, Firefox and Safari; where a browser does not (appliesExifOrientation() probes it), a JPEG
// with an orientation tag is not hashed here but uploaded, and the server applies the tag.

export const REDUCE_MIN_SIDE = 384;
export const VARIANT_SET = 1;
export const PDQ_QUALITY_FLOOR = 50;
export const MAX_PIXELS = 50_000_000; // the server's default pixel cap (OPTOUT_MAX_IMAGE_PIXELS)

const F = Math.fround;
const LUMA_R = F(0.299);
const LUMA_G = F(0.587);
const LUMA_B = F(0.114);

export class CannotHash extends Error {}

// --- Capability -------------------------------------------------------------------------

// A 2x1 JPEG tagged with EXIF orientation 6: a browser that applies the tag decodes it as 1x2.
const ORIENTATION_PROBE =
  "/9j/4AAQSkZJRgABAQAAAQABAAD/4QAiRXhpZgAATU0AKgAAAAgAAQESAAMAAAABAAYAAAAAAAD/2wBDABALDA4MChAODQ4SERATGCga" +
  "GBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2Nj" +
  "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAABAAIDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAA" +
  "AAb/xAAbEAEAAAcAAAAAAAAAAAAAAAAAAQMFBjZ0sv/EABQBAQAAAAAAAAAAAAAAAAAAAAD/xAAUEQEAAAAAAAAAAAAAAAAAAAAA/9oA" +
  "DAMBAAIRAxEAPwCPuDIantze4gA//9k=";

let orientationSupport = null;

// Whether createImageBitmap applies EXIF orientation. Browsers that do not (old Safari, old Firefox)
// would hash a turned picture sideways; for them every picture with an orientation tag goes to the
// server instead, which applies it.
export function appliesExifOrientation() {
  if (orientationSupport === null) {
    const bytes = Uint8Array.from(atob(ORIENTATION_PROBE), (c) => c.charCodeAt(0));
    orientationSupport = createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), { imageOrientation: "from-image" })
      .then((bitmap) => {
        const turned = bitmap.width === 1 && bitmap.height === 2;
        bitmap.close();
        return turned;
      })
      .catch(() => false);
  }
  return orientationSupport;
}

export function canHashOnDevice() {
  return (
    typeof window !== "undefined" &&
    window.isSecureContext === true &&
    typeof crypto !== "undefined" &&
    crypto.subtle !== undefined &&
    typeof createImageBitmap === "function" &&
    typeof Blob !== "undefined" &&
    typeof Blob.prototype.arrayBuffer === "function"
  );
}

// --- Entry point --------------------------------------------------------------------------

// The signals of one picture (a File or Blob). Throws CannotHash (or a decoder error) when this
// browser cannot produce signals the server would agree with; the caller then uploads the file.
export async function computeSignals(file, { maxPixels = MAX_PIXELS } = {}) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const format = sniffFormat(bytes);
  if (format === null) {
    // The server's allow-list: anything else (HEIC, TIFF, SVG...) goes to the server, which refuses it
    // with its own words, rather than being hashed here into signals the server could not reproduce.
    throw new CannotHash("not a JPEG, PNG, WebP or GIF file");
  }
  const sha256 = await sha256Hex(bytes);
  const jpeg = format === "JPEG" ? readJpegHeader(bytes) : null;
  const orientation = jpeg ? jpeg.orientation : 1;
  if (orientation !== 1 && !(await appliesExifOrientation())) {
    throw new CannotHash("this browser does not apply EXIF orientation");
  }
  const bitmap = await createImageBitmap(file, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
  });
  try {
    const { width, height } = bitmap;
    if (!width || !height) throw new CannotHash("empty picture");
    if (width * height > maxPixels) throw new CannotHash("more pixels than the server accepts");
    const scale = reductionScale(width, height, jpeg !== null);
    const anchors = anchorsFor(orientation);
    const reduced = reduceToLuma(bitmap, scale, anchors);
    return signalsFromLuma(reduced, { width, height, scale, sha256, anchors });
  } finally {
    bitmap.close();
  }
}

// The pure part: from the reduced luma image (float32, row-major) and the full-size dimensions
// (after orientation) to the wire format.
export function signalsFromLuma(
  { luma, cols, rows },
  { width, height, scale, sha256, anchors = { x: false, y: false } },
) {
  const [rowsLanczos, colsLanczos] = [lanczosKernel(height, scale, rows, anchors.y), lanczosKernel(width, scale, cols, anchors.x)];
  const small = resample(luma, rows, cols, rowsLanczos, colsLanczos);
  const [rowsJarosz, colsJarosz] = [jaroszKernel(height, scale, rows, anchors.y), jaroszKernel(width, scale, cols, anchors.x)];
  const buffer64 = resample(luma, rows, cols, rowsJarosz, colsJarosz);
  const variants = {};
  for (const [name, transform] of Object.entries(DIHEDRAL)) {
    variants[name] = signalsFromGrids(permute(small, 32, transform), permute(buffer64, 64, transform));
  }
  for (const [name, keep, fx, fy] of CROPS) {
    const box = cropBox(rows, cols, keep, fx, fy);
    variants[name] = signalsOfCrop(luma, cols, box);
  }
  return { ...signalsFromGrids(small, buffer64), sha256, variant_set: VARIANT_SET, variants };
}

function signalsFromGrids(small, buffer64) {
  const { hex: pdq, quality } = pdqFromBuffer(buffer64);
  return { phash: phashFromSmall(small), pdq: quality >= PDQ_QUALITY_FLOOR ? pdq : null, pdq_quality: quality };
}

// --- Variants (optout/imaging/variants.py) ---------------------------------------------------

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

// --- Bytes --------------------------------------------------------------------------------

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The formats the server decodes (signals.ALLOWED_FORMATS), told apart by their first bytes.
export function sniffFormat(bytes) {
  const ascii = (start, length) => (bytes.length >= start + length ? readAscii(bytes, start, length) : "");
  if (bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "JPEG";
  if (ascii(0, 8) === "\x89PNG\r\n\x1a\n") return "PNG";
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") return "WEBP";
  if (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a") return "GIF";
  return null;
}

// The EXIF orientation of a JPEG (1 when absent or unreadable), as Pillow's getexif() reads it.
export function readJpegHeader(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 2;
  while (offset + 4 <= bytes.length) {
    if (bytes[offset] !== 0xff) break;
    const marker = bytes[offset + 1];
    if (marker === 0xff) {
      offset += 1; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break; // end of image, start of scan: no EXIF past here
    const length = view.getUint16(offset + 2);
    if (length < 2) break;
    const start = offset + 4;
    if (marker === 0xe1 && length >= 16 && start + 6 <= bytes.length && readAscii(bytes, start, 6) === "Exif\0\0") {
      return { orientation: tiffOrientation(view, start + 6, Math.min(start + length - 2, bytes.length)) };
    }
    offset = start + length - 2;
  }
  return { orientation: 1 };
}

function readAscii(bytes, start, length) {
  return String.fromCharCode(...bytes.subarray(start, start + length));
}

function tiffOrientation(view, tiff, end) {
  try {
    const order = view.getUint16(tiff);
    if (order !== 0x4949 && order !== 0x4d4d) return 1;
    const little = order === 0x4949;
    const ifd = tiff + view.getUint32(tiff + 4, little);
    const count = view.getUint16(ifd, little);
    for (let i = 0; i < count; i++) {
      const entry = ifd + 2 + i * 12;
      if (entry + 12 > end) return 1;
      if (view.getUint16(entry, little) === 0x0112) {
        const value = view.getUint16(entry + 8, little);
        return value >= 1 && value <= 8 ? value : 1;
      }
    }
  } catch {
    // Unreadable EXIF: the server hashes the pixels as stored in that case, and so do we.
  }
  return 1;
}

// --- Decoding and reduction -----------------------------------------------------------------

// The server's reduction factor (signals.compute_signals): libjpeg's draft() for JPEG picks the
// largest of 8, 4, 2 that keeps both sides >= 384; other formats are box-reduced by the integer part.
export function reductionScale(width, height, isJpegFile) {
  const fit = Math.floor(Math.min(width, height) / REDUCE_MIN_SIDE);
  if (!isJpegFile) return Math.max(1, fit);
  for (const factor of [8, 4, 2]) if (fit >= factor) return factor;
  return 1;
}

// The server reduces the picture as stored, then turns it: its reduction blocks start at the stored
// picture's top-left corner. For each axis of the upright picture, whether blocks start at its far end.
function anchorsFor(orientation) {
  const atEnd = {
    1: [false, false],
    2: [true, false],
    3: [true, true],
    4: [false, true],
    5: [false, false],
    6: [true, false],
    7: [true, true],
    8: [false, true],
  };
  const [x, y] = atEnd[orientation] || atEnd[1];
  return { x, y };
}

// Draw the bitmap 1:1 on white (flattening transparency as the server does), read it in bands of rows,
// box-average RGB over scale x scale blocks to 8 bits (Pillow's reduce()), and take float32 luma.
function reduceToLuma(bitmap, scale, anchors) {
  const { width, height } = bitmap;
  const canvas =
    typeof OffscreenCanvas === "function"
      ? new OffscreenCanvas(width, height)
      : Object.assign(document.createElement("canvas"), { width, height });
  const context = canvas.getContext("2d", { willReadFrequently: true });
  if (!context) throw new CannotHash("no 2-D canvas");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0);

  const offsetX = anchors.x ? (scale - (width % scale)) % scale : 0;
  const offsetY = anchors.y ? (scale - (height % scale)) % scale : 0;
  const cols = Math.ceil((width + offsetX) / scale);
  const rows = Math.ceil((height + offsetY) / scale);
  const luma = new Float32Array(cols * rows);
  const sums = new Float64Array(cols * 3);
  const counts = new Uint32Array(cols);
  const blockOfX = new Int32Array(width);
  for (let x = 0; x < width; x++) blockOfX[x] = Math.floor((x + offsetX) / scale);

  const band = Math.max(1, Math.floor(4_000_000 / width)); // rows per getImageData call (~16 MB)
  let row = 0; // the output row being accumulated
  let pending = false;
  const flush = () => {
    for (let c = 0; c < cols; c++) {
      const n = counts[c];
      const half = n >> 1;
      const r = Math.floor((sums[c * 3] + half) / n);
      const g = Math.floor((sums[c * 3 + 1] + half) / n);
      const b = Math.floor((sums[c * 3 + 2] + half) / n);
      luma[row * cols + c] = F(F(F(r * LUMA_R) + F(g * LUMA_G)) + F(b * LUMA_B));
    }
    sums.fill(0);
    counts.fill(0);
    pending = false;
  };
  for (let top = 0; top < height; top += band) {
    const bandRows = Math.min(band, height - top);
    const pixels = context.getImageData(0, top, width, bandRows).data;
    for (let dy = 0; dy < bandRows; dy++) {
      const y = top + dy;
      const block = Math.floor((y + offsetY) / scale);
      if (block !== row) {
        if (pending) flush();
        row = block;
      }
      let p = dy * width * 4;
      for (let x = 0; x < width; x++, p += 4) {
        const c = blockOfX[x];
        sums[c * 3] += pixels[p];
        sums[c * 3 + 1] += pixels[p + 1];
        sums[c * 3 + 2] += pixels[p + 2];
        counts[c] += 1;
      }
      pending = true;
    }
  }
  if (pending) flush();
  return { luma, cols, rows };
}

// --- Resampling geometry (optout/imaging/kernels.py: _fold, lanczos_kernel, jarosz_kernel) ----------

// Integrate full-resolution kernel rows (each of length n) over reduced pixels of `scale` source pixels,
// the last one of the stored picture averaging what is left; when an EXIF turn reversed this axis, that
// short block comes first (shortFirst), as in reduceToLuma and the server's _fold.
// Returned banded: for each output, the first input and weights.
function fold(kernel, n, scale, reducedCount, shortFirst) {
  const offset = shortFirst ? (scale - (n % scale)) % scale : 0;
  return kernel.map((full) => {
    const folded = new Float64Array(reducedCount);
    for (let i = 0; i < n; i++) folded[Math.floor((i + offset) / scale)] += full[i];
    let first = 0;
    while (first < reducedCount && !(Math.abs(folded[first]) > 1e-9)) first++;
    let last = reducedCount - 1;
    while (last > first && !(Math.abs(folded[last]) > 1e-9)) last--;
    return { first, weights: Float32Array.from(folded.subarray(first, last + 1)) };
  });
}

const kernelCache = new Map();

function cached(key, build) {
  if (!kernelCache.has(key)) {
    if (kernelCache.size > 512) kernelCache.clear();
    kernelCache.set(key, build());
  }
  return kernelCache.get(key);
}

function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

// Pillow's resize(..., LANCZOS) coefficients for n -> 32 (Resample.c precompute_coeffs).
function lanczosKernel(n, scale, reducedCount, shortFirst, out = 32) {
  return cached(`l${n},${scale},${reducedCount},${shortFirst}`, () => {
    const step = n / out;
    const filterScale = Math.max(step, 1);
    const support = 3 * filterScale;
    const kernel = [];
    for (let i = 0; i < out; i++) {
      const center = (i + 0.5) * step;
      const lo = Math.max(Math.trunc(center - support + 0.5), 0);
      const hi = Math.min(Math.trunc(center + support + 0.5), n);
      const row = new Float64Array(n);
      let total = 0;
      for (let j = lo; j < hi; j++) {
        const x = (j - center + 0.5) / filterScale;
        const w = Math.abs(x) < 3 ? sinc(x) * sinc(x / 3) : 0;
        row[j] = w;
        total += w;
      }
      for (let j = lo; j < hi; j++) row[j] /= total;
      kernel.push(row);
    }
    return fold(kernel, n, scale, reducedCount, shortFirst);
  });
}

// PDQ's two box-filter passes along one axis, sampled at the 64 decimation points (ThreatExchange's
// box1DFloat with window ceil(n / 128), then decimateFloat at int((k + 0.5) * n / 64)).
function jaroszKernel(n, scale, reducedCount, shortFirst) {
  return cached(`j${n},${scale},${reducedCount},${shortFirst}`, () => {
    const window = Math.floor((n + 127) / 128);
    const half = Math.floor((window + 2) / 2);
    const lower = (i) => Math.max(i - (window - half), 0);
    const upper = (i) => Math.min(i + half - 1, n - 1);
    const kernel = [];
    for (let k = 0; k < 64; k++) {
      const sample = Math.floor(((k + 0.5) * n) / 64);
      const lo = lower(sample);
      const hi = upper(sample);
      const delta = new Float64Array(n + 1);
      for (let inner = lo; inner <= hi; inner++) {
        const innerLo = lower(inner);
        const innerHi = upper(inner);
        const weight = 1 / (hi - lo + 1) / (innerHi - innerLo + 1);
        delta[innerLo] += weight;
        delta[innerHi + 1] -= weight;
      }
      const row = new Float64Array(n);
      let running = 0;
      for (let i = 0; i < n; i++) {
        running += delta[i];
        row[i] = running;
      }
      kernel.push(row);
    }
    return fold(kernel, n, scale, reducedCount, shortFirst);
  });
}

// rowsKernel @ image @ colsKernel^T, rows first (as the server), in float32 storage.
function resample(image, rows, cols, rowsKernel, colsKernel) {
  const outRows = rowsKernel.length;
  const outCols = colsKernel.length;
  const partial = new Float32Array(outRows * cols);
  for (let o = 0; o < outRows; o++) {
    const { first, weights } = rowsKernel[o];
    const target = new Float64Array(cols);
    for (let b = 0; b < weights.length; b++) {
      const w = weights[b];
      const base = (first + b) * cols;
      for (let c = 0; c < cols; c++) target[c] += w * image[base + c];
    }
    partial.set(target, o * cols);
  }
  const result = new Float32Array(outRows * outCols);
  for (let o = 0; o < outRows; o++) {
    const base = o * cols;
    for (let p = 0; p < outCols; p++) {
      const { first, weights } = colsKernel[p];
      let sum = 0;
      for (let b = 0; b < weights.length; b++) sum += weights[b] * partial[base + first + b];
      result[o * outCols + p] = sum;
    }
  }
  return result;
}

// --- pHash (imagehash.phash on the 32x32 image) ---------------------------------------------

function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function phashFromSmall(small) {
  const size = 32;
  const pixels = Float64Array.from(small, (v) => Math.min(255, Math.max(0, roundHalfEven(v))));
  // scipy.fftpack.dct (type II, unnormalised) along axis 0, then axis 1; only the 8x8 low frequencies.
  const cosines = new Float64Array(8 * size);
  for (let k = 0; k < 8; k++) {
    for (let n = 0; n < size; n++) cosines[k * size + n] = 2 * Math.cos((Math.PI * k * (2 * n + 1)) / (2 * size));
  }
  const columns = new Float64Array(8 * size); // [k][x]: DCT down each column
  for (let k = 0; k < 8; k++) {
    for (let x = 0; x < size; x++) {
      let sum = 0;
      for (let y = 0; y < size; y++) sum += cosines[k * size + y] * pixels[y * size + x];
      columns[k * size + x] = sum;
    }
  }
  const low = new Float64Array(64);
  for (let k = 0; k < 8; k++) {
    for (let l = 0; l < 8; l++) {
      let sum = 0;
      for (let x = 0; x < size; x++) sum += cosines[l * size + x] * columns[k * size + x];
      low[k * 8 + l] = sum;
    }
  }
  const sorted = Array.from(low).sort((a, b) => a - b);
  const median = (sorted[31] + sorted[32]) / 2; // numpy.median of 64 values
  // Row-major bits, first bit most significant: str(ImageHash).
  return bitsToHex(Array.from(low, (v) => v > median));
}

// --- PDQ ------------------------------------------------------------------------------------

let pdqDct = null;

function pdqDctMatrix() {
  if (pdqDct === null) {
    pdqDct = new Float32Array(16 * 64);
    for (let i = 1; i <= 16; i++) {
      for (let j = 0; j < 64; j++) {
        pdqDct[(i - 1) * 64 + j] = Math.sqrt(2 / 64) * Math.cos((Math.PI / 128) * i * (2 * j + 1));
      }
    }
  }
  return pdqDct;
}

function pdqFromBuffer(buffer) {
  // Quality: the reference truncates each scaled step to an integer before summing.
  let gradient = 0;
  for (let y = 0; y < 64; y++) {
    for (let x = 0; x < 64; x++) {
      const here = buffer[y * 64 + x];
      if (y < 63) gradient += Math.abs(Math.trunc(F(F(F(here - buffer[(y + 1) * 64 + x]) * 100) / 255)));
      if (x < 63) gradient += Math.abs(Math.trunc(F(F(F(here - buffer[y * 64 + x + 1]) * 100) / 255)));
    }
  }
  const quality = Math.min(100, Math.floor(gradient / 90));

  const dct = pdqDctMatrix();
  const left = new Float64Array(16 * 64); // dct @ buffer
  for (let i = 0; i < 16; i++) {
    for (let x = 0; x < 64; x++) {
      let sum = 0;
      for (let y = 0; y < 64; y++) sum += dct[i * 64 + y] * buffer[y * 64 + x];
      left[i * 64 + x] = sum;
    }
  }
  const coefficients = new Float64Array(256); // (dct @ buffer @ dct^T), row-major: bit k = i * 16 + j
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let x = 0; x < 64; x++) sum += left[i * 64 + x] * dct[j * 64 + x];
      coefficients[i * 16 + j] = sum;
    }
  }
  const median = Array.from(coefficients).sort((a, b) => a - b)[127]; // Torben's median: the 128th smallest
  // Bit k is coefficient k above the median; the hex is the 256-bit number, most significant digit first.
  const bits = new Array(256);
  for (let k = 0; k < 256; k++) bits[255 - k] = coefficients[k] > median;
  return { hex: bitsToHex(bits), quality };
}

// Bits, most significant first, as lower-case hex.
function bitsToHex(bits) {
  let hex = "";
  for (let i = 0; i < bits.length; i += 4) {
    const nibble = (bits[i] << 3) | (bits[i + 1] << 2) | (bits[i + 2] << 1) | bits[i + 3];
    hex += nibble.toString(16);
  }
  return hex;
}
