// The hash kernels of static/js/signals.js, as optout/imaging/kernels.py and hashes.py on the server:
// each library's resampling geometry folded over the reduced pixels, the banded resampling itself,
// pHash (imagehash.phash on the 32x32 image) and PDQ's last steps (quality, 16x16 DCT, median).
// Every step keeps the server's order of float32 and float64 operations, so that given the same
// pixels the same bits come out.

export const PDQ_QUALITY_FLOOR = 50;

const F = Math.fround;

// The signals of one pair of hash grids (pHash's 32x32 image, PDQ's 64x64 buffer), in the wire format
// without sha256: hashes.signals_from_grids.
export function signalsFromGrids(small, buffer64) {
  const { hex: pdq, quality } = pdqFromBuffer(buffer64);
  return { phash: phashFromSmall(small), pdq: quality >= PDQ_QUALITY_FLOOR ? pdq : null, pdq_quality: quality };
}

// --- Resampling geometry (optout/imaging/kernels.py: _fold, lanczos_kernel, jarosz_kernel) ----------

// Integrate full-resolution kernel rows over reduced pixels of `scale` source pixels, the last one of the
// stored picture averaging what is left; when an EXIF turn reversed this axis, that short block comes
// first (shortFirst), as in reduceToLuma and the server's _fold. Each row is {lo, values}: its weights
// for full-size pixels lo, lo + 1, ... (zero elsewhere, and adding zeros changes no sum, so the server's
// dense rows give the same folded weights). Returned banded: for each output, the first input and weights.
function fold(kernel, n, scale, reducedCount, shortFirst) {
  const offset = shortFirst ? (scale - (n % scale)) % scale : 0;
  return kernel.map(({ lo, values }) => {
    const folded = new Float64Array(reducedCount);
    for (let j = 0; j < values.length; j++) folded[Math.floor((lo + j + offset) / scale)] += values[j];
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

// Pillow's resize(..., LANCZOS) coefficients for n -> out (Resample.c precompute_coeffs).
export function lanczosKernel(n, scale, reducedCount, shortFirst, out = 32) {
  return cached(`l${n},${scale},${reducedCount},${shortFirst},${out}`, () => {
    const step = n / out;
    const filterScale = Math.max(step, 1);
    const support = 3 * filterScale;
    const kernel = [];
    for (let i = 0; i < out; i++) {
      const center = (i + 0.5) * step;
      const lo = Math.max(Math.trunc(center - support + 0.5), 0);
      const hi = Math.min(Math.trunc(center + support + 0.5), n);
      const values = new Float64Array(hi - lo);
      let total = 0;
      for (let j = lo; j < hi; j++) {
        const x = (j - center + 0.5) / filterScale;
        const w = Math.abs(x) < 3 ? sinc(x) * sinc(x / 3) : 0;
        values[j - lo] = w;
        total += w;
      }
      for (let j = 0; j < values.length; j++) values[j] /= total;
      kernel.push({ lo, values });
    }
    return fold(kernel, n, scale, reducedCount, shortFirst);
  });
}

// PDQ's two box-filter passes along one axis, sampled at the 64 decimation points (ThreatExchange's
// box1DFloat with window ceil(n / 128), then decimateFloat at int((k + 0.5) * n / 64)).
export function jaroszKernel(n, scale, reducedCount, shortFirst) {
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
      kernel.push({ lo: 0, values: row }); // dense: the running sum leaves rounding residue past the window
    }
    return fold(kernel, n, scale, reducedCount, shortFirst);
  });
}

// rowsKernel @ image @ colsKernel^T, rows first (as the server), in float32 storage.
export function resample(image, rows, cols, rowsKernel, colsKernel) {
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