// Small things every requester page does with JavaScript; each page works without it.
//
// - After a refused form, focus moves to the error summary, so a screen reader reads it first and
//   the keyboard starts there.
// - A "Copy" button copies the text of the element its data-copy attribute names, and says so in a
//   live region (people who cannot see the screen hear that it worked).

const summary = document.getElementById("error-summary");
if (summary) summary.focus();

for (const button of document.querySelectorAll("button[data-copy]")) {
  const source = document.getElementById(button.getAttribute("data-copy"));
  const said = document.getElementById(button.getAttribute("aria-describedby") || "") || null;
  if (!source || !navigator.clipboard) continue;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const text = source.getAttribute("data-value") || source.textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
      button.setAttribute("data-copied", "yes");
      if (said) said.textContent = `${button.getAttribute("data-what") || "Text"} copied.`;
    } catch {
      if (said) said.textContent = "Copying did not work here. Select the text and copy it by hand.";
    }
  });
}
