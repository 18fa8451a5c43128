// nanoweb studio: small progressive enhancements on top of server-rendered HTMX forms.
// A plain script (no build step). URLs come from the page's data- attributes, never from here.
(() => {
const $ = (sel, root = document) => root.querySelector(sel);

/* Forms that ask first: <form data-confirm="Sure?">. (No inline handlers: the
   Content-Security-Policy runs only this site's script files.) */
document.addEventListener("submit", (e) => {
  const form = e.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) e.preventDefault();
}, true);

/* Requests from [data-send-counts] also say how long the prompt is and how many
   references are picked (the estimate depends on both; the files themselves stay). */
document.addEventListener("htmx:configRequest", (e) => {
  if (!e.detail.elt.closest("[data-send-counts]")) return;
  e.detail.parameters.prompt_chars = window.nanoweb.promptChars();
  e.detail.parameters.ref_count = window.nanoweb.refCount();
});

/* The browser's time zone, for people who have not chosen one: the server shows every
   time in it (accounts/preferences.py reads this cookie). */
(() => {
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (err) { return; }
  const value = encodeURIComponent(zone);
  if (zone && !document.cookie.split("; ").includes(`nw_tz=${value}`)) {
    document.cookie = `nw_tz=${value}; path=/; max-age=31536000; samesite=lax`;
  }
})();

/* A navigation wider than the screen fades at the edge that has more to scroll to. */
function navEdges() {
  const nav = $(".topbar .nav");
  if (!nav) return;
  const end = nav.scrollWidth - nav.clientWidth;
  nav.classList.toggle("can-scroll-left", end > 1 && nav.scrollLeft > 1);
  nav.classList.toggle("can-scroll-right", end > 1 && nav.scrollLeft < end - 1);
}
document.addEventListener("DOMContentLoaded", () => {
  navEdges();
  const nav = $(".topbar .nav");
  if (nav) nav.addEventListener("scroll", navEdges, { passive: true });
});
window.addEventListener("resize", navEdges);

/* The gallery's filters apply on change; the search box has its own delayed trigger. */
document.addEventListener("change", (e) => {
  const form = e.target.closest("#gallery-filters");
  if (form && e.target.name !== "q") htmx.trigger(form, "nw:filter");
});

/* References, the studio form, copy buttons */
window.nanoweb = (() => {
  function refInput() { return $("#id_references"); }
  function promptChars() { const p = $("#id_prompt"); return p ? p.value.length : 0; }
  function refCount() { const i = refInput(); return i && i.files ? i.files.length : 0; }

  function maxRefs() { const m = $("#max-refs"); return m ? Number(m.value) : Infinity; }

  // Each reference gets a thumbnail and its own ✕; more than the model takes is said
  // here, before Generate, with the ones over the limit marked.
  function showPreviews() {
    const input = refInput(), box = $("#ref-previews");
    if (!input || !box) return;
    const limit = maxRefs();
    box.replaceChildren(...Array.from(input.files).map((file, i) => {
      const thumb = document.createElement("span");
      thumb.className = "thumb" + (i >= limit ? " is-over" : "");
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      img.title = file.name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "thumb-remove";
      remove.dataset.removeRef = String(i);
      // The sentence comes translated from the page: data-remove-template="Remove %(name)s".
      remove.setAttribute("aria-label", (box.dataset.removeTemplate || "Remove %(name)s").replace("%(name)s", () => file.name));
      remove.textContent = "✕";
      thumb.append(img, remove);
      return thumb;
    }));
    const label = $("#max-refs-label");
    if (label && Number.isFinite(limit)) label.textContent = String(limit);
    const over = $("#refs-over");
    if (over) {
      const n = input.files.length;
      over.hidden = n <= limit;
      over.textContent = n <= limit ? "" : (over.dataset.template || "")
        .replace("%(count)s", String(n)).replace("%(limit)s", String(limit));
    }
    document.body.dispatchEvent(new CustomEvent("nw:refs"));
  }

  function keepFiles(input, keep) {
    const dt = new DataTransfer();
    Array.from(input.files).filter(keep).forEach((f) => dt.items.add(f));
    input.files = dt.files;
  }

  document.addEventListener("click", (e) => {
    const remove = e.target.closest && e.target.closest("[data-remove-ref]");
    const input = refInput();
    if (!remove || !input) return;
    e.preventDefault();  // the drop zone is the input's label: do not open the picker
    const index = Number(remove.dataset.removeRef);
    keepFiles(input, (f, i) => i !== index);
    showPreviews();
  });

  // Editing a field clears the error written under it: a "Write a prompt" left under a
  // prompt that has one since is wrong, not helpful.
  document.addEventListener("input", (e) => {
    const field = e.target.closest && e.target.closest("#studio-form .field");
    if (field) field.querySelectorAll(":scope > .field-error:not(#refs-over)").forEach((p) => p.remove());
  });

  // A refused Generate re-renders the form; the files picked stay picked (a browser
  // cannot refill a file input from the server), and the estimate is asked again.
  let heldFiles = null, swapped = "";
  document.addEventListener("htmx:beforeSwap", (e) => {
    const input = refInput();
    swapped = (e.detail.target && e.detail.target.id) || "";
    heldFiles = swapped === "studio-form" && input ? input.files : null;
  });
  document.addEventListener("htmx:afterSwap", () => {
    const input = refInput();
    if (heldFiles && input && heldFiles.length && !input.files.length) {
      const dt = new DataTransfer();
      Array.from(heldFiles).forEach((f) => dt.items.add(f));
      input.files = dt.files;
    }
    heldFiles = null;
  });
  // After settling, so the swapped-in estimate listens for the nw:refs it sends.
  document.addEventListener("htmx:afterSettle", () => {
    if (refInput() && ["studio-form", "model-options"].includes(swapped)) showPreviews();
    swapped = "";
  });

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

  // Drag a gallery tile or a Recent card onto the drop zone to use its image as a
  // reference. The source carries its file URL in data-full (and its id in data-image-id);
  // dragstart hands them over as IMAGE_TYPE, which works across this browser's tabs too.
  const IMAGE_TYPE = "application/x-nanoweb-image";
  document.addEventListener("dragstart", (e) => {
    const source = e.target.closest && e.target.closest("[data-full]");
    if (!source) return;
    const url = new URL(source.dataset.full, location.href).href;
    e.dataTransfer.setData(IMAGE_TYPE, JSON.stringify({ url, id: source.dataset.imageId || "" }));
    // A tile dragged out of the page gives its file; a Recent card keeps its link's own URL.
    if (source.matches("[data-tile]")) e.dataTransfer.setData("text/uri-list", url);
  });

  async function addPageImage(data) {
    const input = refInput();
    let image, url;
    try {
      image = JSON.parse(data);
      url = new URL(image.url, location.href);
    } catch (err) { return; }
    if (!input || url.origin !== location.origin) return;
    const response = await fetch(url.href);
    if (!response.ok) return;
    const blob = await response.blob();
    const dt = new DataTransfer();
    Array.from(input.files).forEach((f) => dt.items.add(f));
    dt.items.add(new File([blob], `gallery-${String(image.id).slice(0, 8)}.${blob.type.split("/")[1]}`, { type: blob.type }));
    input.files = dt.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  // One drop handler: files from the desktop, or an image dragged from the page.
  document.addEventListener("drop", (e) => {
    const zone = e.target.closest && e.target.closest(".dropzone");
    if (!zone) return;
    e.preventDefault();
    zone.classList.remove("is-over");
    const files = e.dataTransfer.files;
    if (files && files.length) addFiles(files);
    else if (e.dataTransfer.types.includes(IMAGE_TYPE)) addPageImage(e.dataTransfer.getData(IMAGE_TYPE));
  });
  // Ctrl/⌘+Enter submits the studio form from anywhere in it.
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      const form = $("#studio-form");
      if (form) { e.preventDefault(); form.requestSubmit(); }
    }
  });

  // New cards go to the top of Recent. Where Recent sits below the form (a phone), the
  // page scrolls to the first new card instead of leaving it a screen or two below.
  let firstCard, awaitingCards = false;
  document.addEventListener("htmx:beforeRequest", (e) => {
    if (e.detail.elt.id !== "studio-form") return;
    firstCard = $("#results article.card");
    awaitingCards = true;
  });
  document.addEventListener("htmx:afterSettle", () => {
    const card = awaitingCards && $("#results article.card");
    if (!card || card === firstCard) return;
    awaitingCards = false;
    const top = card.getBoundingClientRect().top;
    if (top > window.innerHeight - 80 || top < 0) card.scrollIntoView({ behavior: "smooth", block: "start" });
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

  // The same request again offers the earlier result: with the form taller than the
  // window (Ctrl/⌘+Enter from the prompt), bring that offer into view.
  document.addEventListener("htmx:afterSettle", (e) => {
    const offer = e.target.closest && e.target.closest("#duplicate-notice");
    if (offer && offer.querySelector(".notice")) offer.scrollIntoView({ block: "center", behavior: "smooth" });
  });

  // Copy buttons (the API page's new token): data-copy="<selector of the text>"; what the
  // button then says comes from data-copied and data-copy-selected, translated by the page.
  document.addEventListener("click", async (e) => {
    const button = e.target.closest && e.target.closest("[data-copy]");
    if (!button) return;
    const source = $(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = button.dataset.copied || "Copied";
    } catch (err) {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = button.dataset.copySelected || "Selected: press Ctrl+C";
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
  const liveCards = () => Array.from(document.querySelectorAll("[data-live]"));
  const counter = () => $("#nav-generating");
  const batch = () => $("[data-live-batch]");
  const retried = new Set();

  // A card that arrived twice (appended by a poll while its Retry was answered) keeps its
  // first place: updates by id reach only the first element with that id.
  function dedupeBatchCards() {
    const seen = new Set();
    document.querySelectorAll("[data-batch-cards] > .card").forEach((el) => {
      if (seen.has(el.id)) el.remove(); else seen.add(el.id);
    });
  }

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
    if (b) {
      params.set("batch", b.dataset.batchId);
      // Rows that waited for a free slot start while the page is open: ask for the jobs
      // made after the newest card shown, to append them. A retried card sits where the
      // failed one was, so it neither moves that cursor nor comes back appended.
      if (b.dataset.liveBatch === "active") {
        dedupeBatchCards();
        document.querySelectorAll("[data-batch-cards] > .card[data-retry]").forEach((el) => retried.add(el.id));
        let newest = null;
        document.querySelectorAll("[data-batch-cards] > .card").forEach((el) => {
          if (retried.has(el.id)) return;
          if (!newest || Number(el.dataset.created) > Number(newest.dataset.created)) newest = el;
        });
        params.set("after", newest ? newest.id.replace(/^job-/, "") : "");
        params.set("shown", Array.from(retried).slice(-100).map((id) => id.replace(/^job-/, "")).join(","));
      }
    }
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
  document.addEventListener("htmx:afterSettle", () => { dedupeBatchCards(); if (!busy) schedule(); });
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

/* Gallery */
// Lightbox, multi-select, "edit this image" in the studio, and keyboard shortcuts (? lists
// them). Dragging gallery images in as references is with the drop zone, above.
(() => {
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));

  // The image being edited counts as a reference for the estimate.
  const baseRefCount = window.nanoweb.refCount;
  window.nanoweb.refCount = () => baseRefCount() + document.querySelectorAll("#edit-parent").length;
  document.addEventListener("click", (e) => {
    const remove = e.target.closest && e.target.closest("[data-remove-parent]");
    if (!remove) return;
    remove.closest("#edit-parent").remove();
    document.body.dispatchEvent(new CustomEvent("nw:refs"));
  });

  // Multi-select: the bulk bar shows how many are selected.
  function updateBulk() {
    const form = $("#bulk-form");
    if (!form) return;
    const n = document.querySelectorAll('input[name="ids"][form="bulk-form"]:checked').length;
    $("#bulk-count").textContent = n;
    form.hidden = n === 0;
  }
  document.addEventListener("change", (e) => { if (e.target.name === "ids") updateBulk(); });
  document.addEventListener("click", (e) => {
    if (!(e.target.closest && e.target.closest("[data-bulk-clear]"))) return;
    document.querySelectorAll('input[name="ids"][form="bulk-form"]:checked').forEach((c) => { c.checked = false; });
    updateBulk();
  });
  document.addEventListener("htmx:afterSwap", updateBulk);

  // Lightbox over the gallery grid.
  let current = null;
  const tiles = () => Array.from(document.querySelectorAll("[data-tile]"));
  function show(tile) {
    const box = $("#lightbox");
    if (!box || !tile) return;
    current = tile;
    const img = $("#lightbox-img");
    img.src = tile.dataset.full;
    img.alt = tile.querySelector("img").alt;
    $("#lightbox-caption").replaceChildren(tile.querySelector(".tile-caption").cloneNode(true));
    $("#lightbox-open").href = tile.dataset.page;
    if (!box.open) box.showModal();
  }
  function step(delta) {
    const all = tiles(), i = all.indexOf(current);
    if (i < 0) return;
    const next = all[i + delta];
    if (next) { show(next); next.scrollIntoView({ block: "nearest" }); }
  }
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest("[data-lightbox]");
    if (link && !(e.ctrlKey || e.metaKey || e.shiftKey) && $("#lightbox")) {
      e.preventDefault();
      show(link.closest("[data-tile]"));
      return;
    }
    if (e.target.closest && e.target.closest("[data-lightbox-prev]")) step(-1);
    if (e.target.closest && e.target.closest("[data-lightbox-next]")) step(1);
    if (e.target.closest && e.target.closest("[data-lightbox-close]")) $("#lightbox").close();
    if (e.target.id === "lightbox") $("#lightbox").close();  // a click on the backdrop
  });

  function star() {
    const box = $("#lightbox");
    const scope = box && box.open ? current
      : (document.activeElement && document.activeElement.closest("[data-tile]")) || document;
    const button = scope && scope.querySelector("[data-star]");
    if (button) button.click();
  }

  const SHORTCUTS = [
    ["Ctrl/⌘ + Enter", "Generate (in the studio)"],
    ["← / →", "Previous / next image (viewer, image page)"],
    ["Esc", "Close the viewer or this help"],
    ["s", "Star the image in the viewer, the focused one, or this page's"],
    ["/", "Search the gallery"],
    ["?", "Show this help"],
  ];
  function help() {
    let box = $("#shortcut-help");
    if (!box) {
      box = document.createElement("dialog");
      box.id = "shortcut-help";
      box.className = "shortcut-help";
      box.setAttribute("aria-label", "Keyboard shortcuts");
      box.innerHTML = "<h2>Keyboard shortcuts</h2><dl></dl><form method=\"dialog\"><button class=\"secondary\">Close</button></form>";
      SHORTCUTS.forEach(([keys, what]) => {
        const dt = document.createElement("dt"), dd = document.createElement("dd");
        keys.split(" / ").forEach((k, i) => {
          if (i) dt.append(" / ");
          const kbd = document.createElement("kbd"); kbd.textContent = k; dt.append(kbd);
        });
        dd.textContent = what;
        box.querySelector("dl").append(dt, dd);
      });
      document.body.append(box);
    }
    if (!box.open) box.showModal();
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    const box = $("#lightbox");
    if (box && box.open && (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
      e.preventDefault();
      step(e.key === "ArrowLeft" ? -1 : 1);
    } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const link = $(e.key === "ArrowLeft" ? 'a[rel="prev"]' : 'a[rel="next"]');
      if (link) link.click();
    } else if (e.key === "s") {
      star();
    } else if (e.key === "?") {
      e.preventDefault();
      help();
    } else if (e.key === "/" && $("#id_q")) {
      e.preventDefault();
      $("#id_q").focus();
    }
  });
})();
})();
