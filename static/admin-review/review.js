// The review page: the approve button counts the items it will block, live, as decisions change.
// Without this script the page works the same: the decisions are sent with "Approve" together.

const button = document.querySelector("[data-approve-button]");
const selects = Array.from(document.querySelectorAll("select.review-item-decision"));

const willBlock = (select) =>
  select.value === "approve" || (select.value === "" && select.getAttribute("data-matches") === "1");

const update = () => {
  const count = selects.filter(willBlock).length;
  button.querySelector("[data-block-count]").textContent = String(count);
  button.querySelector("[data-block-plural]").textContent = count === 1 ? "" : "s";
  button.disabled = count === 0;
  for (const select of selects) {
    const article = select.closest(".review-item");
    const outcome = article && article.querySelector("[data-outcome]");
    if (!outcome) continue;
    const blocks = willBlock(select);
    article.setAttribute("data-will-block", blocks ? "1" : "0");
    outcome.innerHTML = blocks ? "<strong>will be blocked</strong> on approval" : "will not be blocked";
  }
};

if (button && selects.length) {
  for (const select of selects) select.addEventListener("change", update);
  update();
}
