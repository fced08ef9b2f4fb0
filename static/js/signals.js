// Image signals computed on the person's own device: the same pHash, PDQ (with its quality) and
// sha256 that optout/imaging computes on the server, so that the picture itself never has to be
// sent. No dependencies: the browser decodes the file, this module and its two own modules do the
// arithmetic (kernels.js: the hash kernels; variants.js: the reference variants).
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
// optout/imaging/variants.py's reference set, computed from the same reduced luma (variants.js).
//
// Browsers: needs module scripts, Web Crypto (a secure context: HTTPS, or http://127.0.0.1 and
// localhost), createImageBitmap and a 2-D canvas; canHashOnDevice() says whether they are there.
// EXIF orientation is applied by createImageBitmap(..., {imageOrientation: "from-image"}) in current
// Chromium, Firefox and Safari; where a browser does not (appliesExifOrientation() probes it), a JPEG
// with an orientation tag is not hashed here but uploaded, and the server applies the tag.

import { jaroszKernel, lanczosKernel, resample, signalsFromGrids } from "./kernels.js";
import { referenceVariants, VARIANT_SET } from "./variants.js";

export { PDQ_QUALITY_FLOOR } from "./kernels.js";
export { CROPS, DIHEDRAL, GRID_SIDE, VARIANT_SET } from "./variants.js";

export const REDUCE_MIN_SIDE = 384;
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
  const variants = referenceVariants(small, buffer64, { luma, rows, cols }, { width, height, scale, anchors });
  return { ...signalsFromGrids(small, buffer64), sha256, variant_set: VARIANT_SET, variants };
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
