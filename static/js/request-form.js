// The removal form: hash the chosen pictures on this device and send only their signals.
//
// Without this script (JavaScript off, a browser without module scripts, Web Crypto or
// createImageBitmap) the form uploads the file as before and the server hashes it in memory.
// With it, each chosen picture is decoded and hashed here; when every picture succeeded, the
// hidden `signals` field holds their signals and the file input is disabled on submit, so the
// browser sends no file part at all. If any picture cannot be hashed here, nothing is filled in
// and the files are uploaded instead, and the page says so.
//
// The form's state is on its data-hashing attribute (idle, pending, done, failed); people read it
// in the status text. (Not form.dataset: the form has a field named "dataset", which shadows it.)
//
// Whatever the browser can hash, a chosen file that is not a picture (by its first bytes, as the
// server judges it) is taken out of the input at once, with the reason next to the field: a
// possibly private document is never uploaded only to be refused.

import { canHashOnDevice, computeSignals, sniffFormat } from "./signals.js";

const form = document.getElementById("removal-form");
const input = form && form.querySelector('input[type="file"][name="images"]');
const field = document.getElementById("id_signals");
const notice = document.getElementById("device-hashing");

// Names of the chosen files that are not JPEG, PNG, WebP or GIF files.
const notPictures = async (files) => {
  const bad = [];
  for (const file of files) {
    const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    if (sniffFormat(head) === null) bad.push(file.name || "The file");
  }
  return bad;
};

const typeError = (() => {
  if (!input) return null;
  const element = document.createElement("p");
  element.id = `${input.id}_device_error`;
  element.className = "errorlist device-error";
  element.hidden = true;
  input.insertAdjacentElement("beforebegin", element);
  return element;
})();

const showTypeError = (names) => {
  const described = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== typeError.id);
  if (names.length === 0) {
    typeError.hidden = true;
    typeError.textContent = "";
    if (!document.getElementById(`${input.id}_error`)) input.removeAttribute("aria-invalid");
  } else {
    const which = names.length === 1 ? `"${names[0]}" is not a picture` : `${names.map((n) => `"${n}"`).join(", ")} are not pictures`;
    typeError.textContent =
      `${which} in JPEG, PNG, WebP or GIF format, so nothing was sent and the choice was cleared. ` +
      "Choose the picture itself (an iPhone photo in HEIC format: share or export it as JPEG first).";
    typeError.hidden = false;
    input.setAttribute("aria-invalid", "true");
    described.push(typeError.id);
  }
  if (described.length) input.setAttribute("aria-describedby", described.join(" "));
  else input.removeAttribute("aria-describedby");
};

// Checks the chosen files; false (and the input cleared) when one is not a picture.
const checkTypes = async () => {
  form.setAttribute("data-type-check", "checking");
  const bad = await notPictures(Array.from(input.files || []));
  showTypeError(bad);
  if (bad.length) {
    input.value = ""; // an emptied input uploads nothing
    form.setAttribute("data-type-check", "refused");
    return false;
  }
  form.setAttribute("data-type-check", "ok");
  return true;
};

const hashing = form && input && field && notice && canHashOnDevice();
if (form && input && !hashing) input.addEventListener("change", checkTypes);
if (form && input) {
  // A file chosen a moment ago may not be checked yet: check it before anything is sent.
  form.addEventListener("submit", (event) => {
    if (input.files && input.files.length && form.getAttribute("data-type-check") !== "ok") {
      event.preventDefault();
      checkTypes().then((ok) => ok && form.requestSubmit());
    }
  });
}

if (hashing) {
  const status = notice.querySelector("[data-hashing-status]");
  const previews = notice.querySelector("[data-hashing-previews]");
  const promise = notice.querySelector("[data-hashing-promise]");
  let work = null; // the promise of the current hashing run
  let run = 0; // a newer choice of files makes older runs stale
  let thumbnails = [];
  // The server's pixel cap, when the page states it; signals.js has the default.
  const maxPixels = Number(form.getAttribute("data-max-pixels")) || undefined;

  const say = (state, text) => {
    form.setAttribute("data-hashing", state);
    status.textContent = text;
    promise.hidden = state === "failed"; // never promise what is not happening
  };

  const clearPreviews = () => {
    for (const url of thumbnails) URL.revokeObjectURL(url);
    thumbnails = [];
    previews.replaceChildren();
  };

  const showPreview = (file, number, count) => {
    const url = URL.createObjectURL(file); // a blob: URL, never sent anywhere
    thumbnails.push(url);
    const image = document.createElement("img");
    image.src = url;
    image.alt = count > 1 ? `Picture ${number} you chose (shown on this device only)` : "The picture you chose (shown on this device only)";
    image.className = "device-preview";
    image.decoding = "async";
    previews.append(image);
  };

  const hash = async (files, thisRun) => {
    const results = [];
    for (const file of files) {
      results.push(await computeSignals(file, { maxPixels }));
      if (thisRun !== run) return;
    }
    field.value = JSON.stringify(results);
    const what = files.length === 1 ? "your picture" : `your ${files.length} pictures`;
    say("done", `Fingerprints of ${what} are ready. Only these fingerprints will be sent, not the picture.`);
  };

  const choose = async () => {
    run += 1;
    const thisRun = run;
    // Pending from the first moment: the state of the previous choice must not stand while this one's
    // type is checked (a sender, or a test, would take the old fingerprints for the new picture's).
    work = null;
    field.value = "";
    say("pending", "Checking the chosen file…");
    const typesOk = await checkTypes();
    if (thisRun !== run) return;
    const files = typesOk ? Array.from(input.files || []) : [];
    field.value = "";
    clearPreviews();
    if (files.length === 0) {
      work = null;
      say("idle", "");
      return;
    }
    files.forEach((file, index) => showPreview(file, index + 1, files.length));
    say("pending", "Working out the fingerprints on this device…");
    work = hash(files, thisRun).catch(() => {
      if (thisRun !== run) return;
      field.value = "";
      say(
        "failed",
        "The fingerprints could not be worked out on this device, so the picture will be sent to us when you " +
          "send the request. Our server works them out in memory and does not keep the picture.",
      );
    });
  };

  input.addEventListener("change", choose);

  form.addEventListener("submit", (event) => {
    if (form.getAttribute("data-hashing") === "pending" && work) {
      // Send once the fingerprints are ready (or the fallback is decided), never the file by accident.
      event.preventDefault();
      const waiting = work;
      waiting.then(() => {
        if (waiting === work && form.getAttribute("data-hashing") !== "pending") form.requestSubmit();
      });
      return;
    }
    if (form.getAttribute("data-hashing") === "done" && field.value) {
      input.disabled = true; // a disabled input sends no part: the picture stays here
    }
  });

  // Coming back with the Back button: the input must work again.
  window.addEventListener("pageshow", () => {
    input.disabled = false;
  });

  notice.hidden = false;
  if (field.value) {
    // The page came back with an error: the fingerprints from the last try are kept in the form.
    say("done", "The fingerprints of your picture from your last try are kept. Choose the picture again only to change it.");
  } else {
    say("idle", "");
  }
}
