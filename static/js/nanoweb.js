// nanoweb studio: small progressive enhancements on top of server-rendered HTMX forms.
window.nanoweb = (() => {
  const $ = (sel, root = document) => root.querySelector(sel);

  function refInput() { return $("#id_references"); }
  function promptChars() { const p = $("#id_prompt"); return p ? p.value.length : 0; }
  function refCount() { const i = refInput(); return i && i.files ? i.files.length : 0; }

  function showPreviews() {
    const input = refInput(), box = $("#ref-previews");
    if (!input || !box) return;
    box.replaceChildren(...Array.from(input.files).map((file) => {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      img.title = file.name;
      return img;
    }));
    document.body.dispatchEvent(new CustomEvent("nw:refs"));
  }

  function addFiles(files) {
    const input = refInput();
    if (!input) return;
    const dt = new DataTransfer();
    Array.from(input.files).forEach((f) => dt.items.add(f));
    Array.from(files).filter((f) => f.type.startsWith("image/")).forEach((f) => dt.items.add(f));
    input.files = dt.files;
    showPreviews();
  }

  document.addEventListener("change", (e) => { if (e.target.id === "id_references") showPreviews(); });
  document.addEventListener("paste", (e) => {
    const files = e.clipboardData && e.clipboardData.files;
    if (files && files.length && refInput()) { addFiles(files); e.preventDefault(); }
  });
  document.addEventListener("dragover", (e) => {
    const zone = e.target.closest && e.target.closest(".dropzone");
    if (zone) { e.preventDefault(); zone.classList.add("is-over"); }
  });
  document.addEventListener("dragleave", (e) => {
    const zone = e.target.closest && e.target.closest(".dropzone");
    if (zone) zone.classList.remove("is-over");
  });
  document.addEventListener("drop", (e) => {
    const zone = e.target.closest && e.target.closest(".dropzone");
    if (zone) { e.preventDefault(); zone.classList.remove("is-over"); addFiles(e.dataTransfer.files); }
  });
  // Ctrl/⌘+Enter submits the studio form from anywhere in it.
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      const form = $("#studio-form");
      if (form) { e.preventDefault(); form.requestSubmit(); }
    }
  });

  // "Use the earlier result": bring its card into view and mark it for a moment.
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest("[data-highlight]");
    const card = link && document.getElementById(link.dataset.highlight);
    if (!card) return;
    e.preventDefault();
    card.scrollIntoView({ behavior: "smooth", block: "center" });
    card.classList.add("is-highlighted");
    setTimeout(() => card.classList.remove("is-highlighted"), 2500);
    const notice = $("#duplicate-notice");
    if (notice) notice.replaceChildren();
  });

  // Copy buttons (the API page's new token): data-copy="<selector of the text>".
  document.addEventListener("click", async (e) => {
    const button = e.target.closest && e.target.closest("[data-copy]");
    if (!button) return;
    const source = $(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch (err) {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });

  return { promptChars, refCount };
})();

/* Batches and live status */
// One poller per page, not one per card: every ~1.5 s while anything is in flight (cards
// marked data-live, the navigation's counter, or an active batch), paused while the tab is
// hidden. The answer is out-of-band swaps for just the cards that changed.
(() => {
  const POLL_MS = 1500;
  let timer = null;
  let busy = false;
  const $ = (sel) => document.querySelector(sel);
  const liveCards = () => Array.from(document.querySelectorAll("[data-live]"));
  const counter = () => $("#nav-generating");
  const batch = () => $("[data-live-batch]");

  function needed() {
    const c = counter();
    const b = batch();
    return liveCards().length > 0 || (c && Number(c.dataset.count) > 0)
      || (b && b.dataset.liveBatch === "active");
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (needed() && document.visibilityState !== "hidden") timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const c = counter();
    if (busy || !c || document.visibilityState === "hidden") return;
    busy = true;
    const params = new URLSearchParams();
    params.set("cards", liveCards().map((el) => `${el.id.replace(/^job-/, "")}:${el.dataset.live}`).join(","));
    const b = batch();
    if (b) params.set("batch", b.dataset.batchId);
    if ($("#quota-pill")) params.set("quota", "1");
    try {
      await htmx.ajax("GET", `${c.dataset.liveUrl}?${params}`, { swap: "none", source: c });
    } catch (err) {
      // a missed poll is retried on the next tick
    } finally {
      busy = false;
      schedule();
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") poll(); else clearTimeout(timer);
  });
  document.addEventListener("htmx:afterSettle", () => { if (!busy) schedule(); });
  document.addEventListener("DOMContentLoaded", schedule);

  // Elapsed seconds on generating cards tick in the browser (from what the server rendered),
  // so a running card is not re-sent every second.
  setInterval(() => {
    document.querySelectorAll(".elapsed").forEach((el) => {
      if (el.dataset.base === undefined) { el.dataset.base = el.textContent; el.dataset.t0 = Date.now(); }
      el.textContent = Number(el.dataset.base) + Math.floor((Date.now() - Number(el.dataset.t0)) / 1000);
    });
  }, 1000);
})();
