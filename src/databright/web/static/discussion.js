/* DataBright discussion: the comment, reply and edit forms of the htmx-loaded fragment.
 *
 * Flow: POST /api/comments/draft gives the exact message to sign; window.DataBright.signMessage
 * (app.js) has the wallet sign it, or returns null for a local session (the server signs);
 * then POST (new, reply) or PATCH (edit) the body with the message and signature, and reload the
 * fragment. No inline script (CSP): this file binds by event delegation, once per page.
 */
(function () {
  "use strict";
  if (window.__databrightDiscussion) { return; }
  window.__databrightDiscussion = true;

  function csrf() {
    if (window.DataBright && typeof window.DataBright.csrf === "function") {
      return window.DataBright.csrf();
    }
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  async function send(method, url, payload) {
    var response = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(payload),
    });
    var data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      var err = (data && data.error) || {};
      var text = err.message || ("request failed (" + response.status + ")");
      if (err.retry_after) { text += " (retry in " + err.retry_after + " s)"; }
      throw new Error(text);
    }
    return data;
  }

  async function sign(message) {
    if (window.DataBright && typeof window.DataBright.signMessage === "function") {
      return window.DataBright.signMessage(message);
    }
    return null;
  }

  /* Reload the fragment at the page that shows comment ``id`` (the server finds it). */
  function reload(form, id) {
    var root = form.closest(".discussion");
    var base = root ? root.getAttribute("data-base-url") : null;
    if (!base || !window.htmx) { window.location.reload(); return; }
    var url = base + "?order=" + encodeURIComponent(root.getAttribute("data-order") || "oldest") +
      "&focus=" + encodeURIComponent(id);
    window.htmx.ajax("GET", url, { target: "#discussion", swap: "innerHTML" }).then(function () {
      var shown = document.getElementById("comment-" + id);
      if (shown) { shown.scrollIntoView({ block: "nearest" }); }
    });
  }

  async function submit(form) {
    var mode = form.getAttribute("data-mode");
    var body = form.querySelector("textarea[name=body]").value;
    var parentId = form.getAttribute("data-parent-id");
    var commentId = form.getAttribute("data-comment-id");
    var draftReq = { body: body };
    if (mode === "edit") {
      draftReq.comment_id = Number(commentId);
    } else {
      draftReq.target = form.getAttribute("data-target");
      if (parentId) { draftReq.parent_id = Number(parentId); }
    }
    var draft = await send("POST", "/api/comments/draft", draftReq);
    var signature = await sign(draft.message);
    var payload = { body: body };
    if (signature) { payload.message = draft.message; payload.signature = signature; }
    if (mode === "edit") {
      await send("PATCH", "/api/comments/" + encodeURIComponent(commentId), payload);
      return Number(commentId);
    }
    if (parentId) { payload.parent_id = Number(parentId); }
    var created = await send("POST", form.getAttribute("data-post-url"), payload);
    return created.id;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("comment-form")) { return; }
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    var error = form.querySelector(".form-error");
    if (error) { error.textContent = ""; }
    if (button) { button.disabled = true; }
    submit(form).then(function (id) { reload(form, id); }).catch(function (e) {
      if (error) { error.textContent = e && e.message ? e.message : String(e); }
    }).finally(function () { if (button) { button.disabled = false; } });
  });

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("button") : null;
    if (!button) { return; }
    var article = button.closest(".comment");
    if (button.classList.contains("comment-reply") || button.classList.contains("comment-edit")) {
      var mode = button.classList.contains("comment-reply") ? "reply" : "edit";
      var form = article && article.querySelector(':scope > form.comment-form[data-mode="' + mode + '"]');
      if (form) {
        form.hidden = !form.hidden;
        if (!form.hidden) { form.querySelector("textarea").focus(); }
      }
    } else if (button.classList.contains("comment-cancel")) {
      var own = button.closest("form.comment-form");
      if (own) { own.hidden = true; }
    }
  });
})();
