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

import { canHashOnDevice, computeSignals } from "./signals.js";

const form = document.getElementById("removal-form");
const input = form && form.querySelector('input[type="file"][name="images"]');
const field = document.getElementById("id_signals");
const notice = document.getElementById("device-hashing");

if (form && input && field && notice && canHashOnDevice()) {
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

  const choose = () => {
    run += 1;
    const thisRun = run;
    const files = Array.from(input.files || []);
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
        "This browser could not read the picture, so it will be sent to us when you send the request. " +
          "Our server works out its fingerprints in memory and does not keep the picture.",
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
